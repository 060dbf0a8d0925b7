package table

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// Minimal packet builders for the tests. Checksums are not filled in:
// FlowOf, like the director, never checks them.

func ip4(src, dst string, proto byte, payload []byte, opts ...byte) []byte {
	ihl := 20 + len(opts)
	h := make([]byte, ihl, ihl+len(payload))
	h[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(h[2:], uint16(ihl+len(payload)))
	h[8], h[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	copy(h[20:], opts)
	return append(h, payload...)
}

func ip6(src, dst string, next byte, payload []byte) []byte {
	h := make([]byte, 40, 40+len(payload))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6], h[7] = next, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, payload...)
}

func tcp(sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12], b[13] = 5<<4, 0x02 // SYN
	return b
}

func udp(sport, dport uint16) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], 8)
	return b
}

func icmpMsg(typ, code byte, body []byte) []byte {
	return append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, body...)
}

func fragment(pkt []byte, offset uint16) []byte {
	p := append([]byte(nil), pkt...)
	binary.BigEndian.PutUint16(p[6:], offset)
	return p
}

// ext6 wraps payload in an IPv6 extension header of the given length
// (in 8-byte units beyond the first).
func ext6(next byte, units byte, payload []byte) []byte {
	h := make([]byte, 8*(int(units)+1))
	h[0], h[1] = next, units
	return append(h, payload...)
}

// extChain wraps a TCP segment in n destination-options headers.
func extChain(n int, seg []byte) []byte {
	p := ext6(6, 0, seg)
	for range n - 1 {
		p = ext6(60, 0, p)
	}
	return p
}

