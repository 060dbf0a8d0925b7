package table

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	base := goldenSpec(t, 2, func(string, *Backend) {})
	for _, tc := range []struct {
		name                  string
		mod                   func(string, *Backend)
		changed, second, lost int
		host                  string
		hostSecond, hostLost  int
		wantLines             []string
	}{
		{name: "no change", mod: func(string, *Backend) {}, wantLines: []string{"no change"}},
		{name: "drain keeps every flow", mod: set(map[string]State{"1.1.1.4": Draining}),
			host: "1.1.1.4", wantLines: []string{"active → draining", "0 lose flows"}},
		{name: "removing a host loses its flows", mod: set(map[string]State{"1.1.1.4": Inactive}),
			host: "1.1.1.4", wantLines: []string{"active → inactive"}},
		{name: "failing a host", mod: set(nil, "1.1.1.2"),
			host: "1.1.1.2", wantLines: []string{"active → active (unhealthy)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Build(base, nil)
			b := Build(goldenSpec(t, 2, tc.mod), nil)
			d := Compare(a, b)
			// Count the same things the slow way.
			var changed, second, lost int
			perHost := map[netip.Addr][2]int{}
			for r := range NumRows {
				ha, hb := a.Hops(uint16(r)), b.Hops(uint16(r))
				if strings.Join(addrStrings(ha), ",") == strings.Join(addrStrings(hb), ",") {
					continue
				}
				changed++
				if ha[0] == hb[0] {
					continue
				}
				c := perHost[ha[0]]
				if contains(hb, ha[0]) {
					second++
					c[0]++
				} else {
					lost++
					c[1]++
				}
				perHost[ha[0]] = c
			}
			if d.Changed != changed || d.SecondChance != second || d.Lost != lost {
				t.Errorf("diff = %d changed, %d second chance, %d lost; want %d, %d, %d", d.Changed, d.SecondChance, d.Lost, changed, second, lost)
			}
			for _, h := range d.Hosts {
				if c := perHost[h.IP]; h.SecondChance != c[0] || h.Lost != c[1] {
					t.Errorf("host %s: %d second chance, %d lost; want %d, %d", h.IP, h.SecondChance, h.Lost, c[0], c[1])
				}
			}
			if tc.name == "drain keeps every flow" && (d.Lost != 0 || d.SecondChance == 0) {
				t.Errorf("drain: %d lost, %d second chance", d.Lost, d.SecondChance)
			}
			if tc.name == "removing a host loses its flows" && d.Lost == 0 {
				t.Error("removing a primary lost nothing")
			}
			var out bytes.Buffer
			if err := d.Write(&out); err != nil {
				t.Fatal(err)
			}
			for _, l := range tc.wantLines {
				if !strings.Contains(out.String(), l) {
					t.Errorf("output lacks %q:\n%s", l, out.String())
				}
			}
		})
	}
}

func addrStrings(as []netip.Addr) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

func contains(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

func TestCompareAddedTable(t *testing.T) {
	b := Build(goldenSpec(t, 2, func(string, *Backend) {}), nil)
	d := Compare(nil, b)
	if d.Changed != NumRows || d.Lost != 0 || d.SecondChance != 0 {
		t.Errorf("new table: %+v", d)
	}
	d = Compare(b, nil)
	if d.Changed != NumRows || d.Lost != NumRows {
		t.Errorf("removed table: changed %d lost %d", d.Changed, d.Lost)
	}
}
