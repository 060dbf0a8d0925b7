package dataplane

// A small packet builder for the director's tests, and an independent
// builder of the GUE packets the director should send (DESIGN.md §3).

import (
	"encoding/binary"
	"net"
	"net/netip"
)

var (
	macClient  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01} // the router that sent the frame
	macSelf    = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02} // the director's NIC
	macGateway = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x03} // --gateway-mac
)

const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherARP   = 0x0806
	ether8021Q = 0x8100

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

func csum(b []byte, initial uint32) uint16 {
	sum := initial
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// frame is an Ethernet frame: dst, src, optional 802.1Q tag, type, payload.
type frame struct {
	dst, src net.HardwareAddr
	vlan     uint16 // TCI; 0 = untagged
	etype    uint16
	payload  []byte
}

func (f frame) bytes() []byte {
	b := append([]byte{}, f.dst...)
	b = append(b, f.src...)
	if f.vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, ether8021Q)
		b = binary.BigEndian.AppendUint16(b, f.vlan)
	}
	b = binary.BigEndian.AppendUint16(b, f.etype)
	return append(b, f.payload...)
}

// ether wraps an IP packet in an Ethernet frame from the client's router
// to the director.
func ether(ip []byte) []byte {
	et := uint16(etherIPv4)
	if ip[0]>>4 == 6 {
		et = etherIPv6
	}
	return frame{dst: macSelf, src: macClient, etype: et, payload: ip}.bytes()
}

// ip4 describes an IPv4 header.
type ip4 struct {
	src, dst string
	proto    uint8
	ttl      uint8
	id       uint16
	flags    uint16 // frag_off field: flags<<13 | offset/8
	options  []byte // a multiple of 4 bytes
}

func (h ip4) packet(payload []byte) []byte {
	hl := 20 + len(h.options)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], h.id)
	binary.BigEndian.PutUint16(b[6:], h.flags)
	b[8] = h.ttl
	if b[8] == 0 {
		b[8] = 64
	}
	b[9] = h.proto
	s, d := netip.MustParseAddr(h.src).As4(), netip.MustParseAddr(h.dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], h.options)
	binary.BigEndian.PutUint16(b[10:], csum(b[:hl], 0))
	return append(b, payload...)
}

// ip6 describes an IPv6 header; ext are extension headers, each given as
// (type, body) where body fills the header after its next-header byte.
type ip6 struct {
	src, dst string
	proto    uint8 // upper-layer protocol
	ext      []ext6
}

type ext6 struct {
	typ  uint8
	body []byte // everything after the next-header byte; len+1 is a multiple of 8
}

// hopByHop returns a hop-by-hop (or destination options, typ 60) header
// of n*8 bytes, padded with PadN.
func optsHeader(typ uint8, n int) ext6 {
	body := make([]byte, n*8-1)
	body[0] = byte(n - 1)
	body[1] = 1 // PadN
	body[2] = byte(len(body) - 3)
	return ext6{typ: typ, body: body}
}

// fragHeader returns an IPv6 fragment header.
func fragHeader(offset uint16, more bool, id uint32) ext6 {
	body := make([]byte, 7)
	v := offset &^ 7
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(body[1:], v)
	binary.BigEndian.PutUint32(body[3:], id)
	return ext6{typ: 44, body: body}
}

func (h ip6) packet(payload []byte) []byte {
	var exts []byte
	for i, e := range h.ext {
		next := h.proto
		if i+1 < len(h.ext) {
			next = h.ext[i+1].typ
		}
		exts = append(exts, next)
		exts = append(exts, e.body...)
	}
	b := make([]byte, 40, 40+len(exts)+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(exts)+len(payload)))
	b[6] = h.proto
	if len(h.ext) > 0 {
		b[6] = h.ext[0].typ
	}
	b[7] = 64
	s, d := netip.MustParseAddr(h.src).As16(), netip.MustParseAddr(h.dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	b = append(b, exts...)
	return append(b, payload...)
}

// tcp returns a 20-byte TCP header (checksum left 0: the director does
// not look at it) followed by data.
func tcp(sport, dport uint16, flags uint8, data ...byte) []byte {
	b := make([]byte, 20, 20+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	return append(b, data...)
}

const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

func udp(sport, dport uint16, data ...byte) []byte {
	b := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(data)))
	return append(b, data...)
}

// icmp returns an ICMP (or ICMPv6) message: type, code, checksum, a
// 4-byte rest-of-header, and body.
func icmp(typ, code uint8, rest uint32, body []byte) []byte {
	b := []byte{typ, code, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], rest)
	b = append(b, body...)
	binary.BigEndian.PutUint16(b[2:], csum(b, 0))
	return b
}

// gue builds, independently of the program, the frame the director must
// send for an inner IP packet: outer Ethernet (with the same 802.1Q tag),
// IPv4 from src to hops[0], UDP to 19523, the GUE header with hops[1:].
func gue(inner []byte, vlan uint16, dmac, smac net.HardwareAddr, src netip.Addr, hops []netip.Addr, sport uint16) []byte {
	n := len(hops)
	var g []byte
	g = append(g, byte(n)) // hlen: 1 word of GLB data + n-1 hops
	if inner[0]>>4 == 4 {  // proto of the payload
		g = append(g, 4)
	} else {
		g = append(g, 41)
	}
	g = append(g, 0, 0)               // flags
	g = append(g, 0, 0, 0, byte(n-1)) // GLB private: type 0, next_hop 0, hop_count
	for _, h := range hops[1:] {
		a := h.As4()
		g = append(g, a[:]...)
	}
	payload := append(g, inner...)

	u := make([]byte, 8)
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], 19523)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))

	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = protoUDP
	s, d := src.As4(), hops[0].As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], csum(ip, 0))

	out := append(ip, u...)
	out = append(out, payload...)
	return frame{dst: dmac, src: smac, vlan: vlan, etype: etherIPv4, payload: out}.bytes()
}
