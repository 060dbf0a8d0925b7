package healthcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// The GUE probe (DESIGN.md §3, and what GLB's glb-healthcheck sends):
//
//	UDP payload to the backend's GUE port, from a normal UDP socket:
//	  GUE base    hlen 1, proto 4 (IPv4), flags 0
//	  GLB private type 0, next_hop 0, hop_count 0   (no further hops)
//	  IPv4        src = the checker's source, dst = the backend,
//	              DF, TTL 64, id 0, proto ICMP
//	  ICMP echo   type 8, id = the Checker's, seq = the probe's,
//	              payload "GLBH" + a 12-byte random nonce
//
// With hop_count 0 glb-redirect takes the packet on the first host; the
// inner echo goes up that host's stack, which answers the checker
// directly, unwrapped.
const (
	gueHeaderLen  = 8
	ipv4HeaderLen = 20
	icmpHeaderLen = 8
	nonceLen      = 12
	probeMagic    = "GLBH"
	probeDataLen  = len(probeMagic) + nonceLen
	probeLen      = gueHeaderLen + ipv4HeaderLen + icmpHeaderLen + probeDataLen

	protoICMP = 1
	protoUDP  = 17

	icmpEchoReply   = 0
	icmpUnreachable = 3
	icmpEchoRequest = 8
)

// probeID identifies one probe among those in flight.
type probeID struct {
	id, seq uint16
	nonce   [nonceLen]byte
}

// appendProbe appends the UDP payload of a GUE probe from src to dst.
func appendProbe(b []byte, src, dst netip.Addr, p probeID) []byte {
	b = append(b, 1, 4, 0, 0, 0, 0, 0, 0) // GUE base + GLB private data
	b = appendIPv4(b, src, dst, protoICMP, icmpHeaderLen+probeDataLen)
	icmp := len(b)
	b = append(b, icmpEchoRequest, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, p.id)
	b = binary.BigEndian.AppendUint16(b, p.seq)
	b = append(b, probeMagic...)
	b = append(b, p.nonce[:]...)
	binary.BigEndian.PutUint16(b[icmp+2:], checksum(b[icmp:]))
	return b
}

// appendIPv4 appends a 20-byte IPv4 header (DF, TTL 64, id 0) for a
// payload of n bytes.
func appendIPv4(b []byte, src, dst netip.Addr, proto uint8, n int) []byte {
	h := len(b)
	b = append(b, 0x45, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(ipv4HeaderLen+n))
	b = append(b, 0, 0, 0x40, 0, 64, proto, 0, 0)
	s, d := src.As4(), dst.As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	binary.BigEndian.PutUint16(b[h+10:], checksum(b[h:]))
	return b
}

// checksum is the Internet checksum (RFC 1071) of b. Over data that
// carries its own correct checksum it returns 0.
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// icmpMsg is what the demultiplexer needs from an ICMP message: an echo
// reply, or a destination-unreachable error that quotes a GUE probe.
type icmpMsg struct {
	typ, code uint8
	id, seq   uint16
	nonce     [nonceLen]byte
	hasNonce  bool       // an unreachable's quote may stop before the nonce
	probeDst  netip.Addr // unreachable only: the quoted probe's outer destination
}

// Reasons an ICMP message is not one of ours, for the counters.
var (
	errShort     = errors.New("truncated")
	errChecksum  = errors.New("bad checksum")
	errForeign   = errors.New("not a GUE probe's")
	errMalformed = errors.New("malformed header")
)

// parseICMP parses an ICMP message as the raw socket returns it (the IPv4
// header stripped). It accepts an echo reply carrying a probe payload, and
// a destination unreachable that quotes a GUE probe down to the inner
// echo's id and sequence number; everything else is an error.
func parseICMP(b []byte) (icmpMsg, error) {
	var m icmpMsg
	if len(b) < icmpHeaderLen {
		return m, errShort
	}
	if checksum(b) != 0 {
		return m, errChecksum
	}
	m.typ, m.code = b[0], b[1]
	switch m.typ {
	case icmpEchoReply:
		if m.code != 0 {
			return m, errForeign
		}
		m.id = binary.BigEndian.Uint16(b[4:])
		m.seq = binary.BigEndian.Uint16(b[6:])
		data := b[icmpHeaderLen:]
		if len(data) != probeDataLen || string(data[:len(probeMagic)]) != probeMagic {
			return m, errForeign
		}
		copy(m.nonce[:], data[len(probeMagic):])
		m.hasNonce = true
		return m, nil
	case icmpUnreachable:
		return m, parseQuote(&m, b[icmpHeaderLen:])
	}
	return m, errForeign
}

