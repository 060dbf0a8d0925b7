//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * redirect.c: glb's second chance on a proxy host (DESIGN.md §5).
 *
 * Attached with tcx to the ingress of the proxy host's uplink. For every
 * IPv4/UDP packet to GUE_PORT addressed to this host it:
 *
 *   0. drops it unless its outer source is in redirect_trusted (when the
 *      agent was given trusted prefixes);
 *   1. validates the outer lengths, the GUE header and GLB's private data
 *      (drops and counts anything malformed);
 *   2. decides whether the inner packet is ours: a TCP SYN without ACK, a
 *      packet of a local socket (established, request or TIME_WAIT, found
 *      with bpf_skc_lookup_tcp; a bare listener does not count), an ACK
 *      whose SYN cookie bpf_tcp_check_syncookie accepts, inner UDP, ICMP
 *      other than frag-needed/packet-too-big, a fragment after the first,
 *      or the last hop (IPv6 extension headers are walked as the director
 *      walks them, with parse.h's walker);
 *   3. if ours, strips outer IPv4 + UDP + GUE so the inner IPv4 or IPv6
 *      packet goes up the stack as if it had arrived directly;
 *   4. otherwise rewrites the outer header (src = this host, dst =
 *      hops[next_hop]), increments next_hop, fixes the checksums and
 *      redirects the packet toward the next hop, unless that hop is an
 *      address no director lists (0/8, 127/8, 224/4, 240/4).
 *
 * Everything else passes untouched. Every packet ends in exactly one
 * enum outcome, counted per CPU.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <linux/icmpv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "gue.h"
#include "parse.h"
#include "redirect_consts.h"
#include "redirect_maps.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* This host's IPv4 address in network byte order, set by the loader.
 * GUE to any other address passes untouched, forwarded packets leave with
 * it as their source, and a next hop equal to it is taken locally. Zero
 * means "the outer destination", as GLB's kernel module does. Either way,
 * once a packet is past the entry checks its outer destination is this
 * host's address, and the program uses that (gue_pkt.outer_daddr). */
volatile const __be32 cfg_self_ipv4 = 0;

/* Puts enum outcome into the BTF, for bpf2go -type, and lets the
 * loader check its label table against the object it loads. */
volatile const enum outcome outcome_len = OUTCOME_LEN;

/* Set by the loader when redirect_trusted lists the hosts GUE may come
 * from (glb-redirect --gue-from). GUE for this host from any other source
 * is dropped: tcx ingress runs before netfilter, so nothing else stops a
 * host that reaches UDP 19523 from injecting packets into the VIPs or
 * bouncing them off this host to any address. Zero accepts any source. */
volatile const __u8 cfg_trusted_only = 0;

/* tcx verdicts. TCX_NEXT (TC_ACT_UNSPEC) lets a later tcx program see the
 * packet and otherwise means pass; Debian 12's headers predate the TCX_*
 * names. */
#define VERDICT_PASS TC_ACT_UNSPEC
#define VERDICT_DROP TC_ACT_SHOT

#define OUTER_IP_OFF ETH_HLEN
#define OUTER_UDP_OFF (OUTER_IP_OFF + GLB_OUTER_IPV4_LEN)
#define GUE_OFF (OUTER_UDP_OFF + GLB_OUTER_UDP_LEN)
#define UDP_CSUM_OFF (OUTER_UDP_OFF + offsetof(struct udphdr, check))

/* What the parser learnt about one GUE packet. */
struct gue_pkt {
	__u32 wire_len;	    /* skb->len on entry, for the byte counters */
	__u32 strip;	    /* outer IPv4 + UDP + GUE + private data */
	__u32 udp_len;	    /* the outer UDP header's length field */
	__be32 outer_daddr; /* this host's address (see cfg_self_ipv4) */
	__be32 hop;	    /* hops[next_hop], valid when next_hop < hop_count */
	__u8 next_hop;
	__u8 hop_count;
	__u8 inner_v6;
};

static __always_inline int count(enum outcome outcome, __u32 len, int verdict)
{
	__u32 key = outcome;
	struct outcome_stat *s = bpf_map_lookup_elem(&redirect_stats, &key);

	if (s) {
		s->packets++;
		s->bytes += len;
	}
	return verdict;
}

/* trusted says whether GUE from saddr may be taken or forwarded. */
static __always_inline bool trusted(__be32 saddr)
{
	struct trusted_key key = {.prefixlen = 32, .addr = saddr};

	if (!cfg_trusted_only)
		return true;
	return bpf_map_lookup_elem(&redirect_trusted, &key) != NULL;
}

/* A next hop no director would list: "this network" (0/8), loopback
 * (127/8), multicast (224/4) and the reserved block with the limited
 * broadcast address (240/4). Sending there would turn a crafted packet
 * into local or multicast traffic. */
static __always_inline bool bogus_hop(__be32 hop)
{
	__u32 first = bpf_ntohl(hop) >> 24;

	return first == 0 || first == 127 || first >= 224;
}

/* Strips everything between the Ethernet header and the inner IP header.
 * The DECAP_L3 flag makes the kernel set skb->protocol to the inner family
 * (Linux 6.3+); the Ethernet type is ours to fix. bpf_skb_adjust_room also
 * resets CHECKSUM_UNNECESSARY, so the stack verifies the inner checksum. */
static __always_inline int decap(struct __sk_buff *skb, const struct gue_pkt *g, enum outcome outcome)
{
	__u64 flags = g->inner_v6 ? BPF_F_ADJ_ROOM_DECAP_L3_IPV6 : BPF_F_ADJ_ROOM_DECAP_L3_IPV4;

	if (bpf_skb_adjust_room(skb, -(__s32)g->strip, BPF_ADJ_ROOM_MAC, flags))
		return count(OUTCOME_DROPPED_DECAP_FAILED, g->wire_len, VERDICT_DROP);
	if (g->inner_v6) {
		__be16 proto = bpf_htons(ETH_P_IPV6);

		if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto), 0))
			return count(OUTCOME_DROPPED_DECAP_FAILED, g->wire_len, VERDICT_DROP);
	}
	return count(outcome, g->wire_len, VERDICT_PASS);
}

