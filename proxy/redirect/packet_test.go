package redirect

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Packet builders for the program tests. They compute every length and
// checksum from scratch, so a packet the program rewrote incrementally can
// be compared byte for byte with one built fresh. TestGoldenCaptures
// checks them against vectors that scapy wrote into testdata.

const (
	ethIPv4 = 0x0800
	ethIPv6 = 0x86dd

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10

	guePort = 19523
)

// TC verdicts as prog.Run reports them.
const (
	verdictPass     = 0xffffffff // TC_ACT_UNSPEC, aka TCX_NEXT
	verdictDrop     = 2          // TC_ACT_SHOT
	verdictRedirect = 7          // TC_ACT_REDIRECT
)

func ether(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], typ)
	return append(b, payload...)
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func checksum(parts ...[]byte) uint16 {
	var sum uint32
	for _, p := range parts {
		for i := 0; i+1 < len(p); i += 2 {
			sum += uint32(p[i])<<8 | uint32(p[i+1])
		}
		if len(p)%2 == 1 {
			// Only the last part may be odd: every caller passes
			// even-length headers before the payload.
			sum += uint32(p[len(p)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ipv4Opts are the outer or inner IPv4 header fields tests vary.
type ipv4Opts struct {
	id      uint16
	ttl     uint8 // zero: 64
	flags   uint16
	tos     uint8
	options []byte // multiple of 4
}

func ipv4(src, dst netip.Addr, proto uint8, payload []byte, o ipv4Opts) []byte {
	hl := 20 + len(o.options)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	b[1] = o.tos
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], o.id)
	binary.BigEndian.PutUint16(b[6:], o.flags)
	b[8] = o.ttl
	if b[8] == 0 {
		b[8] = 64
	}
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	copy(b[20:], o.options)
	binary.BigEndian.PutUint16(b[10:], checksum(b))
	return append(b, payload...)
}

func ipv6(src, dst netip.Addr, next uint8, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = next
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	return append(b, payload...)
}

// IPv6 extension header types (next-header values).
const (
	ext6HopByHop = 0
	ext6Routing  = 43
	ext6Fragment = 44
	ext6DestOpts = 60
	ext6NoNext   = 59
)

// ext6 is one IPv6 extension header: the next-header value that announces
// it, and what follows its next-header and length bytes. len(body) + 2
// must be a multiple of 8.
type ext6 struct {
	typ  uint8
	body []byte
}

// hopByHop carries a router alert (RFC 2711), padded with a PadN option.
func hopByHop() ext6 {
	return ext6{ext6HopByHop, []byte{5, 2, 0, 0, 1, 0}}
}

// destOpts carries only padding: a PadN option of four bytes.
func destOpts() ext6 { return ext6{ext6DestOpts, []byte{1, 4, 0, 0, 0, 0}} }

// segmentRouting is a segment routing header (RFC 8754) with no segment
// left, listing the final destination dst alone.
func segmentRouting(dst netip.Addr) ext6 {
	a := dst.As16()
	return ext6{ext6Routing, append([]byte{4, 0, 0, 0, 0, 0}, a[:]...)}
}

// fragment6 is a fragment header; offset is in 8-byte units.
func fragment6(offset uint16, more bool, id uint32) ext6 {
	b := make([]byte, 6)
	fo := offset << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[0:], fo)
	binary.BigEndian.PutUint32(b[2:], id)
	return ext6{ext6Fragment, b}
}

// ipv6ext builds an IPv6 packet whose extension headers exts come before
// the upper-layer payload of protocol proto.
func ipv6ext(src, dst netip.Addr, exts []ext6, proto uint8, payload []byte) []byte {
	if len(exts) == 0 {
		return ipv6(src, dst, proto, payload)
	}
	var chain []byte
	for i, x := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1].typ
		}
		if (len(x.body)+2)%8 != 0 {
			panic("ipv6ext: extension header not a multiple of 8 bytes")
		}
		hdrlen := byte((len(x.body)+2)/8 - 1)
		if x.typ == ext6Fragment {
			hdrlen = 0 // the fragment header's reserved byte
		}
		chain = append(chain, next, hdrlen)
		chain = append(chain, x.body...)
	}
	return ipv6(src, dst, exts[0].typ, append(chain, payload...))
}