func TestFlowOf(t *testing.T) {
	client4, vip4 := "198.51.100.7", "10.100.0.1"
	client6, vip6 := "2001:db8::7", "fd00::443"
	flow := func(src, dst string, sp, dp uint16) Flow {
		return Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sp, DstPort: dp}
	}
	// The reply the proxy sent, which a router on the way quotes back.
	reply4 := ip4(vip4, client4, 6, tcp(443, 40000))
	reply6 := ip6(vip6, client6, 6, tcp(443, 40000))
	frag6 := func(off uint16, next byte, payload []byte) []byte {
		h := make([]byte, 8)
		h[0] = next
		binary.BigEndian.PutUint16(h[2:], off<<3)
		return append(h, payload...)
	}
	for _, tc := range []struct {
		name      string
		pkt       []byte
		want      Flow
		wantProto Proto
		wantPort  uint16
		wantErr   error
	}{
		{name: "v4 tcp", pkt: ip4(client4, vip4, 6, tcp(40000, 443)), want: flow(client4, vip4, 40000, 443), wantProto: TCP, wantPort: 443},
		{name: "v4 tcp with options", pkt: ip4(client4, vip4, 6, tcp(40000, 443), 1, 1, 1, 1, 1, 1, 1, 0),
			want: flow(client4, vip4, 40000, 443), wantProto: TCP, wantPort: 443},
		{name: "v4 udp", pkt: ip4(client4, vip4, 17, udp(5353, 53)), want: flow(client4, vip4, 5353, 53), wantProto: UDP, wantPort: 53},
		{name: "v4 echo request: ports 0, any bind", pkt: ip4(client4, vip4, 1, icmpMsg(8, 0, nil)), want: flow(client4, vip4, 0, 0)},
		{name: "v4 frag needed: quoted tuple reversed", pkt: ip4("192.0.2.1", vip4, 1, icmpMsg(3, 4, reply4[:28])),
			want: flow(client4, vip4, 40000, 443), wantProto: TCP, wantPort: 443},
		{name: "v4 other unreachable is the host's", pkt: ip4("192.0.2.1", vip4, 1, icmpMsg(3, 1, reply4[:28])), wantErr: ErrNotForwarded},
		{name: "v4 echo reply is the host's", pkt: ip4(client4, vip4, 1, icmpMsg(0, 0, nil)), wantErr: ErrNotForwarded},
		{name: "v4 non-first fragment: addresses only", pkt: fragment(ip4(client4, vip4, 6, []byte{1, 2, 3, 4}), 185),
			want: flow(client4, vip4, 0, 0), wantProto: TCP, wantErr: ErrFragment},
		{name: "v4 first fragment has ports", pkt: fragment(ip4(client4, vip4, 6, tcp(40000, 443)), 0x2000),
			want: flow(client4, vip4, 40000, 443), wantProto: TCP, wantPort: 443},
		{name: "v4 gre is the host's", pkt: ip4(client4, vip4, 47, make([]byte, 8)), wantErr: ErrNotForwarded},
		{name: "v4 short tcp", pkt: ip4(client4, vip4, 6, tcp(40000, 443)[:12]), wantErr: ErrMalformed},
		{name: "v4 ihl too small", pkt: func() []byte { p := ip4(client4, vip4, 6, tcp(1, 2)); p[0] = 0x44; return p }(), wantErr: ErrMalformed},
		{name: "v4 ihl beyond packet", pkt: func() []byte { p := ip4(client4, vip4, 6, nil); p[0] = 0x4f; return p }(), wantErr: ErrMalformed},
		{name: "v6 tcp", pkt: ip6(client6, vip6, 6, tcp(40000, 443)), want: flow(client6, vip6, 40000, 443), wantProto: TCP, wantPort: 443},
		{name: "v6 through hop-by-hop, routing and destination options", pkt: ip6(client6, vip6, 0, ext6(43, 0, ext6(60, 0, ext6(6, 1, tcp(40000, 443))))),
			want: flow(client6, vip6, 40000, 443), wantProto: TCP, wantPort: 443},
		{name: "v6 first fragment", pkt: ip6(client6, vip6, 44, frag6(0, 6, tcp(40000, 443))),
			want: flow(client6, vip6, 40000, 443), wantProto: TCP, wantPort: 443},
		{name: "v6 non-first fragment", pkt: ip6(client6, vip6, 44, frag6(100, 6, []byte{1, 2, 3})),
			want: flow(client6, vip6, 0, 0), wantProto: TCP, wantErr: ErrFragment},
		{name: "v6 echo request", pkt: ip6(client6, vip6, 58, icmpMsg(128, 0, nil)), want: flow(client6, vip6, 0, 0)},
		{name: "v6 packet too big: quoted tuple reversed", pkt: ip6("2001:db8:ffff::1", vip6, 58, icmpMsg(2, 0, reply6[:48])),
			want: flow(client6, vip6, 40000, 443), wantProto: TCP, wantPort: 443},
		{name: "v6 neighbour solicitation is the host's", pkt: ip6(client6, vip6, 58, icmpMsg(135, 0, make([]byte, 16))), wantErr: ErrNotForwarded},
		{name: "v6 eight extension headers are too many", pkt: ip6(client6, vip6, 60, extChain(8, tcp(1, 2))), wantErr: ErrMalformed},
		{name: "v6 truncated extension header", pkt: ip6(client6, vip6, 60, []byte{6, 3, 0, 0, 0, 0, 0, 0}), wantErr: ErrMalformed},
		{name: "v4 icmpv6 inside ipv4 is the host's", pkt: ip4(client4, vip4, 58, icmpMsg(128, 0, nil)), wantErr: ErrNotForwarded},
		{name: "v6 icmpv4 inside ipv6 is the host's", pkt: ip6(client6, vip6, 1, icmpMsg(8, 0, nil)), wantErr: ErrNotForwarded},
		{name: "v4 non-first icmp fragment matches any bind", pkt: fragment(ip4(client4, vip4, 1, []byte{1, 2, 3, 4}), 185),
			want: flow(client4, vip4, 0, 0), wantErr: ErrFragment},
		{name: "v4 link padding is ignored", pkt: append(ip4(client4, vip4, 6, tcp(40000, 443)), 0, 0, 0, 0, 0, 0),
			want: flow(client4, vip4, 40000, 443), wantProto: TCP, wantPort: 443},
		{name: "v4 total length past the buffer", pkt: ip4(client4, vip4, 6, tcp(40000, 443))[:38], wantErr: ErrMalformed},
		{name: "v4 total length cuts the tcp header", pkt: func() []byte {
			p := ip4(client4, vip4, 6, tcp(40000, 443))
			binary.BigEndian.PutUint16(p[2:], 30)
			return p
		}(), wantErr: ErrMalformed},
		{name: "v6 payload length past the buffer", pkt: func() []byte {
			p := ip6(client6, vip6, 6, tcp(40000, 443))
			binary.BigEndian.PutUint16(p[4:], 100)
			return p
		}(), wantErr: ErrMalformed},
		{name: "v6 seven extension headers", pkt: ip6(client6, vip6, 60, extChain(7, tcp(1, 2))),
			want: flow(client6, vip6, 1, 2), wantProto: TCP, wantPort: 2},
		{name: "empty", pkt: nil, wantErr: ErrMalformed},
		{name: "version 5", pkt: []byte{0x50, 0, 0, 0}, wantErr: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := FlowOf(tc.pkt)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && tc.wantErr != ErrFragment {
				return
			}
			if p.Flow != tc.want {
				t.Errorf("flow = %+v, want %+v", p.Flow, tc.want)
			}
			if p.BindProto != tc.wantProto || p.Port != tc.wantPort {
				t.Errorf("bind match = %v port %d, want %v port %d", p.BindProto, p.Port, tc.wantProto, tc.wantPort)
			}
		})
	}
	// Every truncation of a valid packet is an error, never a panic.
	for _, pkt := range [][]byte{ip4(client4, vip4, 6, tcp(40000, 443)), ip6(client6, vip6, 0, ext6(6, 0, tcp(1, 2))),
		ip4("192.0.2.1", vip4, 1, icmpMsg(3, 4, reply4[:28]))} {
		for n := range len(pkt) - 1 {
			if _, err := FlowOf(pkt[:n]); err == nil {
				t.Errorf("truncated to %d bytes: no error", n)
			}
		}
	}
}

func FuzzFlowOf(f *testing.F) {
	f.Add(ip4("198.51.100.7", "10.100.0.1", 6, tcp(40000, 443)))
	f.Add(ip4("192.0.2.1", "10.100.0.1", 1, icmpMsg(3, 4, ip4("10.100.0.1", "198.51.100.7", 6, tcp(443, 40000))[:28])))
	f.Add(ip6("2001:db8::7", "fd00::443", 0, ext6(6, 0, tcp(1, 2))))
	f.Add(ip6("2001:db8::1", "fd00::443", 58, icmpMsg(2, 0, ip6("fd00::443", "2001:db8::7", 17, udp(53, 5353)))))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		p, err := FlowOf(pkt)
		if err != nil && !errors.Is(err, ErrFragment) {
			return
		}
		if !p.Flow.Src.IsValid() || !p.Flow.Dst.IsValid() || !p.Dst.IsValid() {
			t.Fatalf("accepted packet with invalid addresses: %+v", p)
		}
		_ = Hash(goldenKey, SrcAddr|DstAddr|SrcPort|DstPort, p.Flow)
	})
}