/* RFC 1624 incremental update of a checksum for two 32-bit words that
 * change: HC' = ~(~HC + ~m + m'). Ones' complement sums do not care about
 * byte order, so the words are added as they lie in memory. The IPv4
 * header checksum is never offloaded, so this is always right for it; and
 * since the header's sum stays the same, a CHECKSUM_COMPLETE skb->csum
 * stays valid too. */
static __always_inline __sum16 csum_replace8(__sum16 check, __be32 from1, __be32 from2, __be32 to1, __be32 to2)
{
	__u64 s = (__u16)~check;

	s += (__u16)~from1 + (__u16)~(from1 >> 16) + (__u16)~from2 + (__u16)~(from2 >> 16);
	s += (__u16)to1 + (__u16)(to1 >> 16) + (__u16)to2 + (__u16)(to2 >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__sum16)~s;
}

/* Sends the packet to hops[next_hop]: src = this host, dst = the hop,
 * next_hop + 1, checksums fixed, out of the interface it came in on.
 *
 * bpf_redirect_neigh with no next-hop parameters does what the host's own
 * output path would: a route lookup restricted to that interface (a hop
 * without a route is taken to be on the link, as GLB's directors and proxy
 * hosts share the uplink's network) and a neighbour lookup that resolves
 * and queues when the neighbour is unknown. bpf_fib_lookup is no option:
 * it refuses to work unless the interface forwards (net.ipv4.conf.*.
 * forwarding), and a proxy host should not route. TTL is left alone, as
 * GLB's module re-sends the packet as a local one. */
static __always_inline int forward(struct __sk_buff *skb, const struct gue_pkt *g)
{
	__be32 self = g->outer_daddr;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + OUTER_IP_OFF;
	struct glb_gue_hdr *gue = data + GUE_OFF;
	struct udphdr *udp = data + OUTER_UDP_OFF;
	__be32 old_saddr, old_daddr;
	__be16 old_word, new_word;
	__u16 udp_check;

	if ((void *)(gue + 1) > data_end)
		return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);

	old_saddr = ip->saddr;
	old_daddr = ip->daddr;
	old_word = *(__be16 *)&gue->priv.next_hop;
	udp_check = udp->check;
	ip->saddr = self;
	ip->daddr = g->hop;
	ip->check = csum_replace8(ip->check, old_saddr, old_daddr, self, g->hop);
	gue->priv.next_hop = g->next_hop + 1;
	new_word = *(__be16 *)&gue->priv.next_hop;

	/* GLB's director sends UDP checksum 0, which stays 0. A sender that
	 * set one gets it fixed by the helpers, which also know how to treat
	 * CHECKSUM_PARTIAL and CHECKSUM_COMPLETE skbs; BPF_F_MARK_MANGLED_0
	 * writes 0xffff for a computed zero. */
	if (udp_check) {
		bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_saddr, self,
				    BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | sizeof(self));
		bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_daddr, g->hop,
				    BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | sizeof(self));
		bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_word, new_word,
				    BPF_F_MARK_MANGLED_0 | sizeof(old_word));
	} else {
		/* Nothing compensates the next_hop change inside the packet:
		 * keep a CHECKSUM_COMPLETE skb->csum right for whoever
		 * receives the skb next (a veth peer passes it on as is).
		 * The helper does nothing for other skbs. */
		bpf_csum_update(skb, (__u16)~old_word + (__u32)(__u16)new_word);
	}

	return count(OUTCOME_FORWARDED_TO_ALTERNATE, g->wire_len, bpf_redirect_neigh(skb->ifindex, NULL, 0, 0));
}

