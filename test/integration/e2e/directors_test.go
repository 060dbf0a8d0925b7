package e2e

import (
	"testing"

	"github.com/glb-project/glb/test/integration/stack"
)

// TestDirectors: the router's ECMP route spreads client connections over
// both directors, and both compute the same table: the rows in their
// kernels are identical, and equal what glbctl computes from the state.
// It runs with the directors' XDP program in native mode (the default of
// the stack) and in generic mode.
func TestDirectors(t *testing.T) {
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) { testDirectors(t, mode) })
	}
}

func testDirectors(t *testing.T, mode string) {
	requirements(t, "ss")
	s := startStack(t, func(c *stack.Config) { c.XDPMode = mode })
	tx := func() []float64 {
		var v []float64
		for _, d := range s.Directors {
			m, err := s.Metrics(s.Router, d.MetricsURL())
			if err != nil {
				t.Fatal(err)
			}
			v = append(v, m[`glb_director_packets_total{verdict="tx"}`])
		}
		return v
	}
	before := tx()
	hosts := newConnections(t, s, 24)
	after := tx()
	t.Logf("24 new connections reached %v; director GUE packets %v → %v", hosts, before, after)
	for i, d := range s.Directors {
		if after[i] <= before[i] {
			t.Errorf("%s sent no GUE packet for 24 new connections: ECMP did not spread them", d.Name)
		}
	}
	if len(hosts) < 2 {
		t.Errorf("24 connections reached only %v: the table did not spread them", hosts)
	}

	rows := make([][]string, len(s.Directors))
	for i, d := range s.Directors {
		var err error
		if rows[i], err = d.KernelRows(); err != nil {
			t.Fatal(err)
		}
		if len(rows[i]) != 1 {
			t.Fatalf("%s holds %d tables, want 1", d.Name, len(rows[i]))
		}
	}
	if rows[0][0] != rows[1][0] {
		t.Fatalf("the directors' kernels hold different rows")
	}
	want, err := s.ConfigRows()
	if err != nil {
		t.Fatal(err)
	}
	if rows[0][0] != want {
		t.Fatalf("the directors' rows differ from glbctl table rows of the state")
	}
	if n := len(want); n < 65536*len("0\t10.1.0.11,10.1.0.12\n")/2 {
		t.Fatalf("glbctl table rows printed only %d bytes", n)
	}
}
