package redirect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// FuzzProgram runs random and mutated GUE through bpf/redirect.c. In
// wrapped mode the input is a UDP payload sent to this host's port 19523
// (the GUE header and everything after it); otherwise it is a whole frame
// after the Ethernet header. Whatever the input, the program must count
// exactly one outcome, and:
//   - forward only to hops[next_hop] of the input's own hop list, from
//     this host, with next_hop + 1 and nothing else changed but checksums;
//   - hand the stack exactly the inner packet when it decapsulates;
//   - leave packets it passes untouched.
func FuzzProgram(f *testing.F) {
	payloads, frames := fuzzProgramSeeds()
	for _, s := range payloads {
		f.Add(s, true)
	}
	for _, s := range frames {
		f.Add(s, false)
	}

	e := newProgEnv(f)
	f.Fuzz(func(t *testing.T, data []byte, wrapped bool) {
		var frame []byte
		if wrapped {
			frame = fromDirectorPayload(data)
		} else {
			frame = ether(selfMAC, dirMAC, ethIPv4, data)
		}
		if len(frame) < 14+20 || len(frame) > 1514 {
			// BPF_PROG_TEST_RUN refuses an IPv4 frame shorter than an
			// IPv4 header, and frames past a page; real ones fit an MTU.
			return
		}
		verdict, out, outcome := e.run(t, frame)
		checkInvariants(t, frame, verdict, out, outcome)
	})
}