/* The TCP path: the inner packet, or the flow an ICMP error is about
 * (th == NULL), has the tuple given. iph/iph_len are the inner IP header,
 * needed to check a SYN cookie. */
static __always_inline int tcp_path(struct __sk_buff *skb, const struct gue_pkt *g, struct bpf_sock_tuple *tuple,
				    __u32 tuple_len, void *iph, __u32 iph_len, struct tcphdr *th)
{
	struct bpf_sock *sk;

	if (th && th->syn && !th->ack)
		return decap(skb, g, OUTCOME_ACCEPTED_SYN);

	sk = bpf_skc_lookup_tcp(skb, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		__u32 state = sk->state;
		int cookie = 0;

		if (state != BPF_TCP_LISTEN) {
			bpf_sk_release(sk);
			if (state == BPF_TCP_TIME_WAIT)
				return decap(skb, g, OUTCOME_ACCEPTED_TIME_WAIT);
			if (state == BPF_TCP_NEW_SYN_RECV)
				return decap(skb, g, OUTCOME_ACCEPTED_SYN_RECV);
			return decap(skb, g, OUTCOME_ACCEPTED_ESTABLISHED);
		}
		/* A bare listener does not make the packet ours, unless it is
		 * the ACK that completes a handshake answered with a cookie. */
		if (th && th->ack && !th->syn && !th->rst && !th->fin)
			cookie = bpf_tcp_check_syncookie(sk, iph, iph_len, th, sizeof(*th)) == 0;
		bpf_sk_release(sk);
		if (cookie)
			return decap(skb, g, OUTCOME_ACCEPTED_SYN_COOKIE);
	}

	/* Second chance. GLB's table puts the host that owned the flow
	 * before a change in the next slot of the hop list. */
	if (g->next_hop >= g->hop_count)
		return decap(skb, g, OUTCOME_ACCEPTED_LAST_RESORT);
	if (g->hop == g->outer_daddr)
		return decap(skb, g, OUTCOME_FORWARDED_TO_SELF);
	if (bogus_hop(g->hop))
		return count(OUTCOME_MALFORMED_HOP_ADDRESS, g->wire_len, VERDICT_DROP);
	return forward(skb, g);
}

