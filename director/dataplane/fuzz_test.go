package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/glb-project/glb/director/table"
)

// checker holds what the invariants of a director run are checked
// against: the config and, per table, every hop list its rows hold.
type checker struct {
	b    built
	rows map[string]map[hopKey]bool // table -> set of hop lists
}

// hopKey is a hop list as a map key: IPv4 addresses, zero-filled.
type hopKey [table.MaxHops][4]byte

func keyOf(h []netip.Addr) hopKey {
	var k hopKey
	if len(h) > len(k) {
		k[0] = [4]byte{255, 255, 255, 255} // in no table
		return k
	}
	for i, a := range h {
		k[i] = a.As4()
	}
	return k
}

func newChecker(b built) *checker {
	c := &checker{b: b, rows: map[string]map[hopKey]bool{}}
	for _, t := range b.tables {
		idx := map[[table.MaxHops]uint16]bool{}
		if t.Built.Width > 0 {
			for r := range table.NumRows {
				var k [table.MaxHops]uint16
				copy(k[:], t.Built.Row(uint16(r)))
				idx[k] = true
			}
		}
		set := map[hopKey]bool{}
		for k := range idx {
			var hops []netip.Addr
			for _, i := range k[:t.Built.Width] {
				hops = append(hops, t.Built.Backends[i].IP)
			}
			set[keyOf(hops)] = true
		}
		c.rows[t.Spec.Name] = set
	}
	return c
}

