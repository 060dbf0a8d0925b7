package redirect

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
)

// Frames as the director sends them to this host (selfIP), and the frames
// the program must leave behind.

func fromDirector(h gueHdr, inner []byte) []byte {
	return ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: directorIP, dst: selfIP}.wrap(h, inner))
}

// decapsulated is what the stack must receive: the Ethernet header as it
// arrived, with the inner family's type, and the inner packet unchanged.
func decapsulated(inner []byte) []byte {
	typ := uint16(ethIPv4)
	if inner[0]>>4 == 6 {
		typ = ethIPv6
	}
	return ether(selfMAC, dirMAC, typ, inner)
}

func v4tcp(src, dst netip.Addr, sport, dport uint16, o tcpOpts) []byte {
	return ipv4(src, dst, protoTCP, tcp(src, dst, sport, dport, o), ipv4Opts{id: 7, flags: 0x4000})
}

func v6tcp(src, dst netip.Addr, sport, dport uint16, o tcpOpts) []byte {
	return ipv6(src, dst, protoTCP, tcp(src, dst, sport, dport, o))
}

// v6tcpExt is v6tcp with the extension headers exts before the TCP header.
func v6tcpExt(src, dst netip.Addr, sport, dport uint16, o tcpOpts, exts ...ext6) []byte {
	return ipv6ext(src, dst, exts, protoTCP, tcp(src, dst, sport, dport, o))
}

// v6tcpFrags cuts a TCP segment in two IPv6 fragments, each with the
// extension headers exts before its fragment header: the first carries
// the segment's first firstLen bytes (a multiple of 8, at least the TCP
// header), the second the rest.
func v6tcpFrags(src, dst netip.Addr, sport, dport uint16, o tcpOpts, firstLen int, id uint32, exts ...ext6) (first, rest []byte) {
	seg := tcp(src, dst, sport, dport, o)
	first = ipv6ext(src, dst, slices.Concat(exts, []ext6{fragment6(0, true, id)}), protoTCP, seg[:firstLen])
	rest = ipv6ext(src, dst, slices.Concat(exts, []ext6{fragment6(uint16(firstLen/8), false, id)}), protoTCP, seg[firstLen:])
	return first, rest
}

var (
	ackSeg  = tcpOpts{flags: tcpACK | tcpPSH, seq: 1000, ack: 2000, payload: []byte("hello, second chance")}
	synSeg  = tcpOpts{flags: tcpSYN, seq: 99, options: []byte{2, 4, 0x05, 0xb4}}
	hops1   = []netip.Addr{peerIP}
	remote  = remoteClnt
	remote6 = remoteClnt6
)

// fragNeeded is the ICMP error a router sends the VIP's host when a reply
// (vip:sport -> client:cport, protocol proto) is too big: it travels from
// the router to the VIP, quoting the reply.
func fragNeeded(router, vip, client netip.Addr, proto uint8, vport, cport uint16) []byte {
	var l4 []byte
	if proto == protoTCP {
		l4 = tcp(vip, client, vport, cport, tcpOpts{flags: tcpACK, seq: 5, ack: 6})[:8]
	} else {
		l4 = udp(vip, client, vport, cport, []byte("x"), true)[:8]
	}
	quoted := ipv4(vip, client, proto, nil, ipv4Opts{flags: 0x4000})
	quoted = append(quoted[:20:20], l4...)
	// The quoted header still claims its original length.
	return ipv4(router, vip, protoICMP, icmp4(3, 4, 1400, quoted), ipv4Opts{})
}

func packetTooBig(router, vip, client netip.Addr, proto uint8, vport, cport uint16) []byte {
	var l4 []byte
	if proto == protoTCP {
		l4 = tcp(vip, client, vport, cport, tcpOpts{flags: tcpACK})[:8]
	} else {
		l4 = udp(vip, client, vport, cport, []byte("x"), true)[:8]
	}
	quoted := ipv6(vip, client, proto, l4)
	return ipv6(router, vip, protoICMPv6, icmp6(router, vip, 2, 0, 1280, quoted))
}

// tcpQuote6 is what an ICMPv6 error quotes of a TCP packet vip:vport ->
// client:cport: the IPv6 header and the first 8 bytes of TCP.
func tcpQuote6(vip, client netip.Addr, vport, cport uint16) []byte {
	return ipv6(vip, client, protoTCP, tcp(vip, client, vport, cport, tcpOpts{flags: tcpACK})[:8])
}

