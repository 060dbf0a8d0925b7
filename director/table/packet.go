package table

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Errors from FlowOf. Callers branch on them: a director passes
// ErrNotForwarded packets to the host and drops malformed ones.
var (
	// ErrMalformed means the packet is truncated or its headers are invalid.
	ErrMalformed = errors.New("malformed packet")
	// ErrNotForwarded means a well-formed packet that the director leaves
	// to the host: ICMP other than echo requests and PMTU errors, and
	// protocols other than TCP, UDP and ICMP.
	ErrNotForwarded = errors.New("packet is not load balanced")
	// ErrFragment means a non-first fragment: it has no transport header,
	// so the returned flow carries addresses only (ports 0). With the
	// default src_addr hashing it still lands on its flow's row.
	ErrFragment = errors.New("non-first fragment")
)

// IP protocol numbers used by FlowOf.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// Packet is what FlowOf learns about an IP packet: the flow it is hashed
// on, and the destination a bind must match.
type Packet struct {
	Flow  Flow
	Proto uint8      // TCP, UDP, ICMP or ICMPv6 (of the packet itself)
	Dst   netip.Addr // the packet's own destination (for ICMP errors, not the quoted one)
	Port  uint16     // the bind port: the destination port, or for ICMP errors the quoted source port
	// BindProto is the protocol a bind must have: the packet's own for
	// TCP and UDP, and the quoted packet's for ICMP errors. It is 0 for
	// echo requests, which match any bind whose prefix holds Dst.
	BindProto Proto
}

// FlowOf parses an IPv4 or IPv6 packet (starting at the IP header) the way
// the director does, and returns the flow it hashes:
//   - TCP and UDP: the packet's own addresses and ports;
//   - ICMP echo requests: the addresses, with ports 0;
//   - ICMPv4 fragmentation-needed and ICMPv6 packet-too-big: the quoted
//     packet's tuple reversed, so the error reaches the flow's owner.
func FlowOf(pkt []byte) (Packet, error) {
	if len(pkt) < 1 {
		return Packet{}, ErrMalformed
	}
	switch pkt[0] >> 4 {
	case 4:
		return flowOf4(pkt, false)
	case 6:
		return flowOf6(pkt, false)
	}
	return Packet{}, ErrMalformed
}

// ipv4 parses an IPv4 header and returns the protocol, the payload and the
// fragment offset.
func ipv4(pkt []byte) (src, dst netip.Addr, proto uint8, payload []byte, fragOff uint16, err error) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return src, dst, 0, nil, 0, ErrMalformed
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < 20 || len(pkt) < ihl {
		return src, dst, 0, nil, 0, ErrMalformed
	}
	src = netip.AddrFrom4([4]byte(pkt[12:16]))
	dst = netip.AddrFrom4([4]byte(pkt[16:20]))
	return src, dst, pkt[9], pkt[ihl:], binary.BigEndian.Uint16(pkt[6:8]) & 0x1fff, nil
}

func flowOf4(pkt []byte, quoted bool) (Packet, error) {
	if !quoted {
		// The total length must fit the buffer; bytes past it are link
		// padding. (A quoted header describes a packet of which only
		// the start was quoted.)
		if len(pkt) < 20 {
			return Packet{}, ErrMalformed
		}
		n := int(binary.BigEndian.Uint16(pkt[2:4]))
		if n < 20 || n > len(pkt) {
			return Packet{}, ErrMalformed
		}
		pkt = pkt[:n]
	}
	src, dst, proto, l4, fragOff, err := ipv4(pkt)
	if err != nil {
		return Packet{}, err
	}
	p := Packet{Flow: Flow{Src: src, Dst: dst}, Proto: proto, Dst: dst}
	if fragOff != 0 {
		return fragmentOf(p), ErrFragment
	}
	return transport(p, l4, quoted)
}

