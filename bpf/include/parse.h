/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h: bounds-checked packet parsing helpers for XDP and TC programs.
 * Every helper checks bounds right before it reads, and loops have
 * constant bounds.
 */
#ifndef GLB_PARSE_H
#define GLB_PARSE_H

#include <linux/types.h>
#include <linux/in.h>
#include <stdbool.h>
#include <bpf/bpf_endian.h>

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

struct vlan_hdr {
	__be16 tci;
	__be16 proto; /* the encapsulated EtherType */
};

/* IPv6 extension headers that parse_ipv6_ext walks (as table.FlowOf
 * does): hop-by-hop, routing, fragment and destination options. */
#define IPV6_EXT_HOPOPTS 0
#define IPV6_EXT_ROUTING 43
#define IPV6_EXT_FRAGMENT 44
#define IPV6_EXT_DSTOPTS 60
#define IPV6_MAX_EXT_HEADERS 8

/* Offsets are kept below this so the verifier can bound packet pointers.
 * No XDP frame is this long, and the TC program reads headers only from
 * the first REDIRECT_MAX_HEADERS bytes of the linear part. */
#define PARSE_MAX_OFFSET 4096

struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen; /* in 8-byte units, not counting the first 8 bytes */
	__be16 frag_off; /* fragment header only: offset << 3 | flags */
	__be32 rest;
};

/* parse_ipv6_ext's errors. Callers that do not care which may test for
 * non-zero. */
#define PARSE_EXT_SHORT -1    /* a header runs past data_end */
#define PARSE_EXT_TOO_LONG -2 /* IPV6_MAX_EXT_HEADERS or more headers */

/* parse_ipv6_ext walks the extension headers starting at *off (just after
 * the fixed IPv6 header), with *nexthdr the fixed header's next header.
 * On return *nexthdr is the upper-layer protocol, *off its offset from
 * data, and *nonfirst is set if a fragment header with a non-zero offset
 * was met (the walk stops there: what follows is not a header). A fragment
 * header with offset 0 (a first or an atomic fragment) is walked like the
 * others: the upper-layer header follows it. Returns 0, PARSE_EXT_SHORT or
 * PARSE_EXT_TOO_LONG.
 *
 * It reads only between data and data_end, so it serves both the XDP
 * director (xdp_md) and the TC program (the skb's linear part). */
static __always_inline int parse_ipv6_ext(void *data, void *data_end, __u32 *off,
					  __u8 *nexthdr, bool *nonfirst)
{
	__u32 o = *off;
	__u8 nh = *nexthdr;

#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		struct ipv6_ext *h;

		if (nh != IPV6_EXT_HOPOPTS && nh != IPV6_EXT_ROUTING &&
		    nh != IPV6_EXT_FRAGMENT && nh != IPV6_EXT_DSTOPTS) {
			*off = o;
			*nexthdr = nh;
			return 0;
		}
		if (o > PARSE_MAX_OFFSET)
			return PARSE_EXT_SHORT;
		h = data + o;
		if ((void *)(h + 1) > data_end)
			return PARSE_EXT_SHORT;
		if (nh == IPV6_EXT_FRAGMENT) {
			if (h->frag_off & bpf_htons(0xfff8)) {
				*off = o + 8;
				*nexthdr = h->nexthdr;
				*nonfirst = true;
				return 0;
			}
			o += 8;
		} else {
			o += ((__u32)h->hdrlen + 1) * 8;
			if (data + o > data_end)
				return PARSE_EXT_SHORT;
		}
		nh = h->nexthdr;
	}
	/* IPV6_MAX_EXT_HEADERS headers walked and the chain goes on: give up,
	 * at the same point as table.FlowOf. */
	return PARSE_EXT_TOO_LONG;
}

/* csum_fold folds a 32-bit one's complement sum into 16 bits. */
static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif /* GLB_PARSE_H */