// packetTooBigQuoting is a packet-too-big from router to vip quoting
// quoted (a packet the VIP sent).
func packetTooBigQuoting(router, vip netip.Addr, quoted []byte) []byte {
	return ipv6(router, vip, protoICMPv6, icmp6(router, vip, 2, 0, 1280, quoted))
}

// forwarded is what the program must hand to bpf_redirect_neigh for hop:
// the same frame with the outer source = this host, the destination = hop,
// next_hop + 1 and every checksum right. The Ethernet header is as it
// arrived: the kernel writes the neighbour's MACs when it transmits.
func forwarded(h gueHdr, o gueOuter, inner []byte, hop netip.Addr) []byte {
	h.nextHop++
	o.src, o.dst = selfIP, hop
	return ether(selfMAC, dirMAC, ethIPv4, o.wrap(h, inner))
}

type progCase struct {
	name        string
	in          []byte
	wantVerdict uint32
	wantOut     []byte // nil: not checked (dropped packets)
	wantOutcome string
}

func TestProgramGolden(t *testing.T) {
	e := newProgEnv(t)

	innerAck := v4tcp(remote, vip4, 40001, 443, ackSeg)
	innerAck6 := v6tcp(remote6, vip6, 40001, 443, ackSeg)
	ackExt6 := v6tcpExt(remote6, vip6, 40001, 443, ackSeg, hopByHop(), destOpts())
	ackFirst6, rest6 := v6tcpFrags(remote6, vip6, 40001, 443, ackSeg, 32, 0x1234)
	_, rest6ext := v6tcpFrags(remote6, vip6, 40001, 443, ackSeg, 32, 0x1235, hopByHop(), destOpts())
	synFirst6, _ := v6tcpFrags(remote6, vip6, 40000, 443, tcpOpts{flags: tcpSYN, seq: 99, payload: make([]byte, 16)}, 24, 0x1236, hopByHop())
	director := gueOuter{src: directorIP, dst: selfIP}
	threeHops := gueHdr{hops: []netip.Addr{unresolvedIP, peerIP, selfIP}, nextHop: 1}
	withCsum := gueOuter{src: directorIP, dst: selfIP, udpCsum: true, sport: 0x8abc, ip: ipv4Opts{id: 0x1234, ttl: 17, tos: 0x10}}

	notGUE := []progCase{
		{name: "an ARP frame passes untouched",
			in: ether(selfMAC, dirMAC, 0x0806, make([]byte, 28))},
		{name: "a frame with only an Ethernet header passes untouched",
			in: ether(selfMAC, dirMAC, 0x88b5, nil)},
		{name: "plain IPv6 passes untouched",
			in: ether(selfMAC, dirMAC, ethIPv6, innerAck6)},
		{name: "TCP to this host passes untouched",
			in: ether(selfMAC, dirMAC, ethIPv4, v4tcp(directorIP, selfIP, 5555, 22, ackSeg))},
		{name: "UDP to another port passes untouched",
			in: ether(selfMAC, dirMAC, ethIPv4, ipv4(directorIP, selfIP, protoUDP, udp(directorIP, selfIP, 53, 19524, gueHdr{hops: hops1}.bytes(innerAck), false), ipv4Opts{}))},
		{name: "a later fragment of a UDP packet passes untouched",
			in: ether(selfMAC, dirMAC, ethIPv4, ipv4(directorIP, selfIP, protoUDP, udp(directorIP, selfIP, 1, guePort, nil, false), ipv4Opts{flags: 0x0010}))},
		{name: "an IPv4 header with options to another port passes untouched",
			in: ether(selfMAC, dirMAC, ethIPv4, ipv4(directorIP, selfIP, protoUDP, udp(directorIP, selfIP, 1, 53, []byte("dns?"), false), ipv4Opts{options: []byte{1, 1, 1, 0}}))},
	}
	for i := range notGUE {
		notGUE[i].wantVerdict = verdictPass
		notGUE[i].wantOut = notGUE[i].in
		notGUE[i].wantOutcome = "passed_not_gue"
	}

	// Packets dropped and counted: the output is not checked.
	drop := func(name string, in []byte, outcome string) progCase {
		return progCase{name: name, in: in, wantVerdict: verdictDrop, wantOutcome: outcome}
	}

	cases := append(notGUE, []progCase{
		{name: "GUE to another host's address passes untouched",
			in:          ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: directorIP, dst: peerIP}.wrap(gueHdr{hops: hops1}, innerAck)),
			wantVerdict: verdictPass, wantOutcome: "passed_other_host",
			wantOut: ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: directorIP, dst: peerIP}.wrap(gueHdr{hops: hops1}, innerAck))},

		// Malformed GUE: dropped and counted.
		drop("GUE with outer IPv4 options is malformed",
			ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: directorIP, dst: selfIP, ip: ipv4Opts{options: []byte{1, 1, 1, 0}}}.wrap(gueHdr{hops: hops1}, innerAck)), "malformed_outer"),
		drop("the first fragment of a GUE packet is malformed",
			ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: directorIP, dst: selfIP, ip: ipv4Opts{flags: 0x2000}}.wrap(gueHdr{hops: hops1}, innerAck)), "malformed_outer"),
		drop("GUE cut inside the GUE header is malformed",
			ether(selfMAC, dirMAC, ethIPv4, ipv4(directorIP, selfIP, protoUDP, udp(directorIP, selfIP, 1, guePort, []byte{2, 4, 0, 0, 0}, false), ipv4Opts{})), "malformed_short"),
		drop("GUE version 1 is malformed",
			fromDirector(gueHdr{hops: hops1, verC: 0x40}, innerAck), "malformed_gue_version"),
		drop("a GUE control message is malformed",
			fromDirector(gueHdr{hops: hops1, verC: 0x20}, innerAck), "malformed_gue_version"),
		drop("GUE flags are malformed",
			fromDirector(gueHdr{hops: hops1, flags: 0x8000}, innerAck), "malformed_gue_flags"),
		drop("a GUE proto other than 4 or 41 is malformed",
			fromDirector(gueHdr{hops: hops1, proto: 17}, innerAck), "malformed_gue_proto"),
		drop("hlen larger than 1 + hop_count is malformed",
			fromDirector(gueHdr{hops: hops1, hlen: 3}, innerAck), "malformed_gue_hlen"),
		drop("hlen 0 is malformed",
			fromDirector(gueHdr{hops: nil, hlen: 32}, innerAck), "malformed_gue_hlen"), // 32 & 0x1f == 0
		drop("hop_count larger than hlen allows is malformed",
			fromDirector(gueHdr{hops: hops1, hopCount: 5}, innerAck), "malformed_gue_hlen"),
		drop("a GLB private data type other than 0 is malformed",
			fromDirector(gueHdr{hops: hops1, privType: 1}, innerAck), "malformed_private_type"),
		drop("next_hop beyond hop_count is malformed",
			fromDirector(gueHdr{hops: hops1, nextHop: 2}, innerAck), "malformed_next_hop"),
		drop("a hop list cut short is malformed",
			ether(selfMAC, dirMAC, ethIPv4, ipv4(directorIP, selfIP, protoUDP, udp(directorIP, selfIP, 1, guePort, gueHdr{hops: []netip.Addr{peerIP, peerIP, peerIP}}.bytes(nil)[:14], false), ipv4Opts{})), "malformed_short"),
		drop("an IPv6 packet under proto 4 is malformed",
			fromDirector(gueHdr{hops: hops1, proto: 4}, innerAck6), "malformed_inner"),
		drop("an IPv4 packet under proto 41 is malformed",
			fromDirector(gueHdr{hops: hops1, proto: 41}, innerAck), "malformed_inner"),
		drop("an inner IPv4 header with ihl below 5 is malformed",
			fromDirector(gueHdr{hops: hops1}, append([]byte{0x44}, innerAck[1:]...)), "malformed_inner"),
		drop("an inner TCP header cut short is malformed",
			fromDirector(gueHdr{hops: hops1}, innerAck[:30]), "malformed_short"),
		drop("an inner IPv6 header cut short is malformed",
			fromDirector(gueHdr{hops: hops1}, innerAck6[:30]), "malformed_short"),
		drop("inner GRE is dropped: GLB forwards only TCP, UDP and ICMP",
			fromDirector(gueHdr{hops: hops1}, ipv4(remote, vip4, 47, make([]byte, 8), ipv4Opts{})), "dropped_inner_proto"),
		drop("GRE behind an inner IPv6 hop-by-hop header is dropped",
			fromDirector(gueHdr{hops: hops1}, ipv6ext(remote6, vip6, []ext6{hopByHop()}, 47, make([]byte, 8))), "dropped_inner_proto"),
		drop("an inner IPv6 hop-by-hop header with no next header is dropped",
			fromDirector(gueHdr{hops: hops1}, ipv6ext(remote6, vip6, []ext6{hopByHop()}, ext6NoNext, nil)), "dropped_inner_proto"),
		drop("an inner IPv6 extension header cut short is malformed",
			fromDirector(gueHdr{hops: hops1}, ipv6ext(remote6, vip6, []ext6{hopByHop(), destOpts()}, protoTCP, nil)[:40+8+4]), "malformed_short"),
		drop("an inner IPv6 extension header longer than the packet is malformed",
			fromDirector(gueHdr{hops: hops1}, ipv6ext(remote6, vip6, []ext6{{ext6DestOpts, append([]byte{1, 4}, make([]byte, 12)...)}}, protoTCP, nil)[:40+8]), "malformed_short"),
		drop("a TCP header cut short behind inner IPv6 extension headers is malformed",
			fromDirector(gueHdr{hops: hops1}, v6tcpExt(remote6, vip6, 40001, 443, ackSeg, hopByHop(), destOpts())[:40+16+19]), "malformed_short"),
		drop("eight inner IPv6 extension headers are malformed, as the director counts them",
			fromDirector(gueHdr{hops: hops1}, v6tcpExt(remote6, vip6, 40000, 443, synSeg, hopByHop(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts())), "malformed_inner"),
	}...)

	// Packets this host takes: the output is the inner packet exactly.
	accept := func(name string, h gueHdr, inner []byte, outcome string) progCase {
		return progCase{name: name, in: fromDirector(h, inner), wantVerdict: verdictPass, wantOut: decapsulated(inner), wantOutcome: outcome}
	}
	cases = append(cases,
		accept("an IPv4 SYN is taken here", gueHdr{hops: hops1}, v4tcp(remote, vip4, 40000, 443, synSeg), "accepted_syn"),
		accept("an IPv6 SYN is taken here and becomes IPv6 on the wire", gueHdr{hops: hops1}, v6tcp(remote6, vip6, 40000, 443, synSeg), "accepted_syn"),
		accept("a SYN on its last hop is taken here", gueHdr{hops: hops1, nextHop: 1}, v4tcp(remote, vip4, 40000, 443, synSeg), "accepted_syn"),
		accept("a SYN with an inner IPv4 option is taken here whole",
			gueHdr{hops: hops1}, ipv4(remote, vip4, protoTCP, tcp(remote, vip4, 1, 443, synSeg), ipv4Opts{options: []byte{1, 1, 1, 0}}), "accepted_syn"),
		accept("inner UDP is taken on the first host", gueHdr{hops: hops1}, ipv4(remote, vip4, protoUDP, udp(remote, vip4, 5353, 53, []byte("query"), true), ipv4Opts{}), "accepted_udp"),
		accept("inner UDP over IPv6 is taken on the first host", gueHdr{hops: hops1}, ipv6(remote6, vip6, protoUDP, udp(remote6, vip6, 5353, 53, []byte("query"), true)), "accepted_udp"),
		accept("an ICMP echo request is taken on the first host", gueHdr{hops: hops1}, ipv4(remote, vip4, protoICMP, icmp4(8, 0, 0x10001, []byte("ping")), ipv4Opts{}), "accepted_icmp"),
		accept("a GUE health check (echo to this host, no hops) is taken here", gueHdr{}, ipv4(directorIP, selfIP, protoICMP, icmp4(8, 0, 0x20001, []byte("glb-health")), ipv4Opts{}), "accepted_icmp"),
		accept("an ICMPv6 echo request is taken on the first host", gueHdr{hops: hops1}, ipv6(remote6, vip6, protoICMPv6, icmp6(remote6, vip6, 128, 0, 1, []byte("ping"))), "accepted_icmp"),
		accept("frag-needed about a UDP flow is ordinary ICMP", gueHdr{hops: hops1}, fragNeeded(peerIP, vip4, remote, protoUDP, 53, 5353), "accepted_icmp"),
		accept("packet-too-big about a UDP flow is ordinary ICMP", gueHdr{hops: hops1}, packetTooBig(remote6, vip6, remote6, protoUDP, 53, 5353), "accepted_icmp"),
		accept("a later inner fragment is taken here", gueHdr{hops: hops1}, ipv4(remote, vip4, protoTCP, make([]byte, 16), ipv4Opts{flags: 0x0003}), "accepted_fragment"),
		accept("a later inner IPv6 fragment is taken here", gueHdr{hops: hops1}, rest6, "accepted_fragment"),
		accept("a later inner IPv6 fragment behind hop-by-hop and destination options is taken here", gueHdr{hops: hops1}, rest6ext, "accepted_fragment"),
		accept("a later inner IPv6 fragment of a UDP datagram is taken here", gueHdr{hops: hops1},
			ipv6ext(remote6, vip6, []ext6{fragment6(2, false, 9)}, protoUDP, make([]byte, 8)), "accepted_fragment"),
		accept("an IPv6 SYN behind hop-by-hop and destination options is taken here", gueHdr{hops: hops1},
			v6tcpExt(remote6, vip6, 40000, 443, synSeg, hopByHop(), destOpts()), "accepted_syn"),
		accept("an IPv6 SYN behind a segment routing header with no segment left is taken here", gueHdr{hops: hops1},
			v6tcpExt(remote6, vip6, 40000, 443, synSeg, hopByHop(), segmentRouting(vip6), destOpts()), "accepted_syn"),
		accept("seven inner IPv6 extension headers are walked", gueHdr{hops: hops1},
			v6tcpExt(remote6, vip6, 40000, 443, synSeg, hopByHop(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts()), "accepted_syn"),
		accept("the first IPv6 fragment of a SYN is taken here as a SYN", gueHdr{hops: hops1}, synFirst6, "accepted_syn"),
		accept("an atomic IPv6 fragment of a SYN is taken here as a SYN", gueHdr{hops: hops1},
			v6tcpExt(remote6, vip6, 40000, 443, synSeg, fragment6(0, false, 5)), "accepted_syn"),
		accept("an unknown IPv6 ACK behind extension headers on its last hop is taken as a last resort", gueHdr{hops: hops1, nextHop: 1},
			ackExt6, "accepted_last_resort"),
		accept("the first IPv6 fragment of an unknown ACK on its last hop is taken as a last resort", gueHdr{hops: hops1, nextHop: 1},
			ackFirst6, "accepted_last_resort"),
		accept("inner UDP behind IPv6 extension headers is taken on the first host", gueHdr{hops: hops1},
			ipv6ext(remote6, vip6, []ext6{hopByHop(), destOpts()}, protoUDP, udp(remote6, vip6, 5353, 53, []byte("query"), true)), "accepted_udp"),
		accept("an ICMPv6 echo request behind a hop-by-hop header is taken on the first host", gueHdr{hops: hops1},
			ipv6ext(remote6, vip6, []ext6{hopByHop()}, protoICMPv6, icmp6(remote6, vip6, 128, 0, 1, []byte("ping"))), "accepted_icmp"),
		accept("packet-too-big quoting a later fragment is ordinary ICMP", gueHdr{hops: hops1},
			packetTooBigQuoting(remote6, vip6, ipv6ext(vip6, remote6, []ext6{fragment6(3, false, 1)}, protoTCP, make([]byte, 8))), "accepted_icmp"),
		accept("an unknown ACK on its last hop is taken as a last resort", gueHdr{hops: hops1, nextHop: 1}, innerAck, "accepted_last_resort"),
		accept("an unknown ACK in a one-host row is taken as a last resort", gueHdr{}, innerAck, "accepted_last_resort"),
		accept("an unknown IPv6 ACK on its last hop is taken as a last resort", gueHdr{hops: hops1, nextHop: 1}, innerAck6, "accepted_last_resort"),
		accept("a next hop equal to this host is taken here (loop guard)", gueHdr{hops: []netip.Addr{selfIP, peerIP}}, innerAck, "forwarded_to_self"),
		accept("a next hop equal to the outer destination is taken here (GLB's loop guard)",
			gueHdr{hops: []netip.Addr{selfIP}}, innerAck, "forwarded_to_self"),
		accept("a next hop of three at the end is a last resort", gueHdr{hops: threeHops.hops, nextHop: 3}, innerAck, "accepted_last_resort"),
	)

	// Packets this host sends on.
	fwd := func(name string, h gueHdr, o gueOuter, inner []byte, hop netip.Addr) progCase {
		return progCase{name: name, in: ether(selfMAC, dirMAC, ethIPv4, o.wrap(h, inner)), wantVerdict: verdictRedirect,
			wantOut: forwarded(h, o, inner, hop), wantOutcome: "forwarded_to_alternate"}
	}
	cases = append(cases,
		fwd("an unknown ACK goes to the next hop", gueHdr{hops: hops1}, director, innerAck, peerIP),
		fwd("an unknown IPv6 ACK goes to the next hop", gueHdr{hops: hops1}, director, innerAck6, peerIP),
		fwd("a SYN-ACK is not a SYN and goes to the next hop", gueHdr{hops: hops1}, director,
			v4tcp(remote, vip4, 40001, 443, tcpOpts{flags: tcpSYN | tcpACK, seq: 1, ack: 2}), peerIP),
		fwd("an unknown RST goes to the next hop", gueHdr{hops: hops1}, director,
			v4tcp(remote, vip4, 40001, 443, tcpOpts{flags: tcpRST, seq: 1}), peerIP),
		fwd("an unknown FIN goes to the next hop", gueHdr{hops: hops1}, director,
			v4tcp(remote, vip4, 40001, 443, tcpOpts{flags: tcpFIN | tcpACK, seq: 1, ack: 1}), peerIP),
		fwd("the second of three hops is used when next_hop is 1", threeHops, director, innerAck, peerIP),
		fwd("a UDP checksum, TTL, id and TOS survive forwarding", gueHdr{hops: hops1}, withCsum, innerAck, peerIP),
		fwd("a hop without a neighbour entry goes out too", gueHdr{hops: []netip.Addr{unresolvedIP}}, director, innerAck, unresolvedIP),
		fwd("a hop without a route goes out too: the kernel takes it as on-link", gueHdr{hops: []netip.Addr{unroutedIP}}, director, innerAck, unroutedIP),
		fwd("frag-needed about an unknown TCP flow follows the flow", gueHdr{hops: hops1}, director,
			fragNeeded(peerIP, vip4, remote, protoTCP, 443, 40001), peerIP),
		fwd("packet-too-big about an unknown TCP flow follows the flow", gueHdr{hops: hops1}, director,
			packetTooBig(remote6, vip6, remote6, protoTCP, 443, 40001), peerIP),
		fwd("an unknown IPv6 ACK behind hop-by-hop and destination options goes to the next hop", gueHdr{hops: hops1}, director,
			ackExt6, peerIP),
		fwd("the first IPv6 fragment of an unknown ACK goes to the next hop", gueHdr{hops: hops1}, director,
			ackFirst6, peerIP),
		fwd("packet-too-big behind a hop-by-hop header about an unknown TCP flow follows the flow", gueHdr{hops: hops1}, director,
			ipv6ext(remote6, vip6, []ext6{hopByHop()}, protoICMPv6, icmp6(remote6, vip6, 2, 0, 1280, tcpQuote6(vip6, remote6, 443, 40001))), peerIP),
		fwd("packet-too-big quoting extension headers follows the flow", gueHdr{hops: hops1}, director,
			packetTooBigQuoting(remote6, vip6, ipv6ext(vip6, remote6, []ext6{destOpts()}, protoTCP, tcp(vip6, remote6, 443, 40001, tcpOpts{flags: tcpACK})[:8])), peerIP),
	)

	// Trusted sources, next hops no director would list, and outer
	// headers whose lengths lie.
	untrusted := gueOuter{src: untrustedIP, dst: selfIP}
	fromPeer := gueOuter{src: peerIP, dst: selfIP}
	syn := v4tcp(remote, vip4, 40000, 443, synSeg)
	plainFrame := fromDirector(gueHdr{hops: hops1}, innerAck)
	ipLen := len(plainFrame) - 14
	cases = append(cases,
		drop("a SYN from an untrusted source is dropped", ether(selfMAC, dirMAC, ethIPv4, untrusted.wrap(gueHdr{hops: hops1}, syn)), "dropped_untrusted_source"),
		drop("an ACK from an untrusted source is not forwarded", ether(selfMAC, dirMAC, ethIPv4, untrusted.wrap(gueHdr{hops: hops1}, innerAck)), "dropped_untrusted_source"),
		drop("a health check from an untrusted source is dropped",
			ether(selfMAC, dirMAC, ethIPv4, untrusted.wrap(gueHdr{}, ipv4(untrustedIP, selfIP, protoICMP, icmp4(8, 0, 1, []byte("x")), ipv4Opts{}))), "dropped_untrusted_source"),
		drop("GUE with options from an untrusted source counts as untrusted",
			ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: untrustedIP, dst: selfIP, ip: ipv4Opts{options: []byte{1, 1, 1, 0}}}.wrap(gueHdr{hops: hops1}, innerAck)), "dropped_untrusted_source"),
		drop("a malformed GUE header from an untrusted source counts as untrusted",
			ether(selfMAC, dirMAC, ethIPv4, untrusted.wrap(gueHdr{hops: hops1, flags: 0x8000}, innerAck)), "dropped_untrusted_source"),
		progCase{name: "GUE from an untrusted source to another host passes untouched",
			in:          ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: untrustedIP, dst: peerIP}.wrap(gueHdr{hops: hops1}, innerAck)),
			wantVerdict: verdictPass, wantOutcome: "passed_other_host",
			wantOut: ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: untrustedIP, dst: peerIP}.wrap(gueHdr{hops: hops1}, innerAck))},
		progCase{name: "a SYN forwarded by a proxy host in a trusted prefix is taken here",
			in:          ether(selfMAC, dirMAC, ethIPv4, fromPeer.wrap(gueHdr{hops: []netip.Addr{peerIP, selfIP}, nextHop: 1}, syn)),
			wantVerdict: verdictPass, wantOutcome: "accepted_syn", wantOut: decapsulated(syn)},
		progCase{name: "an ACK forwarded by a proxy host in a trusted prefix goes on",
			in:          ether(selfMAC, dirMAC, ethIPv4, fromPeer.wrap(gueHdr{hops: []netip.Addr{selfIP, unresolvedIP}, nextHop: 1}, innerAck)),
			wantVerdict: verdictRedirect, wantOutcome: "forwarded_to_alternate",
			wantOut: forwarded(gueHdr{hops: []netip.Addr{selfIP, unresolvedIP}, nextHop: 1}, fromPeer, innerAck, unresolvedIP)},
		progCase{name: "an IPv4 header with options to another host passes untouched",
			in:          ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: directorIP, dst: peerIP, ip: ipv4Opts{options: []byte{1, 1, 1, 0}}}.wrap(gueHdr{hops: hops1}, innerAck)),
			wantVerdict: verdictPass, wantOutcome: "passed_other_host",
			wantOut: ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: directorIP, dst: peerIP, ip: ipv4Opts{options: []byte{1, 1, 1, 0}}}.wrap(gueHdr{hops: hops1}, innerAck))},
		progCase{name: "an outer IPv4 header with ihl below 5 is not ours: the stack drops it",
			in: func() []byte { f := bytes.Clone(plainFrame); f[14] = 0x44; return f }(), wantVerdict: verdictPass, wantOutcome: "passed_not_gue",
			wantOut: func() []byte { f := bytes.Clone(plainFrame); f[14] = 0x44; return f }()},
		drop("an outer total length longer than the frame is malformed", patchOuter(plainFrame, ipLen+1, ipLen-20+1), "malformed_outer"),
		drop("a UDP length longer than the IPv4 payload is malformed", patchOuter(plainFrame, -1, ipLen-20+1), "malformed_outer"),
		drop("a UDP length shorter than the IPv4 payload is malformed", patchOuter(plainFrame, -1, ipLen-20-1), "malformed_outer"),
		drop("a UDP length below the UDP header is malformed", patchOuter(plainFrame, 20+4, 4), "malformed_outer"),
		drop("an outer total length below the IPv4 header is malformed", patchOuter(plainFrame, 12, -1), "malformed_outer"),
		drop("a UDP datagram that ends inside the GUE hop list is cut short, whatever follows",
			patchOuter(fromDirector(gueHdr{hops: []netip.Addr{peerIP, peerIP, peerIP}}, innerAck), 20+8+4+4, 8+4+4), "malformed_short"),
		progCase{name: "Ethernet padding after the packet is allowed and stays behind the inner packet",
			in:          append(bytes.Clone(plainFrame), 0, 0, 0, 0),
			wantVerdict: verdictRedirect, wantOutcome: "forwarded_to_alternate",
			wantOut: append(forwarded(gueHdr{hops: hops1}, director, innerAck, peerIP), 0, 0, 0, 0)},
		drop("frag-needed with its quoted IPv4 header cut short is malformed", fromDirector(gueHdr{hops: hops1},
			ipv4(peerIP, vip4, protoICMP, icmp4(3, 4, 1400, ipv4(vip4, remote, protoTCP, nil, ipv4Opts{})[:12]), ipv4Opts{})), "malformed_short"),
		drop("frag-needed with its quoted ports cut short is malformed", fromDirector(gueHdr{hops: hops1},
			ipv4(peerIP, vip4, protoICMP, icmp4(3, 4, 1400, append(ipv4(vip4, remote, protoTCP, nil, ipv4Opts{}), 1, 187)), ipv4Opts{})), "malformed_short"),
		drop("frag-needed quoting an IPv6 packet is malformed", fromDirector(gueHdr{hops: hops1},
			ipv4(peerIP, vip4, protoICMP, icmp4(3, 4, 1400, tcpQuote6(vip6, remote6, 443, 40001)), ipv4Opts{})), "malformed_inner"),
		drop("packet-too-big with its quoted IPv6 header cut short is malformed", fromDirector(gueHdr{hops: hops1},
			packetTooBigQuoting(remote6, vip6, tcpQuote6(vip6, remote6, 443, 40001)[:30])), "malformed_short"),
		drop("packet-too-big with its quoted ports cut short is malformed", fromDirector(gueHdr{hops: hops1},
			packetTooBigQuoting(remote6, vip6, tcpQuote6(vip6, remote6, 443, 40001)[:42])), "malformed_short"),
	)
	for _, hop := range []string{"0.0.0.0", "0.1.2.3", "127.0.0.1", "127.255.255.254", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255"} {
		cases = append(cases, drop("an unknown ACK whose next hop is "+hop+" is malformed",
			fromDirector(gueHdr{hops: []netip.Addr{netip.MustParseAddr(hop)}}, innerAck), "malformed_hop_address"))
	}
	cases = append(cases, accept("a SYN listing a loopback next hop is still taken here", gueHdr{hops: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, syn, "accepted_syn"))
	// Hops at the edges of the blocks are ordinary.
	for _, hop := range []string{"1.0.0.1", "126.255.255.255", "128.0.0.1", "223.255.255.254"} {
		h := netip.MustParseAddr(hop)
		cases = append(cases, fwd("an unknown ACK whose next hop is "+hop+" goes on", gueHdr{hops: []netip.Addr{h}}, director, innerAck, h))
	}

	e.runCases(t, cases)
}