// fragmentOf fills in the bind match of a non-first fragment: its own
// protocol, except ICMP fragments, which match like echo requests (any
// bind on the address).
func fragmentOf(p Packet) Packet {
	if p.Proto != protoICMP && p.Proto != protoICMPv6 {
		p.BindProto = Proto(p.Proto)
	}
	return p
}

// maxIPv6Headers bounds the IPv6 header walk: at most 7 extension headers
// and then the transport header, as the XDP director does.
const maxIPv6Headers = 8

func flowOf6(pkt []byte, quoted bool) (Packet, error) {
	if len(pkt) < 40 || pkt[0]>>4 != 6 {
		return Packet{}, ErrMalformed
	}
	if !quoted {
		n := 40 + int(binary.BigEndian.Uint16(pkt[4:6]))
		if n > len(pkt) {
			return Packet{}, ErrMalformed
		}
		pkt = pkt[:n]
	}
	src := netip.AddrFrom16([16]byte(pkt[8:24]))
	dst := netip.AddrFrom16([16]byte(pkt[24:40]))
	p := Packet{Flow: Flow{Src: src, Dst: dst}, Dst: dst}
	next, rest := pkt[6], pkt[40:]
	for range maxIPv6Headers {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(rest) < 8 {
				return Packet{}, ErrMalformed
			}
			n := (int(rest[1]) + 1) * 8
			if len(rest) < n {
				return Packet{}, ErrMalformed
			}
			next, rest = rest[0], rest[n:]
		case 44: // fragment
			if len(rest) < 8 {
				return Packet{}, ErrMalformed
			}
			if binary.BigEndian.Uint16(rest[2:4])&0xfff8 != 0 {
				p.Proto = rest[0]
				return fragmentOf(p), ErrFragment
			}
			next, rest = rest[0], rest[8:]
		default:
			p.Proto = next
			return transport(p, rest, quoted)
		}
	}
	return Packet{}, ErrMalformed
}

// transport fills in ports from the transport header. Quoted packets (inside
// ICMP errors) carry at least 8 bytes of it, so only the ports are needed.
func transport(p Packet, l4 []byte, quoted bool) (Packet, error) {
	switch p.Proto {
	case protoTCP, protoUDP:
		need := 8
		if p.Proto == protoTCP && !quoted {
			need = 20
		}
		if len(l4) < need {
			return Packet{}, ErrMalformed
		}
		p.Flow.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.Flow.DstPort = binary.BigEndian.Uint16(l4[2:4])
		p.Port, p.BindProto = p.Flow.DstPort, Proto(p.Proto)
		return p, nil
	case protoICMP, protoICMPv6:
		// ICMPv4 belongs in IPv4 and ICMPv6 in IPv6; the director leaves
		// the odd mixes to the host.
		if quoted || (p.Proto == protoICMP) != p.Dst.Is4() {
			return Packet{}, ErrNotForwarded
		}
		return icmp(p, l4)
	}
	return Packet{}, ErrNotForwarded
}

func icmp(p Packet, l4 []byte) (Packet, error) {
	if len(l4) < 8 {
		return Packet{}, ErrMalformed
	}
	typ, code := l4[0], l4[1]
	v6 := p.Proto == protoICMPv6
	switch {
	case !v6 && typ == 8, v6 && typ == 128: // echo request
		return p, nil
	case !v6 && typ == 3 && code == 4, v6 && typ == 2: // frag needed, packet too big
	default:
		return Packet{}, ErrNotForwarded
	}
	var q Packet
	var err error
	if v6 {
		q, err = flowOf6(l4[8:], true)
	} else {
		q, err = flowOf4(l4[8:], true)
	}
	if err != nil {
		if errors.Is(err, ErrFragment) {
			err = ErrNotForwarded
		}
		return Packet{}, err
	}
	// The quoted packet went from the VIP to the client: reverse it.
	p.Flow = Flow{Src: q.Flow.Dst, Dst: q.Flow.Src, SrcPort: q.Flow.DstPort, DstPort: q.Flow.SrcPort}
	p.Port, p.BindProto = q.Flow.SrcPort, Proto(q.Proto)
	return p, nil
}
