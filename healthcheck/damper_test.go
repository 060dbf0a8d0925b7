package healthcheck

import "testing"

func TestDamper(t *testing.T) {
	tests := []struct {
		name    string
		results string // p = pass, f = fail
		want    string // state after each result: H healthy, U unhealthy
		changes int
	}{
		{"the first pass counts at once", "p", "H", 1},
		{"the first fail counts at once", "f", "U", 1},
		{"three passes in a row bring a failing check back", "fppp", "UUUH", 2},
		{"three fails in a row take a passing check down", "pfff", "HHHU", 2},
		{"two fails are not enough", "pffp", "HHHH", 1},
		{"a pass between fails restarts the count", "pffpfff", "HHHHHHU", 2},
		{"a fail between passes restarts the count", "fppfppp", "UUUUUUH", 2},
		{"flapping every probe never changes state", "pfpfpfpf", "HHHHHHHH", 1},
		{"more results of the same kind change nothing", "pppppp", "HHHHHH", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d damper
			changes := 0
			for i, r := range tt.results {
				if d.observe(r == 'p', 3, 3) {
					changes++
				}
				got := byte('U')
				if d.healthy {
					got = 'H'
				}
				if !d.known || got != tt.want[i] {
					t.Fatalf("after result %d (%c): state %c known %v, want %c", i+1, r, got, d.known, tt.want[i])
				}
			}
			if changes != tt.changes {
				t.Fatalf("%d changes, want %d", changes, tt.changes)
			}
		})
	}
}

func TestDamperRiseAndFallDiffer(t *testing.T) {
	var d damper
	d.observe(true, 2, 1) // first: healthy at once
	if !d.observe(false, 2, 1) || d.healthy {
		t.Fatal("fall 1: one fail must take the check down")
	}
	if d.observe(true, 2, 1) || !d.observe(true, 2, 1) || !d.healthy {
		t.Fatal("rise 2: the second pass in a row must bring the check back")
	}
}
