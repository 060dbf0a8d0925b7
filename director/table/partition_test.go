package table

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// goldenSpec is the table of DESIGN.md §3's vectors. Its rendezvous order
// is 1.1.1.4, 1.1.1.3, 1.1.1.2, 1.1.1.1 in row 0.
func goldenSpec(t *testing.T, hops int, mod func(ip string, b *Backend)) *Spec {
	s := &Spec{Name: "golden", Seed: mustKey(t, "49a3d861d661ae5ab06ed9326871a2f5"), Hops: hops,
		Backends: backends(Active, "1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4")}
	for i := range s.Backends {
		mod(s.Backends[i].IP.String(), &s.Backends[i])
	}
	return s
}

func set(states map[string]State, down ...string) func(string, *Backend) {
	return func(ip string, b *Backend) {
		if st, ok := states[ip]; ok {
			b.State = st
		}
		if slices.Contains(down, ip) {
			f := false
			b.Healthy = &f
		}
	}
}

// TestPartition pins row 0 of the golden table in every state mix.
func TestPartition(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hops   int
		states map[string]State
		down   []string
		health Health
		want   []string
	}{
		{name: "all active and healthy: the rendezvous order", hops: 2, want: []string{"1.1.1.4", "1.1.1.3"}},
		{name: "four hops", hops: 4, want: []string{"1.1.1.4", "1.1.1.3", "1.1.1.2", "1.1.1.1"}},
		{name: "draining primary swaps with the secondary, as in GLB", hops: 2,
			states: map[string]State{"1.1.1.4": Draining}, want: []string{"1.1.1.3", "1.1.1.4"}},
		{name: "unhealthy primary swaps with the secondary, as in GLB", hops: 2,
			down: []string{"1.1.1.4"}, want: []string{"1.1.1.3", "1.1.1.4"}},
		{name: "filling counts as active", hops: 2,
			states: map[string]State{"1.1.1.4": Filling}, want: []string{"1.1.1.4", "1.1.1.3"}},
		{name: "a filling primary keeps the next serving host (its row's primary before the fill) ahead of a dead host", hops: 2,
			states: map[string]State{"1.1.1.3": Filling}, down: []string{"1.1.1.4"}, want: []string{"1.1.1.3", "1.1.1.2"}},
		{name: "once active, the dead host ranked ahead comes second again", hops: 2,
			down: []string{"1.1.1.4"}, want: []string{"1.1.1.3", "1.1.1.4"}},
		{name: "a filling primary with three hops: next serving host, then the dead host ahead", hops: 3,
			states: map[string]State{"1.1.1.3": Filling}, down: []string{"1.1.1.4"}, want: []string{"1.1.1.3", "1.1.1.2", "1.1.1.4"}},
		{name: "two filling hosts (forced): the first active host behind the primary comes second", hops: 3,
			states: map[string]State{"1.1.1.4": Filling, "1.1.1.3": Filling}, want: []string{"1.1.1.4", "1.1.1.2", "1.1.1.3"}},
		{name: "two filling hosts, two hops: no active host within reach, the next serving one", hops: 2,
			states: map[string]State{"1.1.1.4": Filling, "1.1.1.3": Filling}, want: []string{"1.1.1.4", "1.1.1.3"}},
		{name: "draining secondary is skipped", hops: 2,
			states: map[string]State{"1.1.1.3": Draining}, want: []string{"1.1.1.4", "1.1.1.2"}},
		{name: "unhealthy secondary is skipped", hops: 2,
			down: []string{"1.1.1.3"}, want: []string{"1.1.1.4", "1.1.1.2"}},
		{name: "GLB issue 77: both GLB candidates unhealthy", hops: 2,
			down: []string{"1.1.1.4", "1.1.1.3"}, want: []string{"1.1.1.2", "1.1.1.4"}},
		{name: "GLB issue 77 with four hops keeps both failed hosts reachable", hops: 4,
			down: []string{"1.1.1.4", "1.1.1.3"}, want: []string{"1.1.1.2", "1.1.1.4", "1.1.1.3", "1.1.1.1"}},
		{name: "draining ahead of unhealthy, both ranked before the primary", hops: 4,
			states: map[string]State{"1.1.1.3": Draining}, down: []string{"1.1.1.4"},
			want: []string{"1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.1"}},
		{name: "unhealthy draining host ranks with the unhealthy", hops: 4,
			states: map[string]State{"1.1.1.4": Draining}, down: []string{"1.1.1.4", "1.1.1.3"},
			want: []string{"1.1.1.2", "1.1.1.4", "1.1.1.3", "1.1.1.1"}},
		{name: "inactive host is out of every row", hops: 4,
			states: map[string]State{"1.1.1.4": Inactive}, want: []string{"1.1.1.3", "1.1.1.2", "1.1.1.1"}},
		{name: "every host draining: rendezvous order", hops: 2,
			states: map[string]State{"1.1.1.1": Draining, "1.1.1.2": Draining, "1.1.1.3": Draining, "1.1.1.4": Draining},
			want:   []string{"1.1.1.4", "1.1.1.3"}},
		{name: "every host unhealthy: fail open in rendezvous order", hops: 2,
			down: []string{"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"}, want: []string{"1.1.1.4", "1.1.1.3"}},
		{name: "draining hosts serve when no healthy active host is left", hops: 2,
			states: map[string]State{"1.1.1.2": Draining}, down: []string{"1.1.1.1", "1.1.1.3", "1.1.1.4"},
			want: []string{"1.1.1.2", "1.1.1.4"}},
		{name: "one usable backend", hops: 2,
			states: map[string]State{"1.1.1.1": Inactive, "1.1.1.2": Inactive, "1.1.1.4": Inactive},
			want:   []string{"1.1.1.3"}},
		{name: "no usable backend", hops: 2,
			states: map[string]State{"1.1.1.1": Inactive, "1.1.1.2": Inactive, "1.1.1.3": Inactive, "1.1.1.4": Inactive},
			want:   nil},
		{name: "live health overrides the config", hops: 2, down: []string{"1.1.1.4"},
			health: Health{netip.MustParseAddr("1.1.1.4"): true, netip.MustParseAddr("1.1.1.3"): false},
			want:   []string{"1.1.1.4", "1.1.1.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := goldenSpec(t, tc.hops, set(tc.states, tc.down...))
			tbl := Build(spec, tc.health)
			if tbl.Width != len(tc.want) {
				t.Fatalf("width = %d, want %d", tbl.Width, len(tc.want))
			}
			if tbl.Width == 0 {
				return
			}
			got := tbl.Hops(0)
			if !slices.Equal(got, addrs(tc.want...)) {
				t.Errorf("row 0 = %v, want %v", got, tc.want)
			}
			// Every row agrees with the reference algorithm.
			for r := range NumRows {
				if g, w := tbl.Hops(uint16(r)), referenceOrder(spec, tc.health, uint16(r)); !slices.Equal(g, w) {
					t.Fatalf("row %d = %v, reference %v", r, g, w)
				}
			}
		})
	}
}