// fuzzProgramSeeds are FuzzProgram's seeds: GUE payloads the director
// sends to this host's port 19523, and IPv4 packets (after the Ethernet
// header) from anywhere.
func fuzzProgramSeeds() (payloads, frames [][]byte) {
	syn := v4tcp(remote, vip4, 40000, 443, synSeg)
	ack := v4tcp(remote, vip4, 40001, 443, ackSeg)
	ack6 := v6tcp(remote6, vip6, 40001, 443, ackSeg)
	seeds := [][]byte{
		gueHdr{hops: hops1}.bytes(syn),
		gueHdr{hops: hops1}.bytes(ack),
		gueHdr{hops: hops1}.bytes(ack6),
		gueHdr{hops: []netip.Addr{unresolvedIP, peerIP, selfIP}, nextHop: 1}.bytes(ack),
		gueHdr{hops: hops1, nextHop: 1}.bytes(ack),
		gueHdr{hops: []netip.Addr{selfIP}}.bytes(ack),
		gueHdr{}.bytes(ipv4(directorIP, selfIP, protoICMP, icmp4(8, 0, 1, []byte("ping")), ipv4Opts{})),
		gueHdr{hops: hops1}.bytes(fragNeeded(peerIP, vip4, remote, protoTCP, 443, 40001)),
		gueHdr{hops: hops1}.bytes(packetTooBig(remote6, vip6, remote6, protoTCP, 443, 40001)),
		gueHdr{hops: hops1}.bytes(ipv4(remote, vip4, protoUDP, udp(remote, vip4, 1, 53, []byte("q"), true), ipv4Opts{})),
		gueHdr{hops: hops1, hlen: 5}.bytes(ack),
		{0x02, 0x04, 0, 0, 0, 0, 0, 1},
	}
	// Inner IPv6 behind extension headers, whole and in fragments, for
	// the walker the program shares with the director.
	synFirst, synRest := v6tcpFrags(remote6, vip6, 40000, 443, tcpOpts{flags: tcpSYN, options: synSeg.options, payload: make([]byte, 16)}, 24, 1, hopByHop())
	ackFirst, ackRest := v6tcpFrags(remote6, vip6, 40001, 443, ackSeg, 32, 2, hopByHop(), destOpts())
	for _, inner := range [][]byte{
		v6tcpExt(remote6, vip6, 40000, 443, synSeg, hopByHop(), destOpts()),
		v6tcpExt(remote6, vip6, 40001, 443, ackSeg, hopByHop(), destOpts()),
		v6tcpExt(remote6, vip6, 40001, 443, ackSeg, hopByHop(), segmentRouting(vip6), destOpts()),
		v6tcpExt(remote6, vip6, 40001, 443, ackSeg, hopByHop(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts()),
		v6tcpExt(remote6, vip6, 40000, 443, synSeg, fragment6(0, false, 3)),
		synFirst, synRest, ackFirst, ackRest,
		ipv6ext(remote6, vip6, []ext6{hopByHop()}, protoUDP, udp(remote6, vip6, 1, 53, []byte("q"), true)),
		packetTooBigQuoting(remote6, vip6, ipv6ext(vip6, remote6, []ext6{destOpts()}, protoTCP, tcp(vip6, remote6, 443, 40001, tcpOpts{flags: tcpACK})[:8])),
	} {
		seeds = append(seeds, gueHdr{hops: hops1}.bytes(inner), gueHdr{hops: hops1, nextHop: 1}.bytes(inner))
	}
	seeds = append(seeds,
		gueHdr{hops: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}.bytes(ack),
		gueHdr{hops: []netip.Addr{netip.MustParseAddr("224.0.0.1"), peerIP}}.bytes(ack),
	)
	frames = [][]byte{
		gueOuter{src: directorIP, dst: selfIP}.wrap(gueHdr{hops: hops1}, ack),
		gueOuter{src: directorIP, dst: selfIP, ip: ipv4Opts{options: []byte{1, 1, 1, 0}}}.wrap(gueHdr{hops: hops1}, ack),
		gueOuter{src: untrustedIP, dst: selfIP}.wrap(gueHdr{hops: hops1}, ack),
		gueOuter{src: untrustedIP, dst: selfIP}.wrap(gueHdr{hops: hops1}, syn),
		gueOuter{src: peerIP, dst: selfIP}.wrap(gueHdr{hops: []netip.Addr{peerIP, unresolvedIP}, nextHop: 1}, ack),
		ack,
	}
	return seeds, frames
}

// fromDirectorPayload sends payload to this host's GUE port, from the
// director, with correct lengths.
func fromDirectorPayload(payload []byte) []byte {
	return ether(selfMAC, dirMAC, ethIPv4, ipv4(directorIP, selfIP, protoUDP, udp(directorIP, selfIP, 0x9234, guePort, payload, false), ipv4Opts{flags: 0x4000}))
}

func checkInvariants(t testing.TB, in []byte, verdict uint32, out []byte, outcome string) {
	t.Helper()
	if err := invariantErr(in, verdict, out, outcome); err != nil {
		t.Fatalf("%v\n in %x\nout %x", err, in, out)
	}
}

// invariantErr holds one run of the program to the rules FuzzProgram
// lists, and to the trust rule: GUE for this host from a source outside
// trustedForTests is dropped as dropped_untrusted_source, and nothing
// from such a source is ever taken or forwarded.
func invariantErr(in []byte, verdict uint32, out []byte, outcome string) error {
	gueForUs := len(in) >= 14+20 && in[12] == 0x08 && in[13] == 0 && in[14]>>4 == 4 && in[23] == protoUDP
	var src netip.Addr
	if gueForUs {
		src = netip.AddrFrom4([4]byte(in[26:30]))
	}
	if outcome == "dropped_untrusted_source" {
		if !gueForUs || isTrusted(src) {
			return fmt.Errorf("%s for a packet from %s (gue %v)", outcome, src, gueForUs)
		}
	} else if !strings.HasPrefix(outcome, "passed_") && gueForUs && !isTrusted(src) {
		return fmt.Errorf("%s for GUE from untrusted %s", outcome, src)
	}
	return outcomeErr(in, verdict, out, outcome)
}

func outcomeErr(in []byte, verdict uint32, out []byte, outcome string) error {
	switch {
	case strings.HasPrefix(outcome, "passed_"):
		if verdict != verdictPass || !bytes.Equal(out, in) {
			return fmt.Errorf("%s: verdict %#x, changed %x into %x", outcome, verdict, in, out)
		}
	case strings.HasPrefix(outcome, "malformed_"), strings.HasPrefix(outcome, "dropped_"):
		if verdict != verdictDrop {
			return fmt.Errorf("%s: verdict %#x, want drop", outcome, verdict)
		}
	case strings.HasPrefix(outcome, "accepted_"), outcome == "forwarded_to_self":
		if verdict != verdictPass {
			return fmt.Errorf("%s: verdict %#x, want pass", outcome, verdict)
		}
		// Outer IPv4 (20) + UDP (8) + GUE base (4) + 4 * hlen.
		strip := 32 + 4*int(in[42]&0x1f)
		inner := in[14+strip:]
		typ := uint16(ethIPv4)
		if in[43] == 41 {
			typ = ethIPv6
		}
		if want := ether(in[0:6], in[6:12], typ, inner); !bytes.Equal(out, want) {
			return fmt.Errorf("%s: the stack got\n%x\nwant the inner packet\n%x", outcome, out, want)
		}
	case outcome == "forwarded_to_alternate":
		if verdict != verdictRedirect {
			return fmt.Errorf("%s: verdict %#x, want redirect", outcome, verdict)
		}
		return checkForward(in, out)
	default:
		return fmt.Errorf("unknown outcome %s", outcome)
	}
	return nil
}

// checkForward holds a forwarded frame to the rules: the outer destination
// is hops[next_hop] of the input, never anything else.
func checkForward(in, out []byte) error {
	if len(out) != len(in) {
		return fmt.Errorf("forwarded frame is %d bytes, received %d", len(out), len(in))
	}
	const gue = 14 + 20 + 8
	hopCount, nextHop := int(in[gue+7]), int(in[gue+6])
	if nextHop >= hopCount {
		return fmt.Errorf("forwarded with next_hop %d of %d hops", nextHop, hopCount)
	}
	hops := make([]netip.Addr, hopCount)
	for i := range hops {
		hops[i] = netip.AddrFrom4([4]byte(in[gue+8+4*i:]))
	}
	dst := netip.AddrFrom4([4]byte(out[30:34]))
	src := netip.AddrFrom4([4]byte(out[26:30]))
	if dst != hops[nextHop] {
		return fmt.Errorf("forwarded to %s, but hops[%d] of %v is %s", dst, nextHop, hops, hops[nextHop])
	}
	if bogusHop(dst) {
		return fmt.Errorf("forwarded to %s, an address no director lists", dst)
	}
	if src != selfIP || dst == selfIP {
		return fmt.Errorf("forwarded %s -> %s, want from %s to another host", src, dst, selfIP)
	}
	if int(out[gue+6]) != nextHop+1 {
		return fmt.Errorf("next_hop %d after forwarding, want %d", out[gue+6], nextHop+1)
	}
	if checksum(in[14:34]) == 0 && checksum(out[14:34]) != 0 {
		return fmt.Errorf("outer IPv4 checksum broken by forwarding: %x", out[14:34])
	}
	// Apart from addresses, next_hop and checksums, not a byte changed.
	masked := func(b []byte) []byte {
		c := bytes.Clone(b)
		for _, i := range []int{24, 25, gue + 6, gue - 2, gue - 1} { // IP csum, next_hop, UDP csum
			c[i] = 0
		}
		for i := 26; i < 34; i++ {
			c[i] = 0
		}
		return c
	}
	if !bytes.Equal(masked(in), masked(out)) {
		return fmt.Errorf("forwarding changed more than the outer addresses:\n in %x\nout %x", in, out)
	}
	if binary.BigEndian.Uint16(in[gue-2:]) == 0 && binary.BigEndian.Uint16(out[gue-2:]) != 0 {
		return fmt.Errorf("a zero UDP checksum became %#x", binary.BigEndian.Uint16(out[gue-2:]))
	}
	return nil
}

// bogusHop is the rule of bpf/redirect.c's bogus_hop: 0/8, 127/8, 224/4
// and 240/4 are never next hops.
func bogusHop(a netip.Addr) bool {
	first := a.As4()[0]
	return first == 0 || first == 127 || first >= 224
}

// FuzzInnerIPv6 builds inner IPv6 packets from a recipe and checks the
// program's outcome against the walk DESIGN.md and parse.h describe. Each
// byte of chain adds one extension header (its low 3 bits pick the kind,
// the rest its size or fragment offset); proto picks the upper layer,
// flags the TCP flags, and last puts the packet on its last hop. There is
// no local socket, so TCP that is not a SYN goes to the next hop.
func FuzzInnerIPv6(f *testing.F) {
	f.Add([]byte{0, 1}, uint8(0), uint8(tcpSYN), false)                   // hop-by-hop, dest opts, SYN
	f.Add([]byte{0, 1}, uint8(0), uint8(tcpACK), false)                   // ... unknown ACK: forwarded
	f.Add([]byte{0, 1}, uint8(0), uint8(tcpACK), true)                    // ... on its last hop
	f.Add([]byte{0, 3}, uint8(0), uint8(tcpSYN), false)                   // first fragment of a SYN
	f.Add([]byte{0, 4}, uint8(0), uint8(tcpACK), false)                   // a later fragment
	f.Add([]byte{2, 0x18}, uint8(1), uint8(0), false)                     // routing, longer dest opts, UDP
	f.Add([]byte{0, 1, 1, 1, 1, 1, 1, 1}, uint8(0), uint8(tcpSYN), false) // eight: too many
	f.Add([]byte{0, 1, 1, 1, 1, 1, 1, 4}, uint8(0), uint8(tcpSYN), false) // a later fragment eighth
	f.Add([]byte{0}, uint8(3), uint8(0), false)                           // GRE
	f.Add([]byte{}, uint8(2), uint8(0), false)                            // plain echo request

	e := newProgEnv(f)
	f.Fuzz(func(t *testing.T, chain []byte, proto, flags uint8, last bool) {
		if len(chain) > 12 {
			return
		}
		var exts []ext6
		want := ""
		for i, c := range chain {
			switch c & 7 {
			case 0, 5:
				n := int(c>>3&3) * 8 // hop-by-hop: padding options
				exts = append(exts, ext6{ext6HopByHop, append([]byte{1, byte(n + 4)}, make([]byte, n+4)...)})
			case 1, 6:
				n := int(c>>3&3) * 8
				exts = append(exts, ext6{ext6DestOpts, append([]byte{1, byte(n + 4)}, make([]byte, n+4)...)})
			case 2:
				exts = append(exts, segmentRouting(vip6))
			case 3, 7:
				exts = append(exts, fragment6(0, c&8 != 0, uint32(c)))
			case 4:
				exts = append(exts, fragment6(1+uint16(c>>3), c&0x80 != 0, uint32(c)))
				if want == "" && i < 8 {
					want = "accepted_fragment" // the walk stops here
				}
			}
		}
		if want == "" && len(exts) >= 8 {
			want = "malformed_inner"
		}
		var inner []byte
		switch proto % 4 {
		case 0:
			inner = ipv6ext(remote6, vip6, exts, protoTCP, tcp(remote6, vip6, 40001, 443, tcpOpts{flags: flags, seq: 1, ack: 2}))
			if want == "" {
				switch {
				case flags&(tcpSYN|tcpACK) == tcpSYN:
					want = "accepted_syn"
				case last:
					want = "accepted_last_resort"
				default:
					want = "forwarded_to_alternate"
				}
			}
		case 1:
			inner = ipv6ext(remote6, vip6, exts, protoUDP, udp(remote6, vip6, 5353, 53, []byte("q"), true))
			if want == "" {
				want = "accepted_udp"
			}
		case 2:
			inner = ipv6ext(remote6, vip6, exts, protoICMPv6, icmp6(remote6, vip6, 128, 0, 1, []byte("ping")))
			if want == "" {
				want = "accepted_icmp"
			}
		case 3:
			inner = ipv6ext(remote6, vip6, exts, 47, make([]byte, 8))
			if want == "" {
				want = "dropped_inner_proto"
			}
		}
		h := gueHdr{hops: hops1}
		if last {
			h.nextHop = 1
		}
		frame := fromDirector(h, inner)
		verdict, out, outcome := e.run(t, frame)
		if outcome != want {
			t.Fatalf("inner %x: outcome %s, want %s", inner, outcome, want)
		}
		checkInvariants(t, frame, verdict, out, outcome)
	})
}
