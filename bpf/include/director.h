/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * director.h: the layouts the XDP director shares with its Go loader
 * (director/dataplane). bpf2go generates the Go side from these with
 * -type, so this file is the single source of truth for map keys, map
 * values and the reasons a packet ends.
 */
#ifndef GLB_DIRECTOR_H
#define GLB_DIRECTOR_H

#include <linux/types.h>
#include "gue.h"

/* Map sizes. The loader checks a config against them before it touches
 * the kernel, so a too-large config is an error, not a partial table. */
#define GLB_MAX_TABLES 256	/* slots of the outer table map */
#define GLB_MAX_PREFIXES 8192	/* distinct VIP prefixes (LPM trie entries) */
#define GLB_MAX_BINDS 8192	/* per-bind counter slots */
#define GLB_MAX_PORT_RANGES 262144 /* glb_ports entries (aligned port blocks) */

/* Every inner table map holds GLB_NUM_ROWS rows and, at index
 * GLB_META_INDEX, the table's metadata (hash key, fields, width). Keeping
 * both in one inner map is what makes a swap atomic: a packet sees the new
 * key with the new rows or the old key with the old rows, never a mix. */
#define GLB_NUM_ROWS 65536
#define GLB_META_INDEX GLB_NUM_ROWS
#define GLB_TABLE_ENTRIES (GLB_NUM_ROWS + 1)

/* Flow-hash fields (table_meta.fields), in the order they are hashed. */
#define GLB_HASH_SRC_ADDR 0x1
#define GLB_HASH_DST_ADDR 0x2
#define GLB_HASH_SRC_PORT 0x4
#define GLB_HASH_DST_PORT 0x8
#define GLB_HASH_PORTS (GLB_HASH_SRC_PORT | GLB_HASH_DST_PORT)

/* bind_key.family */
#define GLB_FAMILY_IPV4 4
#define GLB_FAMILY_IPV6 6

/* LPM trie key. The trie's data starts at family: the first 32 bits
 * (family + pad) are always part of the prefix, so prefixlen is
 * 32 + the VIP prefix length, and an IPv4 VIP never matches an IPv6
 * packet. addr holds the address in network byte order (IPv4 in the first
 * four bytes, the rest zero). */
struct bind_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

/* A bind as the program needs it: where its rows are and which counters
 * it bumps. */
struct bind_ref {
	__u16 table; /* slot in glb_tables */
	__u8 kind;   /* GLB_REF_* */
	__u8 pad;
	__u32 bind; /* slot in glb_bind_stats */
};

/* bind_ref.kind */
#define GLB_REF_NONE 0	    /* no bind: pass */
#define GLB_REF_BIND 1	    /* the bind above */
#define GLB_REF_AMBIGUOUS 2 /* fragments only: binds of different tables */

/* glb_binds' value, for the addresses of one trie entry. The binds that
 * cover the entry's prefix (its own and those of shorter prefixes) are
 * matched on protocol and port in glb_ports under prefix_id; the loader
 * precomputes the two cases that have no port. */
struct bind_value {
	__u32 prefix_id;
	__u32 pad;
	/* ICMP echo (and non-first ICMP fragments): the first covering bind,
	 * longest prefix, then config order. */
	struct bind_ref echo;
	/* Non-first TCP ([0]) and UDP ([1]) fragments: the first covering
	 * bind of the protocol if every such bind names the same table, else
	 * GLB_REF_AMBIGUOUS. */
	struct bind_ref frag[2];
};

/* glb_ports' LPM key: (prefix id, protocol, destination port). A bind's
 * port range is stored as the few aligned power-of-two blocks that tile
 * it (at most 30 for any range, one for a single port), never port by
 * port. The binds of one prefix do not overlap (the config is rejected
 * otherwise), so at most one block matches a packet. prefixlen is
 * 48 + the block's significant port bits. */
struct port_key {
	__u32 prefixlen;
	__u32 prefix_id;
	__u8 proto;
	__u8 pad;
	__be16 port;
};

/* A row of a table: hops[0] is the primary (the outer destination),
 * hops[1..width-1] go in the GUE header. Addresses in network byte order. */
struct table_row {
	__be32 hops[GLB_MAX_HOPS];
};

/* The table's metadata, stored at GLB_META_INDEX with the same size as a
 * row (the inner map has one value size). */
struct table_meta {
	__u64 k0;	/* SipHash key, little-endian bytes 0..7 */
	__u64 k1;	/* SipHash key, little-endian bytes 8..15 */
	__u32 fields;	/* GLB_HASH_* */
	__u32 width;	/* hops per row; 0: no usable backend, drop */
	__u32 reserved[2];
};

/* Per-bind counters (per CPU). */
struct bind_stats {
	__u64 packets; /* encapsulated and sent */
	__u64 bytes;   /* of the client's IP packets that were sent */
	__u64 dropped; /* matched the bind but were dropped */
};

/*
 * Why the program returned: one per-CPU counter each. The verdict follows
 * from the reason: END_TX is XDP_TX, END_PASS_* are XDP_PASS, END_DROP_*
 * are XDP_DROP. Keep the groups in this order (the program and the Go
 * label map rely on it) and END_LEN last.
 */
enum glb_end {
	END_TX = 0,		/* encapsulated in GUE and sent */
	END_PASS_NOT_IP,	/* not IPv4/IPv6 (ARP, LLDP, ...) or short frame */
	END_PASS_BAD_IP,	/* IP header too short to read; the stack drops it */
	END_PASS_NOT_VIP,	/* destination is not in any bind prefix */
	END_PASS_NO_BIND,	/* a VIP, but no bind for this proto and port */
	END_PASS_NOT_LB,	/* not load balanced: other ICMP, other protocols */
	END_DROP_MALFORMED,	/* to a VIP, but truncated or invalid headers */
	END_DROP_FRAGMENT,	/* non-first fragment whose row needs ports */
	END_DROP_NO_TABLE,	/* bind's table slot empty (transient) */
	END_DROP_NO_HOPS,	/* the table has no usable backend */
	END_DROP_FWD_DISABLED,	/* FIB lookup: IPv4 forwarding is off on the iface */
	END_DROP_NO_ROUTE,	/* FIB lookup found no route to the hop */
	END_DROP_NO_NEIGH,	/* FIB lookup: next hop's MAC unresolved */
	END_DROP_OTHER_IFACE,	/* route to the hop leaves by another interface */
	END_DROP_TOO_BIG,	/* GUE packet exceeds the route's or interface's MTU */
	END_DROP_ADJUST,	/* bpf_xdp_adjust_head/tail failed */
	END_LEN,
};

#define END_FIRST_DROP END_DROP_MALFORMED

#endif /* GLB_DIRECTOR_H */