// glbCLIRow is glb-director-cli's row rule: the two lowest hashes, swapped
// when the primary is draining or unhealthy and the secondary is exactly
// active. Hosts without "healthy" are unhealthy to GLB.
func glbCLIRow(spec *Spec, row uint16) []netip.Addr {
	all := *spec
	all.Hops = MaxHops
	all.Backends = slices.Clone(spec.Backends)
	for i := range all.Backends {
		all.Backends[i].State = Active
		all.Backends[i].Healthy = nil
	}
	order := referenceOrder(&all, nil, row)
	byIP := map[netip.Addr]Backend{}
	for _, b := range spec.Backends {
		byIP[b.IP] = b
	}
	var usable []netip.Addr
	for _, ip := range order {
		if byIP[ip].State != Inactive {
			usable = append(usable, ip)
		}
	}
	p, s := byIP[usable[0]], byIP[usable[1]]
	bad := p.State == Draining || p.State == Inactive || p.Healthy == nil || !*p.Healthy
	if bad && s.State == Active {
		return []netip.Addr{usable[1], usable[0]}
	}
	return usable[:2]
}

// TestGLBDirectorFileRows: a real glb-director file (every host active and
// healthy) gives glb-director-cli's rows in every row of every table.
func TestGLBDirectorFileRows(t *testing.T) {
	c, err := Load("testdata/glb-director-table.json")
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Tables {
		spec := &c.Tables[i]
		tbl := Build(spec, nil)
		for r := range NumRows {
			if g, w := tbl.Hops(uint16(r)), glbCLIRow(spec, uint16(r)); !slices.Equal(g, w) {
				t.Fatalf("table %s row %d = %v, glb-director-cli gives %v", spec.Name, r, g, w)
			}
		}
	}
}

