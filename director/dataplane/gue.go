package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// GUE is a decoded GUE frame as the director sends it (DESIGN.md §3).
type GUE struct {
	VLAN     uint16 // 802.1Q TCI, 0 if untagged
	Src      netip.Addr
	Hops     []netip.Addr // the outer destination, then the GUE hop list
	SrcPort  uint16       // outer UDP source port
	NextHop  uint8
	Inner    []byte // the client's IP packet
	DstMAC   [6]byte
	SrcMAC   [6]byte
	InnerV6  bool
	OuterTTL uint8
}

// DecodeGUE parses an Ethernet frame carrying a GLB GUE packet and checks
// every fixed field of DESIGN.md §3: outer IPv4 with DF, id 0, TTL 64 and
// a valid checksum; UDP to 19523 with checksum 0 and the high bit of the
// source port set; GUE version 0, C 0, flags 0, hlen = 1 + hop_count; GLB
// private type 0 and next_hop 0; an inner IP packet of the version GUE
// names, whose length is what remains of the frame. glb's tests use it on
// everything the director sends.
func DecodeGUE(frame []byte) (GUE, error) {
	var g GUE
	if len(frame) < 14 {
		return g, errors.New("short ethernet header")
	}
	copy(g.DstMAC[:], frame[0:6])
	copy(g.SrcMAC[:], frame[6:12])
	et, p := binary.BigEndian.Uint16(frame[12:]), frame[14:]
	if et == 0x8100 || et == 0x88a8 {
		if len(p) < 4 {
			return g, errors.New("short 802.1Q tag")
		}
		g.VLAN, et, p = binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), p[4:]
	}
	if et != 0x0800 {
		return g, fmt.Errorf("ethertype %#04x, want IPv4", et)
	}
	if len(p) < 20 {
		return g, errors.New("short outer IPv4 header")
	}
	switch {
	case p[0] != 0x45:
		return g, fmt.Errorf("outer IPv4 version/ihl %#02x, want 0x45", p[0])
	case int(binary.BigEndian.Uint16(p[2:])) != len(p):
		return g, fmt.Errorf("outer IPv4 total length %d, frame holds %d", binary.BigEndian.Uint16(p[2:]), len(p))
	case binary.BigEndian.Uint16(p[4:]) != 0:
		return g, errors.New("outer IPv4 id is not 0")
	case binary.BigEndian.Uint16(p[6:]) != 0x4000:
		return g, fmt.Errorf("outer IPv4 flags/offset %#04x, want DF only", binary.BigEndian.Uint16(p[6:]))
	case p[9] != 17:
		return g, fmt.Errorf("outer protocol %d, want UDP", p[9])
	case ipChecksum(p[:20]) != 0:
		return g, errors.New("outer IPv4 checksum is wrong")
	}
	g.OuterTTL = p[8]
	g.Src = netip.AddrFrom4([4]byte(p[12:16]))
	g.Hops = append(g.Hops, netip.AddrFrom4([4]byte(p[16:20])))
	u := p[20:]
	if len(u) < 8 {
		return g, errors.New("short UDP header")
	}
	g.SrcPort = binary.BigEndian.Uint16(u)
	switch {
	case g.SrcPort&0x8000 == 0:
		return g, fmt.Errorf("UDP source port %d lacks the high bit", g.SrcPort)
	case binary.BigEndian.Uint16(u[2:]) != 19523:
		return g, fmt.Errorf("UDP destination port %d, want 19523", binary.BigEndian.Uint16(u[2:]))
	case int(binary.BigEndian.Uint16(u[4:])) != len(u):
		return g, fmt.Errorf("UDP length %d, packet holds %d", binary.BigEndian.Uint16(u[4:]), len(u))
	case binary.BigEndian.Uint16(u[6:]) != 0:
		return g, errors.New("UDP checksum is not 0")
	}
	h := u[8:]
	if len(h) < 8 {
		return g, errors.New("short GUE header")
	}
	hopCount := int(h[7])
	switch {
	case h[0]&0xe0 != 0:
		return g, fmt.Errorf("GUE version/C bits %#02x, want 0", h[0]&0xe0)
	case int(h[0]&0x1f) != 1+hopCount:
		return g, fmt.Errorf("GUE hlen %d with hop_count %d, want 1 + hop_count", h[0]&0x1f, hopCount)
	case h[2] != 0 || h[3] != 0:
		return g, errors.New("GUE flags are not 0")
	case h[4] != 0 || h[5] != 0:
		return g, errors.New("GLB private data type is not 0")
	case len(h) < 8+4*hopCount:
		return g, errors.New("short GUE hop list")
	}
	g.NextHop = h[6]
	for i := range hopCount {
		g.Hops = append(g.Hops, netip.AddrFrom4([4]byte(h[8+4*i:])))
	}
	g.Inner = h[8+4*hopCount:]
	if len(g.Inner) == 0 {
		return g, errors.New("no inner packet")
	}
	switch h[1] {
	case 4:
		if g.Inner[0]>>4 != 4 || len(g.Inner) < 20 || int(binary.BigEndian.Uint16(g.Inner[2:])) != len(g.Inner) {
			return g, errors.New("GUE says IPv4, inner packet is not a whole IPv4 packet")
		}
	case 41:
		g.InnerV6 = true
		if g.Inner[0]>>4 != 6 || len(g.Inner) < 40 || 40+int(binary.BigEndian.Uint16(g.Inner[4:])) != len(g.Inner) {
			return g, errors.New("GUE says IPv6, inner packet is not a whole IPv6 packet")
		}
	default:
		return g, fmt.Errorf("GUE protocol %d, want 4 or 41", h[1])
	}
	return g, nil
}

// ipChecksum returns the one's complement sum of b, folded: 0 for a header
// with a correct checksum.
func ipChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
