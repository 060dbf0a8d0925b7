package dataplane

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/glb-project/glb/bpf"
	"github.com/glb-project/glb/director/table"
)

const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

var actionNames = map[uint32]string{0: "XDP_ABORTED", xdpDrop: "XDP_DROP", xdpPass: "XDP_PASS", xdpTX: "XDP_TX", 4: "XDP_REDIRECT"}

const (
	client4 = "198.51.100.7"
	client6 = "2001:db8::7"
	router4 = "203.0.113.1"
	router6 = "2001:db8:ffff::1"
)

func v4(src, dst string, proto uint8, l4 []byte) []byte {
	return ether(ip4{src: src, dst: dst, proto: proto}.packet(l4))
}

func v6(src, dst string, proto uint8, l4 []byte) []byte {
	return ether(ip6{src: src, dst: dst, proto: proto}.packet(l4))
}

func flow(src, dst string, sport, dport uint16) *table.Flow {
	return &table.Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sport, DstPort: dport}
}

// fragNeeded is an ICMP fragmentation-needed from a router to the VIP,
// quoting a packet the proxy sent from the VIP to the client.
func fragNeeded(quoted []byte) []byte {
	return ip4{src: router4, dst: ipSrc(quoted), proto: protoICMP}.packet(icmp(3, 4, 1400, quoted))
}

func packetTooBig(quoted []byte) []byte {
	return ip6{src: router6, dst: ipSrc(quoted), proto: protoICMPv6}.packet(icmp(2, 0, 1280, quoted))
}

// ipSrc returns the source address of an IP packet, as a string.
func ipSrc(p []byte) string {
	if p[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(p[12:16])).String()
	}
	return netip.AddrFrom16([16]byte(p[8:24])).String()
}

// goldenCase is one packet through the program.
type goldenCase struct {
	name   string
	in     []byte
	want   uint32 // XDP action
	reason bpf.DirectorGlbEnd
	// For XDP_TX: the table the packet's bind belongs to, and the flow
	// whose row it must take (nil: table.FlowOf of the inner packet).
	table      string
	flow       *table.Flow
	clientPort *uint16 // outer sport input, if not flow.SrcPort
	vlan       uint16
}