// TestOneBadHostMatchesGLB: with one host draining or unhealthy, rows where
// it is GLB's primary match GLB's swap; rows where it is GLB's secondary
// skip it for the next host (GLB keeps it, the gap DESIGN.md §4 closes).
func TestOneBadHostMatchesGLB(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for trial := range 20 {
		spec := randomSpec(r, 3+r.IntN(10))
		spec.Hops = 2
		tr := true
		for i := range spec.Backends {
			spec.Backends[i].State, spec.Backends[i].Healthy = Active, &tr
		}
		bad := &spec.Backends[r.IntN(len(spec.Backends))]
		if trial%2 == 0 {
			bad.State = Draining
		} else {
			f := false
			bad.Healthy = &f
		}
		tbl := Build(spec, nil)
		for row := 0; row < NumRows; row += 1 + r.IntN(20) {
			got, glb := tbl.Hops(uint16(row)), glbCLIRow(spec, uint16(row))
			all := *spec
			all.Backends = backends(Active)
			for _, b := range spec.Backends {
				all.Backends = append(all.Backends, Backend{IP: b.IP, State: Active})
			}
			if natural := referenceOrder(&all, nil, uint16(row)); natural[1] == bad.IP { // GLB's secondary
				if got[0] != glb[0] || got[1] == bad.IP {
					t.Fatalf("trial %d row %d = %v, want %s first and the bad secondary %s skipped", trial, row, got, glb[0], bad.IP)
				}
				continue
			}
			if !slices.Equal(got, glb) {
				t.Fatalf("trial %d row %d = %v, glb-director-cli gives %v", trial, row, got, glb)
			}
		}
	}
}