// parseQuote reads the packet an unreachable quotes: outer IPv4, UDP,
// GUE, inner IPv4, ICMP echo request.
func parseQuote(m *icmpMsg, q []byte) error {
	ip, rest, err := ipv4Header(q)
	if err != nil {
		return err
	}
	if ip[9] != protoUDP {
		return errForeign
	}
	m.probeDst = netip.AddrFrom4([4]byte(ip[16:20]))
	if len(rest) < 8+4 {
		return errShort
	}
	gue := rest[8:]
	hlen := int(gue[0] & 0x1f)
	if gue[0]&0xe0 != 0 || gue[1] != 4 || len(gue) < 4+4*hlen {
		return errForeign
	}
	if hlen < 1 || binary.BigEndian.Uint16(gue[4:]) != 0 || int(gue[7])+1 != hlen {
		return errMalformed
	}
	ip, rest, err = ipv4Header(gue[4+4*hlen:])
	if err != nil {
		return err
	}
	if ip[9] != protoICMP {
		return errForeign
	}
	if len(rest) < icmpHeaderLen {
		return errShort
	}
	if rest[0] != icmpEchoRequest || rest[1] != 0 {
		return errForeign
	}
	m.id = binary.BigEndian.Uint16(rest[4:])
	m.seq = binary.BigEndian.Uint16(rest[6:])
	if data := rest[icmpHeaderLen:]; len(data) >= probeDataLen {
		if string(data[:len(probeMagic)]) != probeMagic {
			return errForeign
		}
		copy(m.nonce[:], data[len(probeMagic):probeDataLen])
		m.hasNonce = true
	}
	return nil
}

// ipv4Header splits an IPv4 header (with options) from what follows.
func ipv4Header(b []byte) (hdr, rest []byte, err error) {
	if len(b) < ipv4HeaderLen {
		return nil, nil, errShort
	}
	if b[0]>>4 != 4 || b[0]&0xf < 5 {
		return nil, nil, errMalformed
	}
	n := int(b[0]&0xf) * 4
	if len(b) < n {
		return nil, nil, errShort
	}
	return b[:n], b[n:], nil
}

// The outcomes of an ICMP message read from the raw socket, a label of
// glb_healthcheck_gue_icmp_total.
const (
	icmpMatchedReply       = "matched_reply"
	icmpMatchedUnreachable = "matched_unreachable"
	icmpLate               = "late"      // one of ours, but its probe is over
	icmpMismatch           = "mismatch"  // our id and seq, wrong nonce or source
	icmpForeign            = "foreign"   // someone else's (ping, traceroute…)
	icmpMalformed          = "malformed" // truncated or inconsistent
	icmpBadChecksum        = "bad_checksum"
)

var icmpOutcomes = []string{icmpMatchedReply, icmpMatchedUnreachable, icmpLate, icmpMismatch,
	icmpForeign, icmpMalformed, icmpBadChecksum}

// demux matches the ICMP messages of the shared raw socket to the GUE
// probes in flight. Every probe of a Checker carries the same echo id and
// its own sequence number and nonce.
type demux struct {
	id uint16

	mu      sync.Mutex
	next    uint16
	waiting map[uint16]*waiter
}

// waiter is one probe in flight. done receives its result once.
type waiter struct {
	backend netip.Addr
	port    uint16
	nonce   [nonceLen]byte
	done    chan result
}

func newDemux(id uint16) *demux {
	return &demux{id: id, waiting: map[uint16]*waiter{}}
}

// add registers a probe and returns its sequence number. It fails only
// when 65,536 probes are in flight.
func (d *demux) add(w *waiter) (uint16, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.waiting) > 0xffff {
		return 0, errors.New("65536 GUE probes in flight")
	}
	for {
		seq := d.next
		d.next++
		if _, busy := d.waiting[seq]; !busy {
			w.done = make(chan result, 1)
			d.waiting[seq] = w
			return seq, nil
		}
	}
}

// remove forgets a probe: replies that come later count as late.
func (d *demux) remove(seq uint16) {
	d.mu.Lock()
	delete(d.waiting, seq)
	d.mu.Unlock()
}

// deliver handles one message from src and returns its outcome.
func (d *demux) deliver(src netip.Addr, b []byte) string {
	m, err := parseICMP(b)
	switch {
	case errors.Is(err, errChecksum):
		return icmpBadChecksum
	case errors.Is(err, errForeign):
		return icmpForeign
	case err != nil:
		return icmpMalformed
	case m.id != d.id:
		return icmpForeign
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.waiting[m.seq]
	if w == nil {
		return icmpLate
	}
	if m.typ == icmpEchoReply {
		if src != w.backend || m.nonce != w.nonce {
			return icmpMismatch
		}
		d.finish(m.seq, w, pass())
		return icmpMatchedReply
	}
	if m.probeDst != w.backend || m.hasNonce && m.nonce != w.nonce {
		return icmpMismatch
	}
	d.finish(m.seq, w, fail("%s", unreachableReason(m.code, src, w)))
	return icmpMatchedUnreachable
}

func (d *demux) finish(seq uint16, w *waiter, r result) {
	delete(d.waiting, seq)
	w.done <- r // buffered, and finish runs once per waiter
}

// unreachableReason explains an ICMP destination unreachable about a
// probe.
func unreachableReason(code uint8, from netip.Addr, w *waiter) string {
	if code == 3 && from == w.backend {
		return fmt.Sprintf("udp port %d unreachable: nothing on the backend takes GUE (is glb-redirect attached?)", w.port)
	}
	names := map[uint8]string{0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
		3: "port unreachable", 4: "fragmentation needed", 9: "network prohibited", 10: "host prohibited",
		13: "administratively prohibited"}
	name, ok := names[code]
	if !ok {
		name = fmt.Sprintf("destination unreachable (code %d)", code)
	}
	return fmt.Sprintf("%s (ICMP from %s)", name, from)
}