// runCases runs each case through the program as a subtest.
func (e *progEnv) runCases(t *testing.T, cases []progCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			verdict, out, outcome := e.run(t, c.in)
			if verdict != c.wantVerdict {
				t.Errorf("verdict %#x, want %#x", verdict, c.wantVerdict)
			}
			if outcome != c.wantOutcome {
				t.Errorf("outcome %s, want %s", outcome, c.wantOutcome)
			}
			if c.wantOut != nil && !bytes.Equal(out, c.wantOut) {
				t.Errorf("output differs\n got %x\nwant %x", out, c.wantOut)
			}
		})
	}
}

// Without a configured address the program acts as GLB's module: any GUE
// on the uplink is for this host, the outer destination is "this host"
// for the loop guard, and forwarded packets leave from it.
func TestProgramWithoutSelfAddress(t *testing.T) {
	e := newProgEnv(t)
	objs, err := loadObjects(netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	e.objs = objs

	other := netip.MustParseAddr("10.1.0.77")
	o := gueOuter{src: directorIP, dst: other}
	innerAck := v4tcp(remote, vip4, 40001, 443, ackSeg)
	syn := v4tcp(remote, vip4, 40000, 443, synSeg)

	cases := []progCase{
		{name: "GUE to any address is taken",
			in: ether(selfMAC, dirMAC, ethIPv4, o.wrap(gueHdr{hops: hops1}, syn)), wantVerdict: verdictPass,
			wantOut: decapsulated(syn), wantOutcome: "accepted_syn"},
		{name: "a next hop equal to the outer destination is taken here",
			in: ether(selfMAC, dirMAC, ethIPv4, o.wrap(gueHdr{hops: []netip.Addr{other, peerIP}}, innerAck)), wantVerdict: verdictPass,
			wantOut: decapsulated(innerAck), wantOutcome: "forwarded_to_self"},
		{name: "a forwarded packet leaves from the outer destination",
			in: ether(selfMAC, dirMAC, ethIPv4, o.wrap(gueHdr{hops: hops1}, innerAck)), wantVerdict: verdictRedirect,
			wantOut:     ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: other, dst: peerIP}.wrap(gueHdr{hops: hops1, nextHop: 1}, innerAck)),
			wantOutcome: "forwarded_to_alternate"},
	}
	e.runCases(t, cases)
}