// TestOneHostChangeMovesOnlyItsRows: adding, removing, draining, failing
// or activating one host of N changes only the rows that host is in. With
// two hops or more, adding a host (as filling, the way glbctl brings hosts
// in) or draining one loses no flow: every row keeps its old primary
// somewhere in its new hop list.
//
// The starting tables are random state mixes that obey the one-at-a-time
// rule (DESIGN.md §4): any host may be unhealthy, and when the change is
// not itself a state change (remove, fail), one other host may be filling,
// draining or inactive.
func TestOneHostChangeMovesOnlyItsRows(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	set := func(state State) func(s *Spec, h int) *Spec {
		return func(s *Spec, h int) *Spec {
			n := *s
			n.Backends = slices.Clone(s.Backends)
			n.Backends[h].State = state
			return &n
		}
	}
	changes := []struct {
		name string
		// transition: the change moves a host between states, so the
		// one-at-a-time slot must be free beforehand (but for h).
		transition bool
		// crowdable: the old primary may give way to hosts ranked ahead
		// of the new one that hold the row's flows themselves (unhealthy
		// or draining), when they fill every later place. Only a change
		// that makes a host fully active can do that; adding as filling
		// and draining never do.
		crowdable bool
		start     State // h's state before the change
		do        func(s *Spec, h int) *Spec
	}{
		{"add", true, false, Filling, set(Filling)}, // before lacks h, see below
		{"add-active", true, true, Active, set(Active)},
		{"activate", true, true, Filling, set(Active)},
		{"remove", false, false, Active, func(s *Spec, h int) *Spec {
			n := *s
			n.Backends = slices.Delete(slices.Clone(s.Backends), h, h+1)
			return &n
		}},
		{"drain", true, false, Active, set(Draining)},
		{"fail", false, false, Active, func(s *Spec, h int) *Spec {
			n := *s
			n.Backends = slices.Clone(s.Backends)
			f := false
			n.Backends[h].Healthy = &f
			return &n
		}},
	}
	others := []State{Filling, Draining, Inactive}
	for _, ch := range changes {
		for trial := range 20 {
			t.Run(fmt.Sprintf("%s/%d", ch.name, trial), func(t *testing.T) {
				spec := randomSpec(r, 2+r.IntN(30))
				spec.Hops = 1 + r.IntN(4)
				if ch.transition && trial%4 != 0 {
					// Mostly two hops or more, where no flow may be lost.
					spec.Hops = 2 + r.IntN(3)
				}
				h := r.IntN(len(spec.Backends))
				healthy := 0
				for i := range spec.Backends {
					spec.Backends[i].State, spec.Backends[i].Healthy = Active, nil
					if i != h && r.IntN(6) == 0 {
						f := false
						spec.Backends[i].Healthy = &f
					} else if i != h {
						healthy++
					}
				}
				if healthy == 0 {
					// Keep one other host serving, so the change moves rows.
					spec.Backends[(h+1)%len(spec.Backends)].Healthy = nil
				}
				if g := r.IntN(len(spec.Backends)); !ch.transition && g != h && r.IntN(2) == 0 {
					spec.Backends[g].State = others[r.IntN(len(others))]
				}
				spec.Backends[h].State = ch.start
				host := spec.Backends[h].IP
				before, after := spec, ch.do(spec, h)
				if strings.HasPrefix(ch.name, "add") {
					n := *spec
					n.Backends = slices.Delete(slices.Clone(spec.Backends), h, h+1)
					before = &n
				}
				tb, ta := Build(before, nil), Build(after, nil)
				moved, crowded := 0, 0
				for row := range NumRows {
					hb, ha := tb.Hops(uint16(row)), ta.Hops(uint16(row))
					if slices.Equal(hb, ha) {
						continue
					}
					moved++
					if !slices.Contains(hb, host) && !slices.Contains(ha, host) {
						t.Fatalf("row %d changed %v → %v without %s in it", row, hb, ha, host)
					}
					if ch.transition && before.HopCount() >= 2 && len(hb) > 0 && len(ha) >= 2 && !slices.Contains(ha, hb[0]) {
						if !ch.crowdable {
							t.Fatalf("row %d: old primary %s lost (%v → %v)", row, hb[0], hb, ha)
						}
						// The old primary may only give way to hosts that
						// hold flows of this row themselves: unhealthy or
						// draining hosts ranked ahead of the new primary
						// (DESIGN.md §4, step 3).
						for _, ip := range ha[1:] {
							b := after.Backends[slices.IndexFunc(after.Backends, func(b Backend) bool { return b.IP == ip })]
							serving := b.State != Draining && (b.Healthy == nil || *b.Healthy)
							if serving || rank(after, uint16(row), ip) > rank(after, uint16(row), ha[0]) {
								t.Fatalf("row %d: old primary %s lost (%v → %v) to %s, which holds none of its flows", row, hb[0], hb, ha, ip)
							}
						}
						crowded++
					}
				}
				if crowded > 0 {
					t.Logf("%d rows: the old primary gave way to unhealthy or draining hosts ranked ahead of the new one", crowded)
				}
				// Activating a filling host moves rows only where hosts
				// ranked ahead of it are down or draining.
				if moved == 0 && len(spec.Backends) > 1 && ch.name != "activate" {
					t.Errorf("no row moved: the change did nothing")
				}
			})
		}
	}
}

// TestPrimaryShare: every host's share of primary rows stays within 1.15 ×
// the mean for N ≤ 100.
func TestPrimaryShare(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{2, 3, 5, 10, 17, 32, 50, 64, 100} {
		spec := randomSpec(r, n)
		for i := range spec.Backends {
			spec.Backends[i].State, spec.Backends[i].Healthy = Active, nil
		}
		p := Build(spec, nil).Primaries()
		mean := float64(NumRows) / float64(n)
		for i, c := range p {
			if float64(c) > 1.15*mean {
				t.Errorf("n=%d: %s is primary for %d rows, above 1.15 × mean %.0f", n, spec.Backends[i].IP, c, mean)
			}
		}
	}
}
