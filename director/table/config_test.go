package table

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseGLBDirectorFile(t *testing.T) {
	c, err := Load("testdata/glb-director-table.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tables) != 2 {
		t.Fatalf("tables = %d, want 2", len(c.Tables))
	}
	t0 := c.Tables[0]
	if t0.Name != "table-0" || t0.HopCount() != 2 || t0.Fields() != SrcAddr {
		t.Errorf("defaults: name %q hops %d fields %v", t0.Name, t0.HopCount(), t0.Fields().Names())
	}
	if t0.HashKey.String() != "12345678901234561234567890123456" {
		t.Errorf("hash_key = %s", t0.HashKey)
	}
	b := c.Tables[1].Binds[2]
	if b.Prefix != netip.MustParsePrefix("fdb4:98ce:52d4::42/128") || b.Proto != TCP || b.PortStart != 80 || b.PortEnd != 80 {
		t.Errorf("bind = %+v", b)
	}
	// It round-trips through Marshal.
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(out)
	if err != nil {
		t.Fatalf("reparse: %v\n%s", err, out)
	}
	out2, _ := c2.Marshal()
	if string(out) != string(out2) {
		t.Errorf("marshal is not stable:\n%s\n%s", out, out2)
	}
}

// TestParseGLBHealthcheckFile loads a table as glb-healthcheck writes it:
// its global "healthchecks" settings, "fou" checks and "healthchecks": null.
// glb accepts all of it and warns about what it does not use.
func TestParseGLBHealthcheckFile(t *testing.T) {
	c, err := Load("testdata/glb-healthcheck-table.json")
	if err != nil {
		t.Fatal(err)
	}
	s := c.Table("git")
	if s == nil || len(s.Backends) != 3 || len(s.Binds) != 3 {
		t.Fatalf("config = %+v", c)
	}
	if hc := s.Backends[0].Healthchecks; hc != (Healthchecks{HTTP: 8080, HTTPURI: "/status", GUE: 19523, FOU: 19522}) {
		t.Errorf("backends[0].healthchecks = %+v", hc)
	}
	if hc := s.Backends[2].Healthchecks; hc != (Healthchecks{}) {
		t.Errorf(`"healthchecks": null gave %+v`, hc)
	}
	if c.Healthchecks == nil || *c.Healthchecks != (GLBHealthchecks{TimeoutMS: 500, IntervalMS: 1000, Trigger: 2}) {
		t.Errorf("global healthchecks = %+v", c.Healthchecks)
	}
	want := []string{
		"healthchecks (glb-healthcheck's timeout_ms, interval_ms, trigger) is ignored: set --healthcheck-timeout and --healthcheck-interval",
		`table "git": backends[0] (198.51.100.11): healthchecks.fou is ignored: glb has no FOU tunnel (glb-redirect decapsulates GUE itself); the gue check covers the tunnel path`,
		`table "git": backends[1] (198.51.100.12): healthchecks.fou is ignored: glb has no FOU tunnel (glb-redirect decapsulates GUE itself); add "gue": 19523 to check the tunnel path`,
	}
	got := c.Warnings()
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("warning %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
	// glbctl writes the file back: nothing GLB wrote is lost.
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(out)
	if err != nil {
		t.Fatalf("reparse: %v\n%s", err, out)
	}
	if !slices.Equal(c2.Warnings(), got) || c2.Tables[0].Backends[0].Healthchecks != s.Backends[0].Healthchecks {
		t.Errorf("round trip lost GLB fields:\n%s", out)
	}
	if cl := c.Clone(); cl.Healthchecks == c.Healthchecks || *cl.Healthchecks != *c.Healthchecks {
		t.Error("Clone does not deep-copy the global healthchecks")
	}
}

func TestWarningsQuiet(t *testing.T) {
	// What glb-healthcheck writes when nothing is set: no warning.
	c, err := Parse([]byte(`{"healthchecks": null, "tables": [{"name": "", ` + okTable + `,
		"binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}],
		"backends": [{"ip": "10.1.0.1", "state": "active", "healthy": true, "healthchecks": {"gue": 19523}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings = %q, want none", w)
	}
	if c.Tables[0].Name != "table-0" {
		t.Errorf(`"name": "" gave %q, want table-0`, c.Tables[0].Name)
	}
}

func TestParseSuperset(t *testing.T) {
	c, err := Parse([]byte(`{"tables": [{"name": "github-api",
		"hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "0f0e0d0c0b0a09080706050403020100",
		"hash_fields": ["src_addr", "dst_port"], "hops": 3,
		"binds": [{"ip": "10.100.0.0/29", "proto": "tcp", "port_start": 443, "port_end": 444}],
		"backends": [{"ip": "10.1.0.11", "name": "proxy-1", "state": "draining", "reason": "kernel upgrade", "by": "alice",
			"at": "2026-11-23T10:00:00Z",
			"healthchecks": {"http": 8080, "http_uri": "/_glb/health", "gue": 19523}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Table("github-api")
	if s == nil || s.Hops != 3 || s.Fields() != SrcAddr|DstPort {
		t.Fatalf("spec = %+v", s)
	}
	be := s.Backends[0]
	if s.FindBackend("proxy-1") != &s.Backends[0] || s.FindBackend("10.1.0.11") != &s.Backends[0] || s.FindBackend("proxy-2") != nil {
		t.Error("FindBackend by name or address")
	}
	if be.State != Draining || be.Healthy != nil || be.Healthchecks.HTTP != 8080 || be.Reason != "kernel upgrade" || be.At.IsZero() {
		t.Errorf("backend = %+v", be)
	}
	if !s.Binds[0].Contains(TCP, netip.MustParseAddr("10.100.0.7"), 444) || s.Binds[0].Contains(TCP, netip.MustParseAddr("10.100.0.8"), 443) {
		t.Error("bind prefix/port matching is wrong")
	}
}

const okTable = `"hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "0f0e0d0c0b0a09080706050403020100"`

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       []string // substrings of the error
	}{
		{"not json", `{"tables": [`, []string{"parse forwarding table config"}},
		{"no tables", `{}`, []string{`"tables" is missing`}},
		{"unknown top-level field", `{"tables": [], "tabels": []}`, []string{`unknown field "tabels"`}},
		{"short hash key", `{"tables": [{"name": "a", "hash_key": "abcd", "seed": "0f0e0d0c0b0a09080706050403020100", "binds": [], "backends": []}]}`,
			[]string{`table "a"`, "hash_key", "32 hex digits", "openssl rand -hex 16"}},
		{"bad hex seed", `{"tables": [{"name": "a", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "zz0e0d0c0b0a09080706050403020100", "binds": [], "backends": []}]}`,
			[]string{`table "a"`, "seed", "not hex"}},
		{"missing seed", `{"tables": [{"hash_key": "000102030405060708090a0b0c0d0e0f", "binds": [], "backends": []}]}`,
			[]string{"tables[0]", "seed is missing"}},
		{"hops too high", `{"tables": [{"name": "a", ` + okTable + `, "hops": 9, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": []}]}`,
			[]string{`table "a"`, "hops is 9", "1..8"}},
		{"negative hops", `{"tables": [{"name": "a", ` + okTable + `, "hops": -1, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": []}]}`,
			[]string{"hops is -1"}},
		{"unknown state", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "10.1.0.1", "state": "actve"}]}]}`,
			[]string{`table "a"`, "backends[0]", `unknown state "actve"`, "active, filling, draining, inactive"}},
		{"missing state", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "10.1.0.1"}]}]}`,
			[]string{"backends[0]", "state is missing"}},
		{"duplicate backend", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "10.1.0.1", "state": "active"}, {"ip": "10.1.0.1", "state": "active"}]}]}`,
			[]string{"backends[1]", "10.1.0.1", "also backends[0]"}},
		{"ipv6 backend", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "fd00::1", "state": "active"}]}]}`,
			[]string{"not IPv4", "GUE"}},
		{"bad backend ip", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "10.1.0.300", "state": "active"}]}]}`,
			[]string{"backends[0]", "ip"}},
		{"overlapping binds in a table", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.0/24", "proto": "tcp", "port_start": 80, "port_end": 90}, {"ip": "10.0.0.5", "proto": "tcp", "port": 85}], "backends": []}]}`,
			[]string{"binds[1]", "overlaps binds[0]"}},
		{"overlapping binds across tables", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.0/24", "proto": "tcp", "port": 443}], "backends": []}, {"name": "b", ` + okTable + `, "binds": [{"ip": "10.0.0.9", "proto": "tcp", "port": 443}], "backends": []}]}`,
			[]string{`table "b"`, `overlaps table "a"`}},
		{"host bits in prefix", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1/24", "proto": "tcp", "port": 80}], "backends": []}]}`,
			[]string{"host bits", "10.0.0.0/24"}},
		{"bad proto", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "sctp", "port": 80}], "backends": []}]}`,
			[]string{"binds[0]", "sctp", "tcp or udp"}},
		{"port and range", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80, "port_start": 1, "port_end": 2}], "backends": []}]}`,
			[]string{"not both"}},
		{"no ports", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp"}], "backends": []}]}`,
			[]string{"ports are missing"}},
		{"port out of range", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 70000}], "backends": []}]}`,
			[]string{"binds[0]", `"port"`, "70000", "ports are 0–65535"}},
		{"negative port_end", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port_start": 1, "port_end": -1}], "backends": []}]}`,
			[]string{"binds[0]", `"port_end"`, "ports are 0–65535"}},
		{"explicit zero hops", `{"tables": [{"name": "a", ` + okTable + `, "hops": 0, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": []}]}`,
			[]string{`table "a"`, "hops is 0", "1..8", "leave hops out for the default 2"}},
		{"unspecified backend", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "0.0.0.0", "state": "active"}]}]}`,
			[]string{"backends[0]", "0.0.0.0", "not a unicast host address"}},
		{"loopback backend", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "127.0.0.1", "state": "active"}]}]}`,
			[]string{"backends[0]", "127.0.0.1", "not a unicast host address"}},
		{"multicast backend", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "224.0.0.5", "state": "active"}]}]}`,
			[]string{"backends[0]", "224.0.0.5", "not a unicast host address"}},
		{"this-network backend", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "0.1.2.3", "state": "active"}]}]}`,
			[]string{"backends[0]", "0.1.2.3", "not a unicast host address"}},
		{"reserved backend", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "240.0.0.5", "state": "active"}]}]}`,
			[]string{"backends[0]", "240.0.0.5", "not a unicast host address"}},
		{"broadcast backend", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "255.255.255.255", "state": "active"}]}]}`,
			[]string{"backends[0]", "255.255.255.255", "not a unicast host address"}},
		{"catch-all ipv4 bind", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "0.0.0.0/0", "proto": "tcp", "port_start": 0, "port_end": 65535}], "backends": []}]}`,
			[]string{"binds[0]", "0.0.0.0/0", "matches every address", "bind the VIP prefixes"}},
		{"catch-all ipv6 bind", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "::/0", "proto": "udp", "port": 53}], "backends": []}]}`,
			[]string{"binds[0]", "::/0", "matches every address"}},
		{"bad fou port", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "10.1.0.1", "state": "active", "healthchecks": {"fou": 70000}}]}]}`,
			[]string{"healthchecks.fou port 70000"}},
		{"reversed range", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port_start": 90, "port_end": 80}], "backends": []}]}`,
			[]string{"port_start 90 is above port_end 80"}},
		{"no binds", `{"tables": [{"name": "a", ` + okTable + `, "binds": [], "backends": []}]}`,
			[]string{"binds is empty"}},
		{"duplicate names", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": []}, {"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.2", "proto": "tcp", "port": 80}], "backends": []}]}`,
			[]string{`name "a" is used twice`}},
		{"bad hash field", `{"tables": [{"name": "a", ` + okTable + `, "hash_fields": ["src_ip"], "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": []}]}`,
			[]string{"hash_fields", `unknown field "src_ip"`}},
		{"bad healthcheck port", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "10.1.0.1", "state": "active", "healthchecks": {"http": 99999}}]}]}`,
			[]string{"healthchecks.http port 99999"}},
		{"unknown backend field", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "10.1.0.1", "state": "active", "helthy": true}]}]}`,
			[]string{"backends[0]", `unknown field "helthy"`}},
		{"duplicate host name", `{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": [{"ip": "10.1.0.1", "name": "p1", "state": "active"}, {"ip": "10.1.0.2", "name": "p1", "state": "active"}]}]}`,
			[]string{"backends[1]", `name "p1" is also backends[0]`}},
		{"wrong type", `{"tables": [{"name": "a", ` + okTable + `, "hops": "two", "binds": [{"ip": "10.0.0.1", "proto": "tcp", "port": 80}], "backends": []}]}`,
			[]string{"hops"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"tables": []}`))
	f.Add([]byte(`{"tables": [{"name": "a", ` + okTable + `, "hops": 3, "hash_fields": ["src_addr", "dst_port"], "binds": [{"ip": "10.0.0.0/24", "proto": "tcp", "port_start": 80, "port_end": 90}], "backends": [{"ip": "10.1.0.1", "state": "active", "healthy": false, "healthchecks": {"http": 80, "gue": 19523}}]}]}`))
	f.Add([]byte(`{"tables": [{"name": "a", ` + okTable + `, "binds": [{"ip": "fd00::/64", "proto": "udp", "port": 53}], "backends": [{"ip": "10.1.0.1", "state": "draining", "at": "2026-01-01T00:00:00Z"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		// A config that parses builds, and survives a round trip.
		for i := range c.Tables {
			tbl := Build(&c.Tables[i], nil)
			if tbl.Width > c.Tables[i].HopCount() {
				t.Fatalf("width %d above hops %d", tbl.Width, c.Tables[i].HopCount())
			}
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("marshal a valid config: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("reparse: %v\n%s", err, out)
		}
	})
}

func TestMatch(t *testing.T) {
	c, err := Parse([]byte(`{"tables": [
		{"name": "wide", ` + okTable + `, "binds": [{"ip": "10.100.0.0/24", "proto": "tcp", "port": 443}, {"ip": "10.100.0.0/24", "proto": "udp", "port": 53}], "backends": []},
		{"name": "narrow", ` + okTable + `, "binds": [{"ip": "10.100.0.8/29", "proto": "tcp", "port_start": 22, "port_end": 23}], "backends": []}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dst       string
		proto     Proto
		port      uint16
		wantTable string
		wantBind  int
	}{
		{"10.100.0.9", TCP, 443, "wide", 0},
		{"10.100.0.9", TCP, 22, "narrow", 0},
		{"10.100.0.9", UDP, 53, "wide", 1},
		{"10.100.0.9", 0, 0, "narrow", 0}, // echo: the most specific prefix
		{"10.100.0.1", 0, 0, "wide", 0},   // echo: then the first in the file
		{"10.100.0.9", TCP, 80, "", -1},
		{"10.100.1.1", TCP, 443, "", -1},
	} {
		spec, bind := c.Match(Packet{Dst: netip.MustParseAddr(tc.dst), BindProto: tc.proto, Port: tc.port})
		name := ""
		if spec != nil {
			name = spec.Name
		}
		if name != tc.wantTable || bind != tc.wantBind {
			t.Errorf("Match(%s %v:%d) = %q bind %d, want %q bind %d", tc.dst, tc.proto, tc.port, name, bind, tc.wantTable, tc.wantBind)
		}
	}
}

func TestHostNames(t *testing.T) {
	ip := netip.MustParseAddr("10.1.0.12")
	for _, tc := range []struct {
		name, host, label string
	}{
		{"proxy-2", "proxy-2", "proxy-2 (10.1.0.12)"},
		{"", "10.1.0.12", "10.1.0.12"},
	} {
		b := Backend{IP: ip, Name: tc.name}
		if got := b.Host(); got != tc.host {
			t.Errorf("Host() of %q = %q, want %q", tc.name, got, tc.host)
		}
		if got := HostLabel(ip, tc.name); got != tc.label {
			t.Errorf("HostLabel of %q = %q, want %q", tc.name, got, tc.label)
		}
	}
}