func joinHops(h []netip.Addr) string {
	s := make([]string, len(h))
	for i, a := range h {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// tableFor returns the table a packet's bind belongs to, as the director
// chooses it: the binds covering the destination, longest prefix first,
// then config order; the first for echo requests, else the first whose
// protocol and port match.
//
// With frag (a non-first fragment, no ports) a TCP/UDP packet matches by
// prefix and protocol alone, and only if those binds name one table.
func (c *checker) tableFor(pkt table.Packet, frag bool) (Table, bool) {
	type cand struct {
		t     Table
		b     table.Bind
		order int
	}
	var cs []cand
	for _, t := range c.b.tables {
		for _, b := range t.Spec.Binds {
			if b.Prefix.Contains(pkt.Dst) {
				cs = append(cs, cand{t, b, len(cs)})
			}
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].b.Prefix.Bits() > cs[j].b.Prefix.Bits() })
	if frag && pkt.BindProto != 0 {
		// A TCP/UDP fragment after the first has no port: the binds of
		// its protocol must all name one table.
		var found *cand
		for i, x := range cs {
			if x.b.Proto != pkt.BindProto {
				continue
			}
			if found != nil && found.t.Spec.Name != x.t.Spec.Name {
				return Table{}, false
			}
			if found == nil {
				found = &cs[i]
			}
		}
		if found == nil {
			return Table{}, false
		}
		return found.t, true
	}
	for _, x := range cs {
		if pkt.BindProto == 0 || (x.b.Proto == pkt.BindProto && pkt.Port >= x.b.PortStart && pkt.Port <= x.b.PortEnd) {
			return x.t, true
		}
	}
	return Table{}, false
}

// check verifies one run: the action is PASS, DROP or TX; PASS and DROP
// leave the packet alone (bar Ethernet padding after an IP packet); TX
// sends a valid GUE packet from the director to the gateway, carrying the
// input's IP packet, whose hop list is a row of a table, and exactly the
// row table.FlowOf and table.Hash give when the Go code can tell.
func (c *checker) check(in []byte, action uint32, out []byte) error {
	switch action {
	case xdpPass, xdpDrop:
		if !bytes.HasPrefix(in, out) || len(out) < 14 {
			return fmt.Errorf("%s changed the packet", actionNames[action])
		}
		return nil
	case xdpTX:
	default:
		return fmt.Errorf("action %d", action)
	}
	g, err := DecodeGUE(out)
	if err != nil {
		return fmt.Errorf("XDP_TX output is not valid GUE: %w", err)
	}
	if g.Src != testSrcIP || g.OuterTTL != 64 || !bytes.Equal(g.DstMAC[:], macGateway) || !bytes.Equal(g.SrcMAC[:], in[0:6]) || g.NextHop != 0 {
		return fmt.Errorf("outer header: src %v ttl %d macs %x %x next_hop %d", g.Src, g.OuterTTL, g.DstMAC, g.SrcMAC, g.NextHop)
	}
	l2 := 14
	if et := binary.BigEndian.Uint16(in[12:]); et == 0x8100 || et == 0x88a8 {
		l2 = 18
		if g.VLAN != binary.BigEndian.Uint16(in[14:]) {
			return errors.New("802.1Q tag not kept")
		}
	}
	if !bytes.HasPrefix(in[l2:], g.Inner) {
		return errors.New("inner packet is not the input's IP packet")
	}
	hops := joinHops(g.Hops)
	found := false
	for _, set := range c.rows {
		found = found || set[keyOf(g.Hops)]
	}
	if !found {
		return fmt.Errorf("hop list %s is no row of any table", hops)
	}
	pkt, err := table.FlowOf(g.Inner)
	if err != nil && !errors.Is(err, table.ErrFragment) {
		return fmt.Errorf("sent a packet table.FlowOf rejects: %v", err)
	}
	frag := errors.Is(err, table.ErrFragment)
	t, ok := c.tableFor(pkt, frag)
	if !ok {
		return fmt.Errorf("sent a packet no bind matches (%+v, fragment %v)", pkt, frag)
	}
	if frag && pkt.BindProto != 0 && t.Spec.Fields()&(table.SrcPort|table.DstPort) != 0 {
		return fmt.Errorf("sent a non-first fragment of table %s, which hashes ports", t.Spec.Name)
	}
	// A fragment's flow has ports 0: hashed on its addresses alone, it
	// must land on exactly its flow's row.
	h := table.Hash(t.Spec.HashKey, t.Spec.Fields(), pkt.Flow)
	if want := joinHops(t.Built.Hops(table.RowOf(h))); hops != want {
		return fmt.Errorf("hops %s, table %s row for %+v (fragment %v) is %s", hops, t.Spec.Name, pkt.Flow, frag, want)
	}
	if g.SrcPort != table.EncapSourcePort(h, pkt.Flow.SrcPort) {
		return fmt.Errorf("outer source port %d, want %d", g.SrcPort, table.EncapSourcePort(h, pkt.Flow.SrcPort))
	}
	return nil
}

// mutator makes random and mutated packets from seeds.
type mutator struct {
	r     *rand.Rand
	seeds [][]byte
	vips  [][]byte // VIP addresses, 4 or 16 bytes
}

func newMutator(seed uint64, seeds [][]byte) *mutator {
	m := &mutator{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seeds: seeds}
	for _, s := range []string{"10.100.0.3", "10.100.1.1", "10.100.2.1", "10.100.3.1", "10.100.4.1", "10.100.5.1", "10.100.5.9", "fd00:100::1", "fd00:200::1", "fd00:400::1"} {
		a := netip.MustParseAddr(s)
		m.vips = append(m.vips, a.AsSlice())
	}
	return m
}

func (m *mutator) packet() []byte {
	r := m.r
	switch r.IntN(10) {
	case 0: // random bytes behind a plausible Ethernet header
		n := 14 + r.IntN(200)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		et := []uint16{etherIPv4, etherIPv6, ether8021Q, 0x88a8, etherARP}[r.IntN(5)]
		binary.BigEndian.PutUint16(b[12:], et)
		if n > 14 {
			b[14] = b[14]&0x0f | []byte{0x40, 0x60}[r.IntN(2)]
		}
		return b
	case 1: // a structured packet with random fields
		return m.structured()
	}
	// A seed, mutated.
	b := append([]byte{}, m.seeds[r.IntN(len(m.seeds))]...)
	for range 1 + r.IntN(4) {
		switch r.IntN(6) {
		case 0: // flip bits in a header byte
			i := r.IntN(min(len(b), 100))
			b[i] ^= byte(1 << r.IntN(8))
		case 1: // random byte anywhere
			b[r.IntN(len(b))] = byte(r.Uint32())
		case 2: // truncate
			b = b[:14+r.IntN(len(b)-13)]
		case 3: // extend
			for range r.IntN(40) {
				b = append(b, byte(r.Uint32()))
			}
		case 4: // random 16-bit value at a header offset (lengths, ports, offsets)
			if len(b) > 16 {
				i := r.IntN(min(len(b)-1, 90))
				binary.BigEndian.PutUint16(b[i:], uint16(r.Uint32()))
			}
		case 5: // point the destination at a random VIP
			m.setVIP(b)
		}
	}
	return b
}

func (m *mutator) setVIP(b []byte) {
	off := 14
	if len(b) > 14 && binary.BigEndian.Uint16(b[12:]) == ether8021Q {
		off = 18
	}
	if len(b) < off+1 {
		return
	}
	vip := m.vips[m.r.IntN(len(m.vips))]
	switch {
	case b[off]>>4 == 4 && len(vip) == 4 && len(b) >= off+20:
		copy(b[off+16:], vip)
	case b[off]>>4 == 6 && len(vip) == 16 && len(b) >= off+40:
		copy(b[off+24:], vip)
	}
}

func (m *mutator) structured() []byte {
	r := m.r
	proto := []uint8{protoTCP, protoUDP, protoICMP, protoICMPv6, 47}[r.IntN(5)]
	var l4 []byte
	switch proto {
	case protoTCP:
		l4 = tcp(uint16(r.Uint32()), []uint16{443, 80, 22, 8443, uint16(r.Uint32())}[r.IntN(5)], byte(r.Uint32()), make([]byte, r.IntN(64))...)
	case protoUDP:
		l4 = udp(uint16(r.Uint32()), []uint16{53, 54, 443, uint16(r.Uint32())}[r.IntN(4)], make([]byte, r.IntN(64))...)
	default:
		l4 = icmp(uint8(r.IntN(4)*r.IntN(64)), uint8(r.IntN(6)), r.Uint32(), make([]byte, r.IntN(80)))
	}
	src4 := netip.AddrFrom4([4]byte{198, 51, byte(r.Uint32()), byte(r.Uint32())}).String()
	if r.IntN(2) == 0 {
		h := ip4{src: src4, dst: "10.100.0.1", proto: proto}
		if r.IntN(4) == 0 {
			h.flags = uint16(r.IntN(3))<<13&0x2000 | uint16(r.IntN(400))*uint16(r.IntN(2))
		}
		if r.IntN(4) == 0 {
			h.options = make([]byte, 4*r.IntN(11))
		}
		p := h.packet(l4)
		b := ether(p)
		m.setVIP(b)
		return b
	}
	h := ip6{src: "2001:db8::" + fmt.Sprint(r.IntN(9999)), dst: "fd00:100::1", proto: proto}
	for range r.IntN(4) {
		switch r.IntN(3) {
		case 0:
			h.ext = append(h.ext, optsHeader([]uint8{0, 60, 43}[r.IntN(3)], 1+r.IntN(3)))
		default:
			h.ext = append(h.ext, fragHeader(uint16(r.IntN(3))*uint16(r.IntN(2000)), r.IntN(2) == 0, r.Uint32()))
		}
	}
	b := ether(h.packet(l4))
	m.setVIP(b)
	return b
}

func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, tc := range goldenCases() {
		seeds = append(seeds, tc.in)
	}
	return seeds
}

