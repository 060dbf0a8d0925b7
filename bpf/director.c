//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * director.c: glb's L4 director, an XDP program (DESIGN.md §1, §3).
 *
 * For a packet to a VIP it finds the bind (VIP prefix, protocol, port
 * range) in two LPM tries (the VIP's prefix, then protocol and port within
 * it), hashes the flow with SipHash-2-4 under the bind's
 * table key, reads the row of hops, wraps the packet in GUE with the hop
 * list and sends it back out with XDP_TX. It keeps no per-flow state.
 * Everything else is passed to the host stack untouched (SSH, BGP, ARP).
 *
 * Every return goes through finish(), which counts the reason (enum
 * glb_end in include/director.h) in a per-CPU counter.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "gue.h"
#include "director.h"
#include "director_maps.h"
#include "parse.h"
#include "siphash.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Load-time settings (the verifier prunes what they switch off). */
volatile const __be32 cfg_src_ip = 0;	    /* outer source address */
volatile const __u8 cfg_use_gateway = 0;    /* 1: skip the FIB, use cfg_gateway_mac */
volatile const __u8 cfg_gateway_mac[6] = {}; /* next hop for every GUE packet */

/* clang emits BTF only for types that a global or a map uses directly
 * (a struct reached only through a pointer becomes a forward declaration).
 * This unused constant anchors the types bpf2go generates Go types for and
 * the inner table map's value type. */
struct glb_btf_anchor {
	struct table_row row;
	struct table_meta meta;
	struct bind_stats stats;
	enum glb_end end;
};
volatile const struct glb_btf_anchor glb_btf_anchor __attribute__((unused));

/* From sys/socket.h, linux/in6.h, linux/icmp.h and linux/icmpv6.h, which
 * pull in userspace headers that do not build for the BPF target. */
#define AF_INET 2
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMP_ECHO 8
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_ECHO_REQUEST 128

/* A helper's "keep going" value; any enum glb_end is a final reason. */
#define CONTINUE -1

/* What the director hashes and matches a bind on. */
struct flow {
	__be32 src[4]; /* client address (IPv4 in src[0]) */
	__be32 dst[4]; /* VIP */
	__be16 sport;  /* client port; 0 for echo and fragments */
	__be16 dport;  /* VIP port: the bind port */
	__u8 family;   /* GLB_FAMILY_IPV4/6 */
	__u8 proto;    /* bind protocol; 0 for ICMP echo (any bind) */
	bool nonfirst; /* non-first fragment: ports unknown */
};

/* Where the packet's headers are. */
struct pkt {
	__u32 l3off;	 /* 14, or 18 with an 802.1Q tag */
	__be16 vlan_tpid; /* 0 without a tag */
	__be16 vlan_tci;
	__u8 family;
	__u32 ip_len;  /* the client's IP packet, headers included */
};

static __always_inline int finish(enum glb_end reason)
{
	__u32 key = reason;
	__u64 *n = bpf_map_lookup_elem(&glb_ends, &key);

	if (n)
		*n += 1;
	if (reason == END_TX)
		return XDP_TX;
	if (reason < END_FIRST_DROP)
		return XDP_PASS;
	return XDP_DROP;
}

static __always_inline const struct bind_value *lookup_vip(__u8 family, const void *addr)
{
	struct bind_key key = { .family = family };

	if (family == GLB_FAMILY_IPV4) {
		key.prefixlen = 32 + 32;
		__builtin_memcpy(key.addr, addr, 4);
	} else {
		key.prefixlen = 32 + 128;
		__builtin_memcpy(key.addr, addr, 16);
	}
	return bpf_map_lookup_elem(&glb_binds, &key);
}

/* trim drops Ethernet padding after the IP packet, so what goes in the
 * tunnel is the IP packet exactly, and later bounds checks against
 * data_end are checks against the IP length. */
static __always_inline int trim(struct xdp_md *ctx, __u32 ip_end)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;

	/* Keep clang from folding len back into pointer arithmetic (which
	 * the verifier rejects as "subtract pointer from scalar"; clang 14). */
	barrier_var(len);
	if (ip_end > len)
		return END_DROP_MALFORMED;
	if (ip_end < len && bpf_xdp_adjust_tail(ctx, -(int)(len - ip_end)))
		return END_DROP_ADJUST;
	return CONTINUE;
}