// pseudo returns the pseudo-header of a transport checksum.
func pseudo(src, dst netip.Addr, proto uint8, length int) []byte {
	if src.Is4() {
		b := make([]byte, 12)
		s, d := src.As4(), dst.As4()
		copy(b[0:4], s[:])
		copy(b[4:8], d[:])
		b[9] = proto
		binary.BigEndian.PutUint16(b[10:], uint16(length))
		return b
	}
	b := make([]byte, 40)
	s, d := src.As16(), dst.As16()
	copy(b[0:16], s[:])
	copy(b[16:32], d[:])
	binary.BigEndian.PutUint32(b[32:], uint32(length))
	b[39] = proto
	return b
}

type tcpOpts struct {
	flags    uint8
	seq, ack uint32
	window   uint16 // zero: 64240
	options  []byte // multiple of 4
	payload  []byte
}

func tcp(src, dst netip.Addr, sport, dport uint16, o tcpOpts) []byte {
	hl := 20 + len(o.options)
	b := make([]byte, hl, hl+len(o.payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], o.seq)
	binary.BigEndian.PutUint32(b[8:], o.ack)
	b[12] = byte(hl/4) << 4
	b[13] = o.flags
	w := o.window
	if w == 0 {
		w = 64240
	}
	binary.BigEndian.PutUint16(b[14:], w)
	copy(b[20:], o.options)
	b = append(b, o.payload...)
	binary.BigEndian.PutUint16(b[16:], checksum(pseudo(src, dst, protoTCP, len(b)), b))
	return b
}

// udp builds a UDP datagram; withCsum false leaves the checksum 0, as
// GLB's director does for GUE.
func udp(src, dst netip.Addr, sport, dport uint16, payload []byte, withCsum bool) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b = append(b, payload...)
	if withCsum {
		c := checksum(pseudo(src, dst, protoUDP, len(b)), b)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(b[6:], c)
	}
	return b
}

func icmp4(typ, code uint8, rest uint32, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint32(b[4:], rest)
	b = append(b, body...)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func icmp6(src, dst netip.Addr, typ, code uint8, rest uint32, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint32(b[4:], rest)
	b = append(b, body...)
	binary.BigEndian.PutUint16(b[2:], checksum(pseudo(src, dst, protoICMPv6, len(b)), b))
	return b
}

// gueHdr is one GLB GUE header (DESIGN.md §3).
type gueHdr struct {
	proto    uint8 // 4 or 41; zero: from the inner packet's version
	nextHop  uint8
	hops     []netip.Addr // hops[1..]: the outer destination is not listed
	hlen     int          // zero: 1 + len(hops)
	hopCount int          // zero: len(hops); -1: 0
	verC     uint8        // the version and C bits, shifted into place
	flags    uint16
	privType uint16
}

func (h gueHdr) bytes(inner []byte) []byte {
	hopCount := len(h.hops)
	if h.hopCount > 0 {
		hopCount = h.hopCount
	} else if h.hopCount < 0 {
		hopCount = 0
	}
	hlen := 1 + len(h.hops)
	if h.hlen != 0 {
		hlen = h.hlen
	}
	proto := h.proto
	if proto == 0 {
		proto = 4
		if len(inner) > 0 && inner[0]>>4 == 6 {
			proto = 41
		}
	}
	b := make([]byte, 8, 8+4*len(h.hops)+len(inner))
	b[0] = h.verC | byte(hlen&0x1f)
	b[1] = proto
	binary.BigEndian.PutUint16(b[2:], h.flags)
	binary.BigEndian.PutUint16(b[4:], h.privType)
	b[6] = h.nextHop
	b[7] = byte(hopCount)
	for _, hop := range h.hops {
		a := hop.As4()
		b = append(b, a[:]...)
	}
	return append(b, inner...)
}

// gueOuter wraps an inner IP packet the way glb-director does: IPv4 with
// DF, TTL 64, id 0, and UDP to 19523 with checksum 0 unless udpCsum.
type gueOuter struct {
	src, dst netip.Addr
	sport    uint16
	udpCsum  bool
	ip       ipv4Opts
}

func (o gueOuter) wrap(h gueHdr, inner []byte) []byte {
	ipo := o.ip
	if ipo.flags == 0 {
		ipo.flags = 0x4000
	}
	sport := o.sport
	if sport == 0 {
		sport = 0x8000 | 0x1234
	}
	return ipv4(o.src, o.dst, protoUDP, udp(o.src, o.dst, sport, guePort, h.bytes(inner), o.udpCsum), ipo)
}