static __always_inline int inner_ipv4(struct __sk_buff *skb, const struct gue_pkt *g, struct iphdr *iph,
				      void *data_end)
{
	struct bpf_sock_tuple tuple = {};
	__u32 ihl;

	if ((void *)(iph + 1) > data_end)
		return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
	if (iph->version != 4 || iph->ihl < 5)
		return count(OUTCOME_MALFORMED_INNER, g->wire_len, VERDICT_DROP);
	/* A later fragment has no transport header to look up; the stack
	 * reassembles it with the fragments the director sent here too. */
	if (iph->frag_off & bpf_htons(IP_OFFSET))
		return decap(skb, g, OUTCOME_ACCEPTED_FRAGMENT);
	ihl = iph->ihl * 4;

	switch (iph->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = (void *)iph + ihl;

		if ((void *)(th + 1) > data_end)
			return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
		tuple.ipv4.saddr = iph->saddr;
		tuple.ipv4.daddr = iph->daddr;
		tuple.ipv4.sport = th->source;
		tuple.ipv4.dport = th->dest;
		return tcp_path(skb, g, &tuple, sizeof(tuple.ipv4), iph, sizeof(*iph), th);
	}
	case IPPROTO_UDP:
		return decap(skb, g, OUTCOME_ACCEPTED_UDP);
	case IPPROTO_ICMP: {
		struct redirect_icmphdr *icmp = (void *)iph + ihl;
		struct iphdr *q;
		__be16 *ports;

		if ((void *)(icmp + 1) > data_end)
			return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
		if (icmp->type != ICMP_DEST_UNREACH || icmp->code != ICMP_FRAG_NEEDED)
			return decap(skb, g, OUTCOME_ACCEPTED_ICMP);
		/* The error quotes a packet our socket sent: VIP -> client.
		 * Reverse it to get the tuple of the client's packets. */
		q = (void *)(icmp + 1);
		if ((void *)(q + 1) > data_end)
			return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
		if (q->version != 4 || q->ihl < 5)
			return count(OUTCOME_MALFORMED_INNER, g->wire_len, VERDICT_DROP);
		if (q->protocol != IPPROTO_TCP)
			return decap(skb, g, OUTCOME_ACCEPTED_ICMP);
		ports = (void *)q + q->ihl * 4;
		if ((void *)(ports + 2) > data_end)
			return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
		tuple.ipv4.saddr = q->daddr;
		tuple.ipv4.daddr = q->saddr;
		tuple.ipv4.sport = ports[1];
		tuple.ipv4.dport = ports[0];
		return tcp_path(skb, g, &tuple, sizeof(tuple.ipv4), iph, sizeof(*iph), NULL);
	}
	default:
		return count(OUTCOME_DROPPED_INNER_PROTO, g->wire_len, VERDICT_DROP);
	}
}

/* walk_ipv6 reads the IPv6 header at *off and walks its extension headers
 * as the director walks them (parse.h): hop-by-hop, routing, destination
 * options and fragment headers, at most IPV6_MAX_EXT_HEADERS - 1 of them.
 * It returns WALK_OK with *ip6 the header, *off and *nh the upper-layer
 * header's offset and protocol, and *nonfirst set for a fragment after the
 * first; or the outcome of a packet to drop. */
#define WALK_OK -1

static __always_inline int walk_ipv6(void *data, void *data_end, __u32 *off, struct ipv6hdr **ip6, __u8 *nh,
				     bool *nonfirst)
{
	struct ipv6hdr *h;
	int r;

	if (*off > PARSE_MAX_OFFSET)
		return OUTCOME_MALFORMED_SHORT;
	h = data + *off;
	if ((void *)(h + 1) > data_end)
		return OUTCOME_MALFORMED_SHORT;
	if (h->version != 6)
		return OUTCOME_MALFORMED_INNER;
	*ip6 = h;
	*nh = h->nexthdr;
	*off += sizeof(*h);
	r = parse_ipv6_ext(data, data_end, off, nh, nonfirst);
	if (r == PARSE_EXT_SHORT || (!r && *off > PARSE_MAX_OFFSET))
		return OUTCOME_MALFORMED_SHORT;
	if (r)
		return OUTCOME_MALFORMED_INNER;
	return WALK_OK;
}

