package stack

import (
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP glb_redirect_packets_total Packets.
# TYPE glb_redirect_packets_total counter
glb_redirect_packets_total{outcome="accepted_syn"} 12
glb_redirect_packets_total{outcome="forwarded_to_alternate"} 3
glb_director_config_generation 2
bad line
`
	m := ParseMetrics(text)
	for _, tc := range []struct {
		name  string
		match []string
		want  float64
	}{
		{"glb_redirect_packets_total", nil, 15},
		{"glb_redirect_packets_total", []string{`outcome="accepted_syn"`}, 12},
		{"glb_director_config_generation", nil, 2},
		{"glb_redirect_packets", nil, 0}, // a prefix of a name is not the name
		{"missing", nil, 0},
	} {
		if got := Sum(m, tc.name, tc.match...); got != tc.want {
			t.Errorf("Sum(%s, %v) = %v, want %v", tc.name, tc.match, got, tc.want)
		}
	}
}

func TestProgram(t *testing.T) {
	var order []string
	var logged []string
	p := &Program{Log: func(f string, a ...any) { logged = append(logged, f) }}
	p.Cleanup(func() { order = append(order, "first") })
	p.Cleanup(func() { p.Fatalf("cleanup %d failed", 2) })
	p.Cleanup(func() { order = append(order, "last") })
	err := p.Run(func() {
		p.Fatalf("step %s failed", "x")
		t.Error("Fatalf returned")
	})
	if err == nil || err.Error() != "step x failed" || !p.Failed() {
		t.Fatalf("Run = %v, Failed = %v", err, p.Failed())
	}
	if err := p.Run(func() {}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if strings.Join(order, ",") != "last,first" {
		t.Errorf("cleanups ran as %v, want last first", order)
	}
	if len(logged) != 1 {
		t.Errorf("a failing cleanup was not logged: %v", logged)
	}
	p.Close() // nothing left: no effect
}

func TestNSNames(t *testing.T) {
	got := NSNames("glb-")
	if len(got) != 8 || got[0] != "glb-client" || got[7] != "glb-upstream" {
		t.Errorf("NSNames = %v", got)
	}
}