// TestFuzzPackets runs a million random and mutated packets through the
// program and checks every result (see checker.check).
func TestFuzzPackets(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	b := buildConfig(t, testConfig, nil)
	apply(t, d, b)
	c := newChecker(b)

	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	const seed = 20261123
	m := newMutator(seed, fuzzSeeds())
	counts := map[uint32]int{}
	failures := 0
	prog := d.Program()
	out := make([]byte, 4096)
	for i := range n {
		in := m.packet()
		if len(in) < 14 {
			continue
		}
		opts := runOpts(in, out)
		action, err := prog.Run(opts)
		if err != nil {
			t.Fatalf("packet %d: run: %v", i, err)
		}
		counts[action]++
		if err := c.check(in, action, opts.DataOut); err != nil {
			failures++
			if failures <= 10 {
				t.Errorf("packet %d (seed %d): %v\n in %x\nout %x", i, seed, err, in, opts.DataOut)
			}
		}
	}
	if failures > 10 {
		t.Errorf("%d failures in all", failures)
	}
	t.Logf("%d packets: %d XDP_TX, %d XDP_PASS, %d XDP_DROP", n, counts[xdpTX], counts[xdpPass], counts[xdpDrop])
	if counts[xdpTX] < n/20 || counts[xdpDrop] < n/50 || counts[xdpPass] < n/20 {
		t.Errorf("the mix does not exercise every outcome: %v", counts)
	}
}

