/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * gue.h: the GUE packet that glb's director sends and glb's proxy hosts
 * receive (DESIGN.md §3). It is byte-compatible with GitHub's
 * glb-director / glb-redirect.
 *
 *   Ethernet | IPv4 (DF, TTL 64, id 0, src = director, dst = hops[0])
 *            | UDP (sport = 0x8000 | ((hash ^ client sport) & 0x7fff),
 *                   dport GUE_PORT, checksum 0)
 *            | struct gue_base   hlen = 1 + hop_count, proto 4 or 41
 *            | struct glb_priv   type 0, next_hop, hop_count
 *            | hop_count x IPv4  hops[1..] (hops[0] is the outer dst)
 *            | the client's IP packet, without its Ethernet header
 *
 * Everything here is in network byte order on the wire. Only constants and
 * layouts live here: both bpf/director.c and bpf/redirect.c include it, so
 * keep it stable and free of code.
 */
#ifndef GLB_GUE_H
#define GLB_GUE_H

#include <linux/types.h>

/* The UDP destination port of every GLB GUE packet. */
#define GUE_PORT 19523

/* Most hops a row may list (DESIGN.md §4: hops 1..8). The GUE header
 * carries at most GLB_MAX_HOPS - 1 of them: hops[0] is the outer
 * destination. */
#define GLB_MAX_HOPS 8

/* GUE base header (draft-ietf-intarea-gue, variant 0). byte 0 holds the
 * version (2 bits, 0), the C bit (0 for data) and hlen, the length of the
 * optional fields in 32-bit words; GLB's private data always follows. */
struct gue_base {
	__u8 hlen;	 /* ver 0, C 0, hlen in the low 5 bits */
	__u8 proto;	 /* IP protocol of the payload: GUE_PROTO_IPV4/6 */
	__be16 flags; /* 0: GLB sets no optional fields */
} __attribute__((packed));

#define GUE_HLEN_MASK 0x1f
#define GUE_VER_C_MASK 0xe0 /* version and C bit: must be 0 for GLB */

#define GUE_PROTO_IPV4 4
#define GUE_PROTO_IPV6 41

/* GLB private data, right after the GUE base header. hops[] follows. */
struct glb_priv {
	__be16 type;	/* GLB_PRIV_TYPE */
	__u8 next_hop;	/* index into hops[] of the next second-chance hop */
	__u8 hop_count; /* number of entries in hops[] */
} __attribute__((packed));

#define GLB_PRIV_TYPE 0

/* The fixed part of the GLB GUE header: base + private data. */
struct glb_gue_hdr {
	struct gue_base base;
	struct glb_priv priv;
	__be32 hops[]; /* hop_count IPv4 addresses */
} __attribute__((packed));

/* Outer header sizes, for head adjustment and bounds. */
#define GLB_OUTER_IPV4_LEN 20
#define GLB_OUTER_UDP_LEN 8
#define GLB_GUE_FIXED_LEN 8 /* sizeof(struct glb_gue_hdr) */

/* Bytes the director adds in front of the client's IP packet for a row of
 * n hops (n >= 1): outer IPv4 + UDP + GUE base + GLB private + (n - 1)
 * hops. Two hops give 40 bytes. */
#define GLB_ENCAP_LEN(n) \
	(GLB_OUTER_IPV4_LEN + GLB_OUTER_UDP_LEN + GLB_GUE_FIXED_LEN + 4 * ((n) - 1))

/* The outer IPv4 header the director writes: TTL, DF, id. */
#define GLB_OUTER_TTL 64
#define GLB_OUTER_FRAG_OFF 0x4000 /* DF, host order */

/* The UDP source port: the top bit set, the rest from the flow hash so that
 * ECMP and RSS on the way to the proxy spread flows. */
#define GLB_SPORT(hash, client_sport) \
	((__u16)(0x8000 | (((__u32)(hash) ^ (__u32)(client_sport)) & 0x7fff)))

#endif /* GLB_GUE_H */