/* The inner IPv6 packet starts at off. */
static __always_inline int inner_ipv6(struct __sk_buff *skb, const struct gue_pkt *g, void *data, void *data_end,
				      __u32 off)
{
	struct bpf_sock_tuple tuple = {};
	struct ipv6hdr *ip6;
	bool nonfirst = false;
	__u8 nh;
	int r;

	r = walk_ipv6(data, data_end, &off, &ip6, &nh, &nonfirst);
	if (r != WALK_OK)
		return count(r, g->wire_len, VERDICT_DROP);
	/* A fragment after the first has no transport header, so no socket
	 * can be looked up for it, and no stateless rule can tell whose it
	 * is. It is taken where it lands, as an IPv4 one is (inner_ipv4). A
	 * first fragment (offset 0) carries the ports and goes down the
	 * normal path; see docs/redirect.md for what that means for a flow
	 * that lives on a later hop. */
	if (nonfirst)
		return decap(skb, g, OUTCOME_ACCEPTED_FRAGMENT);

	switch (nh) {
	case IPPROTO_TCP: {
		struct tcphdr *th = data + off;

		if ((void *)(th + 1) > data_end)
			return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
		__builtin_memcpy(tuple.ipv6.saddr, &ip6->saddr, sizeof(tuple.ipv6.saddr));
		__builtin_memcpy(tuple.ipv6.daddr, &ip6->daddr, sizeof(tuple.ipv6.daddr));
		tuple.ipv6.sport = th->source;
		tuple.ipv6.dport = th->dest;
		return tcp_path(skb, g, &tuple, sizeof(tuple.ipv6), ip6, sizeof(*ip6), th);
	}
	case IPPROTO_UDP:
		return decap(skb, g, OUTCOME_ACCEPTED_UDP);
	case IPPROTO_ICMPV6: {
		struct icmp6hdr *icmp = data + off;
		struct ipv6hdr *q;
		__be16 *ports;
		bool qnonfirst = false;
		__u8 qnh;

		if ((void *)(icmp + 1) > data_end)
			return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
		if (icmp->icmp6_type != ICMPV6_PKT_TOOBIG)
			return decap(skb, g, OUTCOME_ACCEPTED_ICMP);
		/* The quote's extension headers are walked too, as the director
		 * walks them to pick the row. */
		off += sizeof(*icmp);
		r = walk_ipv6(data, data_end, &off, &q, &qnh, &qnonfirst);
		if (r != WALK_OK)
			return count(r, g->wire_len, VERDICT_DROP);
		if (qnonfirst || qnh != IPPROTO_TCP)
			return decap(skb, g, OUTCOME_ACCEPTED_ICMP);
		ports = data + off;
		if ((void *)(ports + 2) > data_end)
			return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
		__builtin_memcpy(tuple.ipv6.saddr, &q->daddr, sizeof(tuple.ipv6.saddr));
		__builtin_memcpy(tuple.ipv6.daddr, &q->saddr, sizeof(tuple.ipv6.daddr));
		tuple.ipv6.sport = ports[1];
		tuple.ipv6.dport = ports[0];
		return tcp_path(skb, g, &tuple, sizeof(tuple.ipv6), ip6, sizeof(*ip6), NULL);
	}
	default:
		return count(OUTCOME_DROPPED_INNER_PROTO, g->wire_len, VERDICT_DROP);
	}
}

/* A UDP packet to GUE_PORT with a 20-byte outer IPv4 header, for us. */
static __always_inline int gue(struct __sk_buff *skb, struct gue_pkt *g)
{
	void *data, *data_end;
	struct iphdr *ip;
	struct glb_gue_hdr *gh;
	__u32 hlen, linear;

	/* The headers must be in the linear part for direct access. Pull
	 * them in when the driver left some in fragments; this costs only
	 * for such packets. */
	linear = skb->data_end - skb->data;
	if (linear < skb->len && linear < REDIRECT_MAX_HEADERS)
		bpf_skb_pull_data(skb, skb->len < REDIRECT_MAX_HEADERS ? skb->len : REDIRECT_MAX_HEADERS);

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip = data + OUTER_IP_OFF;
	gh = data + GUE_OFF;
	if ((void *)(gh + 1) > data_end)
		return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);

	if (gh->base.hlen & GUE_VER_C_MASK)
		return count(OUTCOME_MALFORMED_GUE_VERSION, g->wire_len, VERDICT_DROP);
	if (gh->base.flags)
		return count(OUTCOME_MALFORMED_GUE_FLAGS, g->wire_len, VERDICT_DROP);
	if (gh->base.proto != GUE_PROTO_IPV4 && gh->base.proto != GUE_PROTO_IPV6)
		return count(OUTCOME_MALFORMED_GUE_PROTO, g->wire_len, VERDICT_DROP);
	if (gh->priv.type != bpf_htons(GLB_PRIV_TYPE))
		return count(OUTCOME_MALFORMED_PRIVATE_TYPE, g->wire_len, VERDICT_DROP);
	hlen = gh->base.hlen & GUE_HLEN_MASK;
	g->hop_count = gh->priv.hop_count;
	g->next_hop = gh->priv.next_hop;
	/* hlen counts the private data word and the hops. Being 5 bits, it
	 * also bounds hop_count to REDIRECT_MAX_HOP_COUNT; the second test
	 * says so to the verifier. */
	if (hlen != (__u32)g->hop_count + 1 || g->hop_count > REDIRECT_MAX_HOP_COUNT)
		return count(OUTCOME_MALFORMED_GUE_HLEN, g->wire_len, VERDICT_DROP);
	/* The UDP datagram must hold the whole GUE header, whatever bytes
	 * follow it in the frame. */
	if (g->udp_len < GLB_OUTER_UDP_LEN + sizeof(struct gue_base) + hlen * 4)
		return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
	if (g->next_hop > g->hop_count)
		return count(OUTCOME_MALFORMED_NEXT_HOP, g->wire_len, VERDICT_DROP);
	if (g->next_hop < g->hop_count) {
		__be32 *hop = &gh->hops[g->next_hop];

		if ((void *)(hop + 1) > data_end)
			return count(OUTCOME_MALFORMED_SHORT, g->wire_len, VERDICT_DROP);
		g->hop = *hop;
	}

	g->outer_daddr = ip->daddr;
	g->strip = GLB_OUTER_IPV4_LEN + GLB_OUTER_UDP_LEN + sizeof(struct gue_base) + hlen * 4;
	g->inner_v6 = gh->base.proto == GUE_PROTO_IPV6;
	if (g->inner_v6)
		return inner_ipv6(skb, g, data, data_end, ETH_HLEN + g->strip);
	return inner_ipv4(skb, g, data + ETH_HLEN + g->strip, data_end);
}