/* ports reads the source and destination ports of a TCP or UDP header at
 * off, needing need bytes of it. */
static __always_inline int ports(void *data, void *data_end, __u32 off, __u32 need,
				 __be16 *sport, __be16 *dport)
{
	__be16 *p;

	if (off > PARSE_MAX_OFFSET)
		return END_DROP_MALFORMED;
	p = data + off;
	/* Keep clang from recomputing data + off for the reads below, which
	 * the verifier then sees as an unchecked pointer (clang 14, once
	 * match() is inlined). */
	barrier_var(p);
	if ((void *)p + need > data_end)
		return END_DROP_MALFORMED;
	if ((void *)(p + 2) > data_end)
		return END_DROP_MALFORMED;
	*sport = p[0];
	*dport = p[1];
	return CONTINUE;
}

/* quoted4 reads the IPv4 packet quoted in an ICMP fragmentation-needed
 * error, at off, into f with its tuple reversed: the quoted packet went
 * from the VIP to the client. */
static __always_inline int quoted4(void *data, void *data_end, __u32 off, struct flow *f)
{
	struct iphdr *ip;
	__u32 hlen;
	__be16 sport, dport;
	int r;

	if (off > PARSE_MAX_OFFSET)
		return END_DROP_MALFORMED;
	ip = data + off;
	if ((void *)(ip + 1) > data_end)
		return END_DROP_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return END_DROP_MALFORMED;
	hlen = ip->ihl * 4;
	if ((void *)ip + hlen > data_end)
		return END_DROP_MALFORMED;
	if (ip->frag_off & bpf_htons(0x1fff))
		return END_PASS_NOT_LB;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return END_PASS_NOT_LB;
	r = ports(data, data_end, off + hlen, 8, &sport, &dport);
	if (r != CONTINUE)
		return r;
	f->src[0] = ip->daddr;
	f->dst[0] = ip->saddr;
	f->sport = dport;
	f->dport = sport;
	f->proto = ip->protocol;
	return CONTINUE;
}

/* quoted6 is quoted4 for the IPv6 packet in an ICMPv6 packet-too-big. */
static __always_inline int quoted6(void *data, void *data_end, __u32 off, struct flow *f)
{
	struct ipv6hdr *ip6;
	__u8 nh;
	bool nonfirst = false;
	__be16 sport, dport;
	int r;

	if (off > PARSE_MAX_OFFSET)
		return END_DROP_MALFORMED;
	ip6 = data + off;
	if ((void *)(ip6 + 1) > data_end)
		return END_DROP_MALFORMED;
	if (ip6->version != 6)
		return END_DROP_MALFORMED;
	nh = ip6->nexthdr;
	off += sizeof(*ip6);
	if (parse_ipv6_ext(data, data_end, &off, &nh, &nonfirst))
		return END_DROP_MALFORMED;
	if (nonfirst)
		return END_PASS_NOT_LB;
	if (nh != IPPROTO_TCP && nh != IPPROTO_UDP)
		return END_PASS_NOT_LB;
	r = ports(data, data_end, off, 8, &sport, &dport);
	if (r != CONTINUE)
		return r;
	__builtin_memcpy(f->src, &ip6->daddr, 16);
	__builtin_memcpy(f->dst, &ip6->saddr, 16);
	f->sport = dport;
	f->dport = sport;
	f->proto = nh;
	return CONTINUE;
}

/* transport fills in f from the upper-layer header at off (protocol
 * proto), the way table.FlowOf does: TCP and UDP by their ports, ICMP echo
 * requests with ports 0, PMTU errors by the quoted tuple reversed. */
static __always_inline int transport(void *data, void *data_end, __u32 off, __u8 proto,
				     struct flow *f)
{
	__u8 *icmp;