// FuzzDirector is the coverage-guided variant: go test -fuzz FuzzDirector.
func FuzzDirector(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	d := openTest(f, Config{GatewayMAC: macGateway})
	b := buildConfig(f, testConfig, nil)
	apply(f, d, b)
	c := newChecker(b)
	prog := d.Program()
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 3000 {
			return
		}
		out := make([]byte, len(in)+256)
		opts := runOpts(in, out)
		action, err := prog.Run(opts)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if err := c.check(in, action, opts.DataOut); err != nil {
			t.Fatalf("%v\n in %x\nout %x", err, in, opts.DataOut)
		}
	})
}

// TestCheckerCatchesBadOutput makes sure the fuzz invariants can fail.
func TestCheckerCatchesBadOutput(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	b := buildConfig(t, testConfig, nil)
	apply(t, d, b)
	c := newChecker(b)
	in := v4(client4, "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN))
	action, out := runPacket(t, d.Program(), in, nil)
	if err := c.check(in, action, out); err != nil {
		t.Fatalf("good output rejected: %v", err)
	}
	tamper := func(name string, action uint32, f func(b []byte) []byte) {
		bad := f(append([]byte{}, out...))
		if err := c.check(in, action, bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	tamper("other outer destination", xdpTX, func(b []byte) []byte {
		b[14+19]++
		b[14+11]-- // keep the checksum valid
		return b
	})
	tamper("hop list no table has", xdpTX, func(b []byte) []byte { b[14+20+8+8+3] = 99; return b })
	tamper("wrong source port", xdpTX, func(b []byte) []byte { b[14+20+1] ^= 1; return b })
	tamper("changed inner packet", xdpTX, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
	tamper("checksum", xdpTX, func(b []byte) []byte { b[14+10] ^= 1; return b })
	tamper("passed packet changed", xdpPass, func(b []byte) []byte { return b })
	tamper("aborted", 0, func(b []byte) []byte { return in })
	// A row that exists, but not the flow's: swap to another flow's output.
	_, other := runPacket(t, d.Program(), v4("198.51.100.99", "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN)), nil)
	if !bytes.Equal(other[14+16:14+20], out[14+16:14+20]) {
		spliced := append(append([]byte{}, other[:len(other)-len(innerIP(in))]...), innerIP(in)...)
		if err := c.check(in, xdpTX, spliced); err == nil {
			t.Error("another flow's row accepted")
		}
	}
	// A non-first fragment is checked on its flow's row too (addresses
	// only), not on any row of a table: give it another client's GUE
	// header, of the same length.
	frag := func(src string) []byte {
		return ether(ip4{src: src, dst: "10.100.0.3", proto: protoTCP, id: 9, flags: 100}.packet(make([]byte, 32)))
	}
	fin := frag(client4)
	fa, fout := runPacket(t, d.Program(), fin, nil)
	if fa != xdpTX {
		t.Fatalf("fragment: %s", actionNames[fa])
	}
	if err := c.check(fin, fa, fout); err != nil {
		t.Fatalf("good fragment output rejected: %v", err)
	}
	for i := range 50 {
		_, o := runPacket(t, d.Program(), frag(fmt.Sprintf("198.51.100.%d", 100+i)), nil)
		if bytes.Equal(o[14+16:14+20], fout[14+16:14+20]) {
			continue
		}
		spliced := append(append([]byte{}, o[:len(o)-len(innerIP(fin))]...), innerIP(fin)...)
		if err := c.check(fin, xdpTX, spliced); err == nil {
			t.Error("a fragment on another flow's row accepted")
		}
		break
	}
}