SEC("tcx/ingress")
int glb_redirect(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct gue_pkt g = {.wire_len = skb->len};
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 tot_len;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return count(OUTCOME_PASSED_NOT_GUE, g.wire_len, VERDICT_PASS);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->protocol != IPPROTO_UDP)
		return count(OUTCOME_PASSED_NOT_GUE, g.wire_len, VERDICT_PASS);
	/* A later fragment has no UDP header to tell GUE by. */
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return count(OUTCOME_PASSED_NOT_GUE, g.wire_len, VERDICT_PASS);

	if (ip->ihl != 5) {
		/* GLB's directors never send IP options. An options-bearing
		 * packet to GUE_PORT is malformed GUE; anything else (or an
		 * invalid header, which the stack drops) is not ours. */
		__be16 dport;
		__u32 off = OUTER_IP_OFF + ip->ihl * 4 + offsetof(struct udphdr, dest);

		if (ip->ihl < 5 || bpf_skb_load_bytes(skb, off, &dport, sizeof(dport)) ||
		    dport != bpf_htons(GUE_PORT))
			return count(OUTCOME_PASSED_NOT_GUE, g.wire_len, VERDICT_PASS);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		ip = data + OUTER_IP_OFF;
		if ((void *)(ip + 1) > data_end)
			return count(OUTCOME_PASSED_NOT_GUE, g.wire_len, VERDICT_PASS);
		if (cfg_self_ipv4 && ip->daddr != cfg_self_ipv4)
			return count(OUTCOME_PASSED_OTHER_HOST, g.wire_len, VERDICT_PASS);
		if (!trusted(ip->saddr))
			return count(OUTCOME_DROPPED_UNTRUSTED_SOURCE, g.wire_len, VERDICT_DROP);
		return count(OUTCOME_MALFORMED_OUTER, g.wire_len, VERDICT_DROP);
	}

	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(GUE_PORT))
		return count(OUTCOME_PASSED_NOT_GUE, g.wire_len, VERDICT_PASS);
	if (cfg_self_ipv4 && ip->daddr != cfg_self_ipv4)
		return count(OUTCOME_PASSED_OTHER_HOST, g.wire_len, VERDICT_PASS);
	if (!trusted(ip->saddr))
		return count(OUTCOME_DROPPED_UNTRUSTED_SOURCE, g.wire_len, VERDICT_DROP);
	/* The first fragment of a GUE packet: the director never fragments,
	 * and half a packet cannot be decapsulated or forwarded. */
	if (ip->frag_off & bpf_htons(IP_MF))
		return count(OUTCOME_MALFORMED_OUTER, g.wire_len, VERDICT_DROP);
	/* Lengths that lie: the IPv4 total length must fit the frame (it may
	 * be shorter: Ethernet pads) and hold the UDP header, and the UDP
	 * length must be what is left of it after the IPv4 header. The program never reads past the
	 * frame, but decapsulating or forwarding such a packet would hand on
	 * bytes its sender did not claim to send. */
	tot_len = bpf_ntohs(ip->tot_len);
	g.udp_len = bpf_ntohs(udp->len);
	if (tot_len > skb->len - ETH_HLEN || tot_len < GLB_OUTER_IPV4_LEN + GLB_OUTER_UDP_LEN ||
	    g.udp_len != tot_len - GLB_OUTER_IPV4_LEN)
		return count(OUTCOME_MALFORMED_OUTER, g.wire_len, VERDICT_DROP);

	return gue(skb, &g);
}