	if (f->nonfirst) {
		/* No transport header: route TCP/UDP by addresses (direct()
		 * checks the table allows it), ICMP like an echo request. */
		if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
			f->proto = proto;
			return CONTINUE;
		}
		if ((proto == IPPROTO_ICMP && f->family == GLB_FAMILY_IPV4) ||
		    (proto == IPPROTO_ICMPV6 && f->family == GLB_FAMILY_IPV6)) {
			f->proto = 0;
			return CONTINUE;
		}
		return END_PASS_NOT_LB;
	}

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		f->proto = proto;
		return ports(data, data_end, off, proto == IPPROTO_TCP ? sizeof(struct tcphdr) : 8,
			     &f->sport, &f->dport);
	}

	if (off > PARSE_MAX_OFFSET)
		return END_DROP_MALFORMED;
	icmp = data + off;
	if (f->family == GLB_FAMILY_IPV4 && proto == IPPROTO_ICMP) {
		if ((void *)icmp + 8 > data_end)
			return END_DROP_MALFORMED;
		if (icmp[0] == ICMP_ECHO) {
			f->proto = 0;
			return CONTINUE;
		}
		if (icmp[0] == ICMP_DEST_UNREACH && icmp[1] == ICMP_FRAG_NEEDED)
			return quoted4(data, data_end, off + 8, f);
		return END_PASS_NOT_LB;
	}
	if (f->family == GLB_FAMILY_IPV6 && proto == IPPROTO_ICMPV6) {
		if ((void *)icmp + 8 > data_end)
			return END_DROP_MALFORMED;
		if (icmp[0] == ICMPV6_ECHO_REQUEST) {
			f->proto = 0;
			return CONTINUE;
		}
		if (icmp[0] == ICMPV6_PKT_TOOBIG)
			return quoted6(data, data_end, off + 8, f);
		return END_PASS_NOT_LB;
	}
	return END_PASS_NOT_LB;
}

/* match returns the bind for f among those covering its VIP (bv): an
 * echo request (proto 0) takes the first of them, a non-first TCP/UDP
 * fragment the one its protocol's binds agree on, and anything else the
 * bind whose port range holds its destination port, from glb_ports. The
 * result's kind is GLB_REF_NONE when no bind applies. */
static __always_inline struct bind_ref match(const struct bind_value *bv, const struct flow *f)
{
	struct bind_ref none = { .kind = GLB_REF_NONE };

	if (f->proto == 0)
		return bv->echo;
	if (f->nonfirst)
		return bv->frag[f->proto == IPPROTO_UDP];

	struct port_key key = {
		.prefixlen = 48 + 16,
		.prefix_id = bv->prefix_id,
		.proto = f->proto,
		.port = f->dport,
	};
	const struct bind_ref *ref = bpf_map_lookup_elem(&glb_ports, &key);

	return ref ? *ref : none;
}

/* flow_hash is table.Hash: SipHash-2-4 over the enabled fields of f, in
 * network byte order: src addr, dst addr, src port, dst port. */
static __always_inline __u64 flow_hash(const struct table_meta *meta, const struct flow *f)
{
	struct siphash s;
	__u32 fields = meta->fields;
	__u64 tail = 0;
	__u32 len = 0, plen = 0;
	__u32 p = 0;

	sip_init(&s, meta->k0, meta->k1);

	/* The ports go last, and together take 0, 2 or 4 bytes. A __be16
	 * loaded on this little-endian target is already the little-endian
	 * reading of its two bytes, as SipHash wants. */
	if (fields & GLB_HASH_SRC_PORT) {
		p = f->sport;
		plen = 2;
	}
	if (fields & GLB_HASH_DST_PORT) {
		p |= (__u32)f->dport << (plen * 8);
		plen += 2;
	}

	if (f->family == GLB_FAMILY_IPV6) {
		/* 16-byte addresses: whole blocks, the ports are the tail. */
		if (fields & GLB_HASH_SRC_ADDR) {
			sip_block(&s, (__u64)f->src[0] | (__u64)f->src[1] << 32);
			sip_block(&s, (__u64)f->src[2] | (__u64)f->src[3] << 32);
			len += 16;
		}
		if (fields & GLB_HASH_DST_ADDR) {
			sip_block(&s, (__u64)f->dst[0] | (__u64)f->dst[1] << 32);
			sip_block(&s, (__u64)f->dst[2] | (__u64)f->dst[3] << 32);
			len += 16;
		}
		return sip_final(&s, p, len + plen);
	}

	/* IPv4: at most 12 bytes. lo holds bytes 0..7, hi bytes 8..11. */
	__u64 lo = 0, hi = 0;

	if (fields & GLB_HASH_SRC_ADDR) {
		lo = f->src[0];
		len = 4;
	}
	if (fields & GLB_HASH_DST_ADDR) {
		lo |= (__u64)f->dst[0] << (len * 8);
		len += 4;
	}
	if (plen) {
		if (len < 8) {
			/* len is 0 or 4: the ports fit in lo. */
			lo |= (__u64)p << (len * 8);
		} else {
			hi = p;
		}
		len += plen;
	}
	if (len >= 8) {
		sip_block(&s, lo);
		tail = hi;
	} else {
		tail = lo;
	}
	return sip_final(&s, tail, len);
}

