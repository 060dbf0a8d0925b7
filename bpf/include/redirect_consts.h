/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * redirect_consts.h: limits, kernel constants missing from Debian 12's
 * headers, and the outcome enum of bpf/redirect.c. The enum is the source
 * of truth: bpf2go generates the Go side (bpf.RedirectOutcome), and a test
 * in proxy/redirect checks its label table against OUTCOME_LEN.
 */
#ifndef GLB_REDIRECT_CONSTS_H
#define GLB_REDIRECT_CONSTS_H

#include "gue.h"

/* GUE's hlen is 5 bits and counts the private data word too, so a GUE
 * header can list at most 30 hops. glb's director sends at most
 * GLB_MAX_HOPS - 1; accepting the format's whole range keeps GLB's own
 * directors working. The constant also bounds offsets for the verifier. */
#define REDIRECT_MAX_HOP_COUNT (GUE_HLEN_MASK - 1)

/* Headers the program may need in the linear part of the skb: Ethernet,
 * outer IPv4, UDP, GUE with 30 hops (170 bytes so far), inner IPv6 (40),
 * ICMPv6 (8), quoted IPv6 (40), ports (4): 262 bytes, which leaves 250
 * for IPv6 extension headers in the inner packet and its quote (342 with
 * the 7 hops at most of glb's director). Headers past this are counted as
 * malformed_short. */
#define REDIRECT_MAX_HEADERS 512

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* The first 8 bytes of an ICMP message. <linux/icmp.h> would pull in libc
 * headers through <linux/if.h>, which a BPF target cannot compile. */
struct redirect_icmphdr {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be32 rest;
};

#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMPV6_PKT_TOOBIG 2

/* Linux 6.3 added these bpf_skb_adjust_room() flags; Debian 12's
 * linux-libc-dev (6.1) lacks them. They set skb->protocol to the inner
 * family when the outer and inner IP versions differ. */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#endif
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV6
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

/*
 * Why the program let a packet go, or what it did with it. Every packet
 * that reaches the program ends in exactly one outcome, and each outcome
 * has a per-CPU counter. The names follow GLB's /proc/glb_redirect_stats
 * (accepted_syn_packets, accepted_established_packets, ...) without the
 * _packets suffix; the Go side exports them as
 * glb_redirect_packets_total{outcome="..."}.
 */
enum outcome {
	/* Not GUE for this program: passed untouched. */
	OUTCOME_PASSED_NOT_GUE = 0,
	/* GUE to an address that is not this host's: passed untouched. */
	OUTCOME_PASSED_OTHER_HOST,

	/* Decapsulated and handed to the local stack. */
	OUTCOME_ACCEPTED_SYN,		 /* TCP SYN without ACK */
	OUTCOME_ACCEPTED_ESTABLISHED,	 /* a full local socket */
	OUTCOME_ACCEPTED_SYN_RECV,	 /* a request socket (half-open) */
	OUTCOME_ACCEPTED_TIME_WAIT,	 /* a TIME_WAIT socket */
	OUTCOME_ACCEPTED_SYN_COOKIE,	 /* an ACK carrying a valid cookie */
	OUTCOME_ACCEPTED_LAST_RESORT,	 /* no local socket, no hop left */
	OUTCOME_ACCEPTED_UDP,		 /* inner UDP: first host */
	OUTCOME_ACCEPTED_ICMP,		 /* ordinary ICMP: first host */
	OUTCOME_ACCEPTED_FRAGMENT,	 /* inner non-first fragment */
	OUTCOME_FORWARDED_TO_SELF,	 /* next hop is this host: loop guard */

	/* Sent on to hops[next_hop]. */
	OUTCOME_FORWARDED_TO_ALTERNATE,

	/* Dropped. */
	OUTCOME_DROPPED_DECAP_FAILED,	 /* bpf_skb_adjust_room refused */
	OUTCOME_DROPPED_INNER_PROTO,	 /* not TCP, UDP or ICMP inside */
	OUTCOME_MALFORMED_OUTER,	 /* outer IPv4 options, fragment, or lengths that lie */
	OUTCOME_MALFORMED_SHORT,	 /* headers cut short */
	OUTCOME_MALFORMED_GUE_VERSION,	 /* GUE version or C bit not 0 */
	OUTCOME_MALFORMED_GUE_FLAGS,	 /* GUE flags not 0 */
	OUTCOME_MALFORMED_GUE_PROTO,	 /* proto neither 4 nor 41 */
	OUTCOME_MALFORMED_GUE_HLEN,	 /* hlen != 1 + hop_count */
	OUTCOME_MALFORMED_PRIVATE_TYPE, /* GLB private data type not 0 */
	OUTCOME_MALFORMED_NEXT_HOP,	 /* next_hop > hop_count */
	OUTCOME_MALFORMED_INNER,	 /* inner IP header does not match, or 8+ IPv6 ext headers */
	OUTCOME_MALFORMED_HOP_ADDRESS,	 /* next hop in 0/8, 127/8, 224/4 or 240/4 */
	OUTCOME_DROPPED_UNTRUSTED_SOURCE, /* outer source not in redirect_trusted */

	OUTCOME_LEN,
};

/* A key of redirect_trusted: an IPv4 prefix in LPM trie layout. */
struct trusted_key {
	__u32 prefixlen;
	__be32 addr;
};

/* Trusted source prefixes the map holds at most. */
#define REDIRECT_MAX_TRUSTED 1024

/* One counter slot per outcome and CPU. */
struct outcome_stat {
	__u64 packets;
	__u64 bytes; /* skb->len as received, Ethernet header included */
};

#endif /* GLB_REDIRECT_CONSTS_H */
