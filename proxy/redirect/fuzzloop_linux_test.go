package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/glb-project/glb/bpf"
)

// TestFuzzPackets is FuzzProgram's random half, run by every `make test`:
// a fixed-seed stream of random and mutated GUE frames goes through the
// program, and each run is held to checkInvariants' rules (exactly one
// outcome; forwards only to hops[next_hop] of the frame's own list, never
// to an address no director lists; decapsulates to exactly the inner
// packet; passes untouched; nothing from an untrusted source is taken or
// forwarded). `go test -fuzz FuzzProgram` is the coverage-guided variant.
func TestFuzzPackets(t *testing.T) {
	e := newProgEnv(t)
	n := 300_000
	if testing.Short() {
		n = 30_000
	}
	const seed = 20261123
	m := newGUEMutator(seed)
	cr, err := newCounterReader(e.objs.RedirectStats)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	failures := 0
	if err := e.ns.Do(t, func() error {
		before, err := cr.read()
		if err != nil {
			return err
		}
		out := make([]byte, 1514+512)
		for i := range n {
			in := m.frame()
			opts := &ebpf.RunOptions{
				Data:    in,
				DataOut: out,
				Context: skbContext{IngressIfindex: uint32(e.ifindex), Ifindex: uint32(e.ifindex)},
			}
			verdict, err := e.objs.GlbRedirect.Run(opts)
			if err != nil {
				return fmt.Errorf("frame %d: %w\n%x", i, err, in)
			}
			after, err := cr.read()
			if err != nil {
				return err
			}
			outcome := ""
			moved := 0
			for k := range after {
				if after[k] != before[k] {
					moved += int(after[k] - before[k])
					outcome = outcomeLabels[k]
				}
			}
			before = after
			seen[outcome]++
			err = nil
			if moved != 1 {
				err = errors.New("want exactly one outcome counted")
			} else {
				err = invariantErr(in, verdict, opts.DataOut, outcome)
			}
			if err != nil {
				failures++
				if failures <= 10 {
					t.Errorf("frame %d (seed %d): %s: %v\n in %x\nout %x", i, seed, outcome, err, in, opts.DataOut)
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if failures > 10 {
		t.Errorf("%d failures in all", failures)
	}
	t.Logf("%d frames: %v", n, seen)
	// The stream must reach every kind of outcome, or the invariants
	// prove little.
	for _, want := range []string{"passed_not_gue", "passed_other_host", "accepted_syn", "accepted_last_resort",
		"forwarded_to_alternate", "forwarded_to_self", "malformed_short", "malformed_outer", "malformed_gue_hlen",
		"malformed_hop_address", "dropped_untrusted_source", "accepted_icmp", "accepted_udp"} {
		if seen[want] < n/2000 {
			t.Errorf("outcome %s reached %d times in %d frames: the stream does not exercise it", want, seen[want], n)
		}
	}
}

// counterReader reads the packet counters of every outcome, summed over
// CPUs, with one batch lookup.
type counterReader struct {
	m    *ebpf.Map
	keys []uint32
	vals []bpf.RedirectOutcomeStat
	ncpu int
}

func newCounterReader(m *ebpf.Map) (*counterReader, error) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	return &counterReader{m: m, keys: make([]uint32, len(outcomeLabels)), vals: make([]bpf.RedirectOutcomeStat, len(outcomeLabels)*ncpu), ncpu: ncpu}, nil
}

func (c *counterReader) read() ([]uint64, error) {
	var cursor ebpf.MapBatchCursor
	n, err := c.m.BatchLookup(&cursor, c.keys, c.vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, err
	}
	if n != len(outcomeLabels) {
		return nil, errors.New("batch lookup returned a partial table")
	}
	out := make([]uint64, len(outcomeLabels))
	for i, k := range c.keys {
		for cpu := range c.ncpu {
			out[k] += c.vals[i*c.ncpu+cpu].Packets
		}
	}
	return out, nil
}

// gueMutator makes the frames of TestFuzzPackets: FuzzProgram's seeds
// from the director, from a trusted proxy host and from an untrusted
// source, mutated; GUE payloads of random bytes with honest lengths; and
// whole random frames.
type gueMutator struct {
	r     *rand.Rand
	seeds [][]byte
	addrs []netip.Addr // sources, destinations and hops worth trying
}

func newGUEMutator(seed uint64) *gueMutator {
	m := &gueMutator{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	payloads, frames := fuzzProgramSeeds()
	for _, p := range payloads {
		m.seeds = append(m.seeds, fromDirectorPayload(p))
		m.seeds = append(m.seeds, ether(selfMAC, dirMAC, ethIPv4, ipv4(peerIP, selfIP, protoUDP, udp(peerIP, selfIP, 0x9234, guePort, p, false), ipv4Opts{})))
		m.seeds = append(m.seeds, ether(selfMAC, dirMAC, ethIPv4, ipv4(untrustedIP, selfIP, protoUDP, udp(untrustedIP, selfIP, 0x9234, guePort, p, true), ipv4Opts{})))
	}
	for _, f := range frames {
		m.seeds = append(m.seeds, ether(selfMAC, dirMAC, ethIPv4, f))
	}
	for _, s := range []string{"10.1.0.2", "10.1.0.11", "10.1.0.12", "10.1.0.13", "10.1.0.66", "10.1.0.7", "203.0.113.9",
		"0.0.0.0", "127.0.0.1", "224.0.0.5", "239.1.2.3", "255.255.255.255", "240.0.0.1", "192.0.2.1"} {
		m.addrs = append(m.addrs, netip.MustParseAddr(s))
	}
	return m
}

// frame returns a frame BPF_PROG_TEST_RUN takes and an MTU allows: 34
// to 1514 bytes, and an IPv6 one at least as long as an IPv6 header.
func (m *gueMutator) frame() []byte {
	for {
		b := m.candidate()
		if len(b) >= 14+20 && len(b) <= 1514 && (binary.BigEndian.Uint16(b[12:]) != ethIPv6 || len(b) >= 14+40) {
			return b
		}
	}
}

func (m *gueMutator) candidate() []byte {
	r := m.r
	switch r.IntN(12) {
	case 0: // random bytes behind an Ethernet header
		b := make([]byte, 34+r.IntN(200))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		binary.BigEndian.PutUint16(b[12:], []uint16{ethIPv4, ethIPv6, 0x0806}[r.IntN(3)])
		b[14] = b[14]&0x0f | 0x40
		return b
	case 1: // a random GUE payload with honest lengths
		p := make([]byte, 8+r.IntN(120))
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		p[0] &= 0x1f // version 0, not control: gets past the first checks
		p[1] = 0
		p[2], p[3] = 0, byte(r.IntN(2))*37+4
		return fromDirectorPayload(p)
	}
	b := append([]byte{}, m.seeds[r.IntN(len(m.seeds))]...)
	for range 1 + r.IntN(3) {
		switch r.IntN(8) {
		case 0: // flip a bit in the headers
			i := r.IntN(min(len(b), 120))
			b[i] ^= byte(1 << r.IntN(8))
		case 1: // a random byte anywhere
			b[r.IntN(len(b))] = byte(r.Uint32())
		case 2: // truncate
			b = b[:14+r.IntN(len(b)-13)]
		case 3: // extend
			for range r.IntN(40) {
				b = append(b, byte(r.Uint32()))
			}
		case 4: // a random 16-bit value at a header offset (lengths, ports, hops)
			if len(b) > 16 {
				i := 14 + r.IntN(min(len(b)-15, 70))
				binary.BigEndian.PutUint16(b[i:], uint16(r.Uint32()))
			}
		case 5: // a known address as the outer source or destination
			if len(b) >= 34 {
				a := m.addrs[r.IntN(len(m.addrs))].As4()
				copy(b[26+4*r.IntN(2):], a[:])
			}
		case 6: // a known address as one of the hops
			if len(b) >= 50+4 {
				a := m.addrs[r.IntN(len(m.addrs))].As4()
				copy(b[50+4*r.IntN(min(4, (len(b)-50)/4)):], a[:])
			}
		case 7: // next_hop moved
			if len(b) >= 50 {
				b[48] = byte(r.IntN(4))
			}
		}
	}
	return b
}

// TestInvariantsCatchBadRuns makes sure the fuzz rules can fail: each
// run below breaks one of them.
func TestInvariantsCatchBadRuns(t *testing.T) {
	ack := v4tcp(remote, vip4, 40001, 443, ackSeg)
	h := gueHdr{hops: hops1}
	in := fromDirector(h, ack)
	good := forwarded(h, gueOuter{src: directorIP, dst: selfIP}, ack, peerIP)
	if err := invariantErr(in, verdictRedirect, good, "forwarded_to_alternate"); err != nil {
		t.Fatalf("a good forward is rejected: %v", err)
	}
	bogus := gueHdr{hops: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	untrusted := ether(selfMAC, dirMAC, ethIPv4, gueOuter{src: untrustedIP, dst: selfIP}.wrap(h, ack))
	for _, c := range []struct {
		name    string
		in, out []byte
		verdict uint32
		outcome string
	}{
		{"forward to another hop", in, forwarded(h, gueOuter{src: directorIP, dst: selfIP}, ack, unresolvedIP), verdictRedirect, "forwarded_to_alternate"},
		{"forward to loopback", fromDirector(bogus, ack), forwarded(bogus, gueOuter{src: directorIP, dst: selfIP}, ack, netip.MustParseAddr("127.0.0.1")), verdictRedirect, "forwarded_to_alternate"},
		{"forward from an untrusted source", untrusted, forwarded(h, gueOuter{src: untrustedIP, dst: selfIP}, ack, peerIP), verdictRedirect, "forwarded_to_alternate"},
		{"take from an untrusted source", untrusted, decapsulated(ack), verdictPass, "accepted_syn"},
		{"a trusted source counted as untrusted", in, nil, verdictDrop, "dropped_untrusted_source"},
		{"decapsulate to something else", in, decapsulated(ack[:40]), verdictPass, "accepted_established"},
		{"pass a changed frame", in, good, verdictPass, "passed_not_gue"},
		{"drop with another verdict", in, nil, verdictPass, "malformed_outer"},
	} {
		if err := invariantErr(c.in, c.verdict, c.out, c.outcome); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}