/* encap wraps the IP packet in the GUE header of DESIGN.md §3 for row,
 * with width hops, and fills in the Ethernet header for XDP_TX.
 *
 * The director never fragments (DESIGN.md §3): a GUE packet larger than
 * the MTU it leaves by is dropped and counted as END_DROP_TOO_BIG, rather
 * than sent to be lost silently further on. In FIB mode the lookup checks
 * the route's MTU (tot_len); with a gateway MAC, bpf_check_mtu checks the
 * MTU of the interface XDP_TX sends it out of. */
static __always_inline int encap(struct xdp_md *ctx, const struct pkt *pk,
				 const struct table_row *row, __u32 width, __u64 hash,
				 __be16 client_sport)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3off = pk->l3off;
	__u32 elen = GLB_ENCAP_LEN(width);
	__u32 outer_len = elen + pk->ip_len;
	__be32 hop0 = row->hops[0];
	__u8 dmac[6], smac[6];

	/* tot_len, the UDP length and the FIB lookup's tot_len are 16 bits.
	 * A single-buffer XDP frame never comes near; the bound keeps every
	 * length written below exact even so. */
	if (outer_len > 0xffff)
		return END_DROP_TOO_BIG;

	if (cfg_use_gateway) {
		/* ifindex 0 is the interface the frame came in on, which
		 * XDP_TX sends it out of. Given the IP length, the helper
		 * compares it with that device's MTU as it is now (an 802.1Q
		 * tag does not count), so an MTU change needs no reload. */
		__u32 mtu_len = outer_len;

		if (bpf_check_mtu(ctx, 0, &mtu_len, 0, 0) != BPF_MTU_CHK_RET_SUCCESS)
			return END_DROP_TOO_BIG;
		/* The source is our own MAC, as the client's frame was
		 * addressed. Read here, not for every packet in direct(): only
		 * this branch needs it. */
		struct ethhdr *in = data;

		if ((void *)(in + 1) > data_end)
			return END_DROP_ADJUST;
		__builtin_memcpy(smac, in->h_dest, 6);
		/* Byte by byte: a memcpy would cast away volatile and let
		 * clang fold the all-zero initializer (clang 14). */
#pragma unroll
		for (int i = 0; i < 6; i++)
			dmac[i] = cfg_gateway_mac[i];
	} else {
		struct bpf_fib_lookup fib = {};
		int rc;

		fib.family = AF_INET;
		fib.l4_protocol = IPPROTO_UDP;
		fib.tot_len = outer_len;
		fib.ipv4_src = cfg_src_ip;
		fib.ipv4_dst = hop0;
		fib.ifindex = ctx->ingress_ifindex;
		/* The kernel answers only if IPv4 forwarding is on for the
		 * ingress interface (kernel 6.18 checks it for every lookup). */
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
			return END_DROP_FWD_DISABLED;
		if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH &&
		    rc != BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return END_DROP_NO_ROUTE;
		/* A route was found (fib.ifindex is its device). XDP_TX leaves
		 * by the interface the packet came in on. */
		if (fib.ifindex != ctx->ingress_ifindex)
			return END_DROP_OTHER_IFACE;
		/* outer_len is above the route's MTU. The kernel returns this
		 * before it sets fib.ifindex to the route's device (6.18), so
		 * the interface check above has not looked at such a route. */
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return END_DROP_TOO_BIG;
		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
			return END_DROP_NO_NEIGH;
		__builtin_memcpy(dmac, fib.dmac, 6);
		__builtin_memcpy(smac, fib.smac, 6);
	}

	if (bpf_xdp_adjust_head(ctx, -(int)elen))
		return END_DROP_ADJUST;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;

	/* Layout: Ethernet [+ 802.1Q] | IPv4 | UDP | GUE | GLB | hops[1..]. */
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	struct glb_gue_hdr *gue;

	if (l3off > 18)
		return END_DROP_ADJUST;
	ip = data + l3off;
	udp = (void *)(ip + 1);
	gue = (void *)(udp + 1);
	if ((void *)(gue + 1) > data_end)
		return END_DROP_ADJUST;

	__builtin_memcpy(eth->h_dest, dmac, 6);
	__builtin_memcpy(eth->h_source, smac, 6);
	if (pk->vlan_tpid) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return END_DROP_ADJUST;
		eth->h_proto = pk->vlan_tpid;
		vh->tci = pk->vlan_tci;
		vh->proto = bpf_htons(ETH_P_IP);
	} else {
		eth->h_proto = bpf_htons(ETH_P_IP);
	}

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(outer_len);
	ip->id = 0;
	ip->frag_off = bpf_htons(GLB_OUTER_FRAG_OFF);
	ip->ttl = GLB_OUTER_TTL;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = cfg_src_ip;
	ip->daddr = hop0;
	/* The header checksum from the values just written (16-bit words as
	 * they lie in memory), rather than reading the header back. */
	__u32 src = cfg_src_ip;
	__u64 sum = bpf_htons(0x4500) + ip->tot_len + bpf_htons(GLB_OUTER_FRAG_OFF) +
		    bpf_htons((GLB_OUTER_TTL << 8) | IPPROTO_UDP) + (src & 0xffff) + (src >> 16) +
		    (hop0 & 0xffff) + (hop0 >> 16);
	ip->check = csum_fold(sum);

	udp->source = bpf_htons(GLB_SPORT(hash, bpf_ntohs(client_sport)));
	udp->dest = bpf_htons(GUE_PORT);
	udp->len = bpf_htons(outer_len - sizeof(*ip));
	udp->check = 0;

	gue->base.hlen = width; /* 1 word of GLB data + (width - 1) hops */
	gue->base.proto = pk->family == GLB_FAMILY_IPV4 ? GUE_PROTO_IPV4 : GUE_PROTO_IPV6;
	gue->base.flags = 0;
	gue->priv.type = bpf_htons(GLB_PRIV_TYPE);
	gue->priv.next_hop = 0;
	gue->priv.hop_count = width - 1;