func goldenCases() []goldenCase {
	synV4 := ip4{src: client4, dst: "10.100.0.3", proto: protoTCP}.packet(tcp(40000, 443, tcpSYN))
	synV6 := ip6{src: client6, dst: "fd00:100::1", proto: protoTCP}.packet(tcp(40001, 443, tcpSYN))
	replyV4 := ip4{src: "10.100.0.3", dst: client4, proto: protoTCP}.packet(tcp(443, 40000, tcpACK, bytes.Repeat([]byte{'x'}, 64)...))
	replyV6 := ip6{src: "fd00:100::1", dst: client6, proto: protoTCP}.packet(tcp(443, 40001, tcpACK, bytes.Repeat([]byte{'y'}, 64)...))
	udpReplyV4 := ip4{src: "10.100.0.5", dst: client4, proto: protoUDP}.packet(udp(53, 5353, bytes.Repeat([]byte{'z'}, 32)...))
	zero := uint16(0)

	padded := append(ether(synV4), make([]byte, 10)...)
	tooLong := ether(synV4)
	binary.BigEndian.PutUint16(tooLong[14+2:], uint16(len(synV4)+10))

	fragQuoted := ip4{src: "10.100.0.3", dst: client4, proto: protoTCP, flags: 100}.packet(make([]byte, 8))
	manyExt := ip6{src: client6, dst: "fd00:100::1", proto: protoTCP}
	for range 8 {
		manyExt.ext = append(manyExt.ext, optsHeader(60, 1))
	}
	sevenExt := ip6{src: client6, dst: "fd00:100::1", proto: protoTCP}
	for range 7 {
		sevenExt.ext = append(sevenExt.ext, optsHeader(60, 1))
	}

	return []goldenCase{
		{name: "tcp syn from an ipv4 client is wrapped for its row's two hops",
			in: ether(synV4), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "udp from an ipv4 client is wrapped",
			in: v4(client4, "10.100.0.5", protoUDP, udp(5353, 53, 1, 2, 3, 4)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "udp to the end of a port range is wrapped",
			in: v4(client4, "10.100.0.5", protoUDP, udp(5353, 54)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "tcp syn from an ipv6 client is wrapped in ipv4 gue",
			in: ether(synV6), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "udp from an ipv6 client is wrapped",
			in: v6(client6, "fd00:100::9", protoUDP, udp(9999, 443, 7)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "icmp echo request to an ipv4 vip is hashed on addresses with ports 0",
			in: v4(client4, "10.100.0.3", protoICMP, icmp(8, 0, 0x12340001, []byte("ping"))), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "icmpv6 echo request to an ipv6 vip is hashed on addresses with ports 0",
			in: v6(client6, "fd00:100::1", protoICMPv6, icmp(128, 0, 0x12340001, []byte("ping"))), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "icmp fragmentation-needed reaches the owner of the quoted tcp flow",
			in: ether(fragNeeded(replyV4)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two", flow: flow(client4, "10.100.0.3", 40000, 443)},
		{name: "icmp fragmentation-needed reaches the owner of the quoted udp flow",
			in: ether(fragNeeded(udpReplyV4)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two", flow: flow(client4, "10.100.0.5", 5353, 53)},
		{name: "icmpv6 packet-too-big reaches the owner of the quoted tcp flow",
			in: ether(packetTooBig(replyV6)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two", flow: flow(client6, "fd00:100::1", 40001, 443)},
		{name: "an 802.1Q-tagged packet keeps its tag",
			in: frame{dst: macSelf, src: macClient, vlan: 0x2064, etype: etherIPv4, payload: synV4}.bytes(), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two", vlan: 0x2064},
		{name: "ipv4 with options is wrapped whole",
			in: ether(ip4{src: client4, dst: "10.100.0.3", proto: protoTCP, options: []byte{1, 1, 1, 0, 0, 0, 0, 0}}.packet(tcp(40000, 443, tcpSYN))), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "the first ipv4 fragment is hashed like its flow",
			in: v4f(0, true, tcp(40000, 443, tcpACK, make([]byte, 64)...)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two", flow: flow(client4, "10.100.0.3", 40000, 443)},
		{name: "a non-first ipv4 fragment follows its flow's row when the table hashes the source address",
			in: v4f(1480, false, make([]byte, 100)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two", flow: flow(client4, "10.100.0.3", 40000, 443), clientPort: &zero},
		{name: "a non-first ipv6 fragment follows its flow's row when the table hashes the source address",
			in: ether(ip6{src: client6, dst: "fd00:100::1", proto: protoTCP, ext: []ext6{fragHeader(1448, false, 7)}}.packet(make([]byte, 100))), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two", flow: flow(client6, "fd00:100::1", 40001, 443), clientPort: &zero},
		{name: "the first ipv6 fragment is hashed like its flow",
			in: ether(ip6{src: client6, dst: "fd00:100::1", proto: protoTCP, ext: []ext6{fragHeader(0, true, 7)}}.packet(tcp(40001, 443, tcpACK))), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two", flow: flow(client6, "fd00:100::1", 40001, 443)},
		{name: "a non-first icmp fragment is routed like an echo request",
			in: ether(ip4{src: client4, dst: "10.100.0.3", proto: protoICMP, flags: 185}.packet(make([]byte, 100))), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two", flow: flow(client4, "10.100.0.3", 0, 0)},
		{name: "a non-first fragment to a table that hashes ports is dropped",
			in: ether(ip4{src: client4, dst: "10.100.4.1", proto: protoTCP, flags: 185}.packet(make([]byte, 100))), want: xdpDrop, reason: bpf.DirectorGlbEndEND_DROP_FRAGMENT},
		{name: "a non-first ipv6 fragment to a table that hashes ports is dropped",
			in: ether(ip6{src: client6, dst: "fd00:400::1", proto: protoTCP, ext: []ext6{fragHeader(1448, false, 7)}}.packet(make([]byte, 100))), want: xdpDrop, reason: bpf.DirectorGlbEndEND_DROP_FRAGMENT},
		{name: "a non-first fragment to a vip whose tcp binds name two tables is dropped",
			in: ether(ip4{src: client4, dst: "10.100.5.1", proto: protoTCP, flags: 185}.packet(make([]byte, 100))), want: xdpDrop, reason: bpf.DirectorGlbEndEND_DROP_FRAGMENT},
		{name: "a vip covered by two binds of different tables uses the one for its port",
			in: v4(client4, "10.100.5.1", protoTCP, tcp(40000, 22, tcpSYN)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "split-b"},
		{name: "the longer prefix's bind of a vip is used for its port",
			in: v4(client4, "10.100.5.1", protoTCP, tcp(40000, 443, tcpSYN)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "split"},
		{name: "a table with three hops lists two in the gue header",
			in: v4(client4, "10.100.1.1", protoTCP, tcp(40000, 80, tcpSYN)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "three"},
		{name: "a table with four hops lists three in the gue header",
			in: v4(client4, "10.100.2.1", protoTCP, tcp(40000, 80, tcpSYN)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "four"},
		{name: "an ipv6 flow to a four-hop table",
			in: v6(client6, "fd00:200::1", protoTCP, tcp(40000, 80, tcpSYN)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "four"},
		{name: "a table hashing all four fields",
			in: v4(client4, "10.100.4.1", protoTCP, tcp(40000, 8443, tcpSYN)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "ports"},
		{name: "an ipv6 flow to a table hashing all four fields",
			in: v6(client6, "fd00:400::1", protoTCP, tcp(40000, 443, tcpSYN)), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "ports"},
		{name: "ipv6 with hop-by-hop and destination options is wrapped",
			in: ether(ip6{src: client6, dst: "fd00:100::1", proto: protoTCP, ext: []ext6{optsHeader(0, 1), optsHeader(60, 2)}}.packet(tcp(40001, 443, tcpSYN))), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "ipv6 with seven extension headers is wrapped",
			in: ether(sevenExt.packet(tcp(40001, 443, tcpSYN))), want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "ipv6 with eight extension headers is dropped",
			in: ether(manyExt.packet(tcp(40001, 443, tcpSYN))), want: xdpDrop, reason: bpf.DirectorGlbEndEND_DROP_MALFORMED},
		{name: "ethernet padding after the ip packet is not tunnelled",
			in: padded, want: xdpTX, reason: bpf.DirectorGlbEndEND_TX, table: "two"},
		{name: "an ipv4 total length beyond the frame is dropped",
			in: tooLong, want: xdpDrop, reason: bpf.DirectorGlbEndEND_DROP_MALFORMED},
		{name: "a port with no bind passes untouched",
			in: v4(client4, "10.100.0.3", protoTCP, tcp(40000, 80, tcpSYN)), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NO_BIND},
		{name: "udp to a tcp-only vip passes untouched",
			in: v4(client4, "10.100.1.1", protoUDP, udp(40000, 80)), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NO_BIND},
		{name: "an address that is no vip passes untouched",
			in: v4(client4, "10.200.0.1", protoTCP, tcp(40000, 443, tcpSYN)), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NOT_VIP},
		{name: "an ipv6 address that is no vip passes untouched",
			in: v6(client6, "fd00:999::1", protoTCP, tcp(40000, 443, tcpSYN)), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NOT_VIP},
		{name: "arp passes untouched",
			in: frame{dst: macSelf, src: macClient, etype: etherARP, payload: make([]byte, 28)}.bytes(), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NOT_IP},
		{name: "a table with no usable backend drops",
			in: v4(client4, "10.100.3.1", protoTCP, tcp(40000, 80, tcpSYN)), want: xdpDrop, reason: bpf.DirectorGlbEndEND_DROP_NO_HOPS},
		{name: "an icmp echo reply to a vip passes untouched",
			in: v4(client4, "10.100.0.3", protoICMP, icmp(0, 0, 1, nil)), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NOT_LB},
		{name: "an icmp port-unreachable to a vip passes untouched",
			in: ether(ip4{src: router4, dst: "10.100.0.3", proto: protoICMP}.packet(icmp(3, 3, 0, replyV4))), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NOT_LB},
		{name: "an icmpv6 destination-unreachable to a vip passes untouched",
			in: ether(ip6{src: router6, dst: "fd00:100::1", proto: protoICMPv6}.packet(icmp(1, 4, 0, replyV6))), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NOT_LB},
		{name: "a fragmentation-needed quoting a fragment passes untouched",
			in: ether(fragNeeded(fragQuoted)), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NOT_LB},
		{name: "an ipv4 header with ihl 4 to a vip is dropped as malformed",
			in: withIHL(v4(client4, "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN)), 4), want: xdpDrop, reason: bpf.DirectorGlbEndEND_DROP_MALFORMED},
		{name: "an ipv4 header with ihl 0 to a vip is dropped as malformed",
			in: withIHL(v4(client4, "10.100.1.1", protoUDP, udp(40000, 53)), 0), want: xdpDrop, reason: bpf.DirectorGlbEndEND_DROP_MALFORMED},
		{name: "an ipv4 header with ihl 4 to another address passes to the stack",
			in: withIHL(v4(client4, "192.0.2.99", protoTCP, tcp(40000, 22, tcpSYN)), 4), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_BAD_IP},
		{name: "gre to a vip passes untouched",
			in: v4(client4, "10.100.0.3", 47, make([]byte, 24)), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NOT_LB},
		{name: "icmpv4 inside ipv6 is not load balanced",
			in: v6(client6, "fd00:100::1", protoICMP, icmp(8, 0, 1, nil)), want: xdpPass, reason: bpf.DirectorGlbEndEND_PASS_NOT_LB},
	}
}

// withIHL sets the IPv4 header length field of a frame (without a VLAN
// tag) and leaves everything else as it is.
func withIHL(frame []byte, ihl byte) []byte {
	out := append([]byte{}, frame...)
	out[14] = 0x40 | ihl&0xf
	return out
}

// v4f is a fragment of the flow client4:40000 -> 10.100.0.3:443.
func v4f(offset uint16, more bool, payload []byte) []byte {
	flags := offset / 8
	if more {
		flags |= 0x2000
	}
	return ether(ip4{src: client4, dst: "10.100.0.3", proto: protoTCP, id: 77, flags: flags}.packet(payload))
}

// innerIP returns the IP packet of a frame, without Ethernet padding.
func innerIP(frame []byte) []byte {
	off := 14
	if binary.BigEndian.Uint16(frame[12:]) == ether8021Q {
		off = 18
	}
	p := frame[off:]
	if p[0]>>4 == 4 {
		return p[:binary.BigEndian.Uint16(p[2:])]
	}
	return p[:40+int(binary.BigEndian.Uint16(p[4:]))]
}

// expectGUE computes the frame the director must send for tc, from the
// Go table code (director/table) and the independent builder gue().
func expectGUE(tb testing.TB, b built, tc goldenCase) (want []byte, hops []netip.Addr) {
	tb.Helper()
	t, ok := b.byName[tc.table]
	if !ok {
		tb.Fatalf("no table %q", tc.table)
	}
	inner := innerIP(tc.in)
	var f table.Flow
	if tc.flow != nil {
		f = *tc.flow
	} else {
		pkt, err := table.FlowOf(inner)
		if err != nil && !errors.Is(err, table.ErrFragment) {
			tb.Fatalf("table.FlowOf: %v", err)
		}
		f = pkt.Flow
	}
	h := table.Hash(t.Spec.HashKey, t.Spec.Fields(), f)
	hops = t.Built.Hops(table.RowOf(h))
	cport := f.SrcPort
	if tc.clientPort != nil {
		cport = *tc.clientPort
	}
	return gue(inner, tc.vlan, macGateway, macSelf, testSrcIP, hops, table.EncapSourcePort(h, cport)), hops
}

func TestGoldenPackets(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	b := buildConfig(t, testConfig, nil)
	apply(t, d, b)

	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			before := ends(t, d)
			got, out := runPacket(t, d.Program(), tc.in, nil)
			if got != tc.want {
				t.Fatalf("action %s, want %s", actionNames[got], actionNames[tc.want])
			}
			after := ends(t, d)
			for e, label := range endLabels {
				want := before[label]
				if e == tc.reason {
					want++
				}
				if after[label] != want {
					t.Errorf("counter %s: %d, want %d", label, after[label], want)
				}
			}
			if tc.want != xdpTX {
				if !bytes.Equal(out, tc.in) {
					t.Errorf("packet changed:\n got %x\nwant %x", out, tc.in)
				}
				return
			}
			want, hops := expectGUE(t, b, tc)
			if !bytes.Equal(out, want) {
				t.Errorf("output differs (hops %v):\n%s", hops, diffHex(out, want))
			}
			if got := len(out) - len(innerIP(tc.in)) - 14 - map[bool]int{true: 4}[tc.vlan != 0]; got != 20+8+8+4*(len(hops)-1) {
				t.Errorf("overhead %d bytes for %d hops", got, len(hops))
			}
		})
	}
}

// diffHex shows two byte strings and where they first differ.
func diffHex(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("first difference at byte %d (got %d bytes, want %d)\n got %s\nwant %s", i, len(got), len(want), hex.EncodeToString(got), hex.EncodeToString(want))
}

func ends(tb testing.TB, d *Dataplane) map[string]uint64 {
	tb.Helper()
	e, err := d.Ends()
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// TestGoldenFlowOwner checks that an ICMP error about a flow takes the
// same hops as the flow's own packets, whatever the client port, across
// many flows and the tables with 2, 3 and 4 hops.
func TestGoldenFlowOwner(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	b := buildConfig(t, testConfig, nil)
	apply(t, d, b)
	vips := []struct{ vip, table string }{{"10.100.0.3", "two"}, {"10.100.1.1", "three"}, {"10.100.2.1", "four"}, {"10.100.4.1", "ports"}}
	for i := range 200 {
		v := vips[i%len(vips)]
		port := map[string]uint16{"two": 443, "three": 80, "four": 80, "ports": 443}[v.table]
		client := netip.AddrFrom4([4]byte{198, 51, byte(i), byte(i * 7)}).String()
		cport := uint16(1024 + i*97)
		_, fwd := runPacket(t, d.Program(), v4(client, v.vip, protoTCP, tcp(cport, port, tcpSYN)), nil)
		reply := ip4{src: v.vip, dst: client, proto: protoTCP}.packet(tcp(port, cport, tcpACK))
		got, errOut := runPacket(t, d.Program(), ether(fragNeeded(reply)), nil)
		if got != xdpTX {
			t.Fatalf("flow %d: icmp error: %s", i, actionNames[got])
		}
		if fh, eh := outerHops(t, fwd), outerHops(t, errOut); !slices4Equal(fh, eh) {
			t.Errorf("flow %s:%d -> %s: packets go to %v, its ICMP error to %v", client, cport, v.vip, fh, eh)
		}
	}
}

func slices4Equal(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestTruncatedPackets cuts packets to a VIP at every length: a frame too
// short to show the destination passes (the stack drops it), anything
// else to a VIP is dropped as malformed, and nothing is ever sent.
func TestTruncatedPackets(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	b := buildConfig(t, testConfig, nil)
	apply(t, d, b)

	replyV4 := ip4{src: "10.100.0.3", dst: client4, proto: protoTCP}.packet(tcp(443, 40000, tcpACK))
	replyV6 := ip6{src: "fd00:100::1", dst: client6, proto: protoTCP}.packet(tcp(443, 40001, tcpACK))
	bases := []struct {
		name  string
		frame []byte
		l3    int // offset of the IP header
		ipMin int // bytes of IP header needed to read the destination
		need  int // bytes needed to forward; 0: the whole frame
	}{
		{"ipv4 tcp", v4(client4, "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN)), 14, 20, 0},
		{"ipv4 tcp with options", ether(ip4{src: client4, dst: "10.100.0.3", proto: protoTCP, options: make([]byte, 12)}.packet(tcp(40000, 443, tcpSYN))), 14, 20, 0},
		{"ipv4 udp", v4(client4, "10.100.0.5", protoUDP, udp(40000, 53)), 14, 20, 0},
		{"ipv4 echo", v4(client4, "10.100.0.3", protoICMP, icmp(8, 0, 1, nil)), 14, 20, 0},
		{"ipv4 frag-needed", ether(fragNeeded(replyV4)), 14, 20, 14 + 20 + 8 + 20 + 8},
		{"vlan ipv4 tcp", frame{dst: macSelf, src: macClient, vlan: 5, etype: etherIPv4, payload: ip4{src: client4, dst: "10.100.0.3", proto: protoTCP}.packet(tcp(1, 443, tcpSYN))}.bytes(), 18, 20, 0},
		{"ipv6 tcp", v6(client6, "fd00:100::1", protoTCP, tcp(40000, 443, tcpSYN)), 14, 40, 0},
		{"ipv6 tcp with extension headers", ether(ip6{src: client6, dst: "fd00:100::1", proto: protoTCP, ext: []ext6{optsHeader(0, 1), fragHeader(0, true, 1), optsHeader(60, 2)}}.packet(tcp(40000, 443, tcpSYN))), 14, 40, 0},
		{"ipv6 echo", v6(client6, "fd00:100::1", protoICMPv6, icmp(128, 0, 1, nil)), 14, 40, 0},
		{"ipv6 packet-too-big", ether(packetTooBig(replyV6)), 14, 40, 14 + 40 + 8 + 40 + 8},
	}
	for _, base := range bases {
		t.Run(base.name, func(t *testing.T) {
			if got, _ := runPacket(t, d.Program(), base.frame, nil); got != xdpTX {
				t.Fatalf("whole packet: %s, want XDP_TX", actionNames[got])
			}
			// XDP test runs need at least an Ethernet header.
			for n := 14; n < len(base.frame); n++ {
				in := base.frame[:n]
				want := uint32(xdpDrop)
				if n < base.l3+base.ipMin {
					want = xdpPass
				}
				if got, _ := runPacket(t, d.Program(), in, nil); got != want {
					t.Errorf("cut to %d bytes: %s, want %s", n, actionNames[got], actionNames[want])
				}
				// The same cut with the IP length fixed up to match: the
				// headers themselves are short.
				if n >= base.l3+base.ipMin {
					fixed := fixLength(in, base.l3)
					wantFixed := uint32(xdpDrop)
					if base.need > 0 && n >= base.need {
						wantFixed = xdpTX // what is cut is beyond the quoted ports
					}
					if got, _ := runPacket(t, d.Program(), fixed, nil); got != wantFixed {
						t.Errorf("cut to %d bytes with consistent ip length: %s, want %s", n, actionNames[got], actionNames[wantFixed])
					}
				}
			}
		})
	}
}

// fixLength rewrites the IP length field of a cut frame to its real size.
func fixLength(in []byte, l3 int) []byte {
	out := append([]byte{}, in...)
	ip := out[l3:]
	if ip[0]>>4 == 4 {
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		ip[10], ip[11] = 0, 0
		hl := int(ip[0]&0xf) * 4
		if hl <= len(ip) {
			binary.BigEndian.PutUint16(ip[10:], csum(ip[:hl], 0))
		}
	} else {
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
	}
	return out
}

// outerHops parses a GUE frame the director sent and returns its hops:
// the outer destination, then the GUE hop list.
func outerHops(tb testing.TB, frame []byte) []netip.Addr {
	tb.Helper()
	g, err := DecodeGUE(frame)
	if err != nil {
		tb.Fatalf("decode gue: %v", err)
	}
	return g.Hops
}