#pragma unroll
	for (int i = 1; i < GLB_MAX_HOPS; i++) {
		__be32 *h = (void *)(gue + 1) + 4 * (i - 1);

		if (i >= width)
			break;
		if ((void *)(h + 1) > data_end)
			return END_DROP_ADJUST;
		*h = row->hops[i];
	}
	return END_TX;
}

static __always_inline void count_bind(__u32 slot, bool sent, __u64 bytes)
{
	struct bind_stats *st = bpf_map_lookup_elem(&glb_bind_stats, &slot);

	if (!st)
		return;
	if (sent) {
		st->packets += 1;
		st->bytes += bytes;
	} else {
		st->dropped += 1;
	}
}

static __always_inline int direct(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	const struct bind_value *bv;
	struct pkt pk = { .l3off = sizeof(struct ethhdr) };
	struct flow f = {};
	__be16 h_proto;
	__u32 l4off;
	__u8 proto;
	int r;

	if ((void *)(eth + 1) > data_end)
		return END_PASS_NOT_IP;
	h_proto = eth->h_proto;
	if (h_proto == bpf_htons(ETH_P_8021Q) || h_proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return END_PASS_NOT_IP;
		pk.vlan_tpid = h_proto;
		pk.vlan_tci = vh->tci;
		h_proto = vh->proto;
		pk.l3off += sizeof(struct vlan_hdr);
	}

	if (h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + pk.l3off;
		__u32 hlen;

		if ((void *)(ip + 1) > data_end)
			return END_PASS_BAD_IP;
		if (ip->version != 4)
			return END_PASS_BAD_IP;
		/* daddr lies at a fixed offset (16) within the 20 bytes just
		 * checked, whatever ihl says, so the VIP is known even when
		 * the header length is invalid. */
		bv = lookup_vip(GLB_FAMILY_IPV4, &ip->daddr);
		if (!bv)
			return ip->ihl < 5 ? END_PASS_BAD_IP : END_PASS_NOT_VIP;
		/* A VIP from here on: what is wrong is dropped. */
		if (ip->ihl < 5)
			return END_DROP_MALFORMED;
		hlen = ip->ihl * 4;
		if (bpf_ntohs(ip->tot_len) < hlen)
			return END_DROP_MALFORMED;
		pk.ip_len = bpf_ntohs(ip->tot_len);
		r = trim(ctx, pk.l3off + pk.ip_len);
		if (r != CONTINUE)
			return r;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		ip = data + pk.l3off;
		if ((void *)(ip + 1) > data_end)
			return END_DROP_MALFORMED;
		pk.family = f.family = GLB_FAMILY_IPV4;
		f.src[0] = ip->saddr;
		f.dst[0] = ip->daddr;
		f.nonfirst = (ip->frag_off & bpf_htons(0x1fff)) != 0;
		proto = ip->protocol;
		l4off = pk.l3off + hlen;
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + pk.l3off;

		if ((void *)(ip6 + 1) > data_end)
			return END_PASS_BAD_IP;
		if (ip6->version != 6)
			return END_PASS_BAD_IP;
		bv = lookup_vip(GLB_FAMILY_IPV6, &ip6->daddr);
		if (!bv)
			return END_PASS_NOT_VIP;
		pk.ip_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		r = trim(ctx, pk.l3off + pk.ip_len);
		if (r != CONTINUE)
			return r;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		ip6 = data + pk.l3off;
		if ((void *)(ip6 + 1) > data_end)
			return END_DROP_MALFORMED;
		pk.family = f.family = GLB_FAMILY_IPV6;
		__builtin_memcpy(f.src, &ip6->saddr, 16);
		__builtin_memcpy(f.dst, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		l4off = pk.l3off + sizeof(*ip6);
		if (parse_ipv6_ext(data, data_end, &l4off, &proto, &f.nonfirst))
			return END_DROP_MALFORMED;
	} else {
		return END_PASS_NOT_IP;
	}

	r = transport(data, data_end, l4off, proto, &f);
	if (r != CONTINUE)
		return r;

	struct bind_ref e = match(bv, &f);

	if (e.kind == GLB_REF_AMBIGUOUS)
		return END_DROP_FRAGMENT;
	if (e.kind != GLB_REF_BIND)
		return END_PASS_NO_BIND;
	__u32 slot = e.bind;
	__u32 tid = e.table;

	void *table = bpf_map_lookup_elem(&glb_tables, &tid);
	if (!table) {
		count_bind(slot, false, 0);
		return END_DROP_NO_TABLE;
	}
	__u32 key = GLB_META_INDEX;
	const struct table_meta *meta = bpf_map_lookup_elem(table, &key);
	if (!meta) {
		count_bind(slot, false, 0);
		return END_DROP_NO_TABLE;
	}
	__u32 width = meta->width;
	if (width == 0 || width > GLB_MAX_HOPS) {
		count_bind(slot, false, 0);
		return END_DROP_NO_HOPS;
	}
	/* A TCP/UDP fragment after the first has no ports: it reaches its
	 * flow's row only if the table does not hash ports. */
	if (f.nonfirst && f.proto != 0 && (meta->fields & GLB_HASH_PORTS)) {
		count_bind(slot, false, 0);
		return END_DROP_FRAGMENT;
	}

	__u64 hash = flow_hash(meta, &f);
	key = (__u32)hash & 0xffff;
	const struct table_row *row = bpf_map_lookup_elem(table, &key);
	if (!row) {
		count_bind(slot, false, 0);
		return END_DROP_NO_TABLE;
	}

	r = encap(ctx, &pk, row, width, hash, f.sport);
	count_bind(slot, r == END_TX, pk.ip_len);
	return r;
}

SEC("xdp")
int glb_director(struct xdp_md *ctx)
{
	return finish(direct(ctx));
}
