package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glb-project/glb/director/table"
)

// hashConfig writes a one-table config (table "a") that hashes fields.
func hashConfig(t *testing.T, fields table.Fields) string {
	t.Helper()
	names := `"` + strings.Join(fields.Names(), `","`) + `"`
	cfg := fmt.Sprintf(`{"tables": [{"name": "a", "hash_key": "000102030405060708090a0b0c0d0e0f",
		"seed": "49a3d861d661ae5ab06ed9326871a2f5", "hash_fields": [%s],
		"binds": [{"ip": "10.100.0.0/29", "proto": "tcp", "port": 443}, {"ip": "fd00::/64", "proto": "tcp", "port": 443}],
		"backends": [{"ip": "1.1.1.1", "state": "active"}, {"ip": "1.1.1.2", "state": "active"}, {"ip": "1.1.1.3", "state": "active"}]}]}`, names)
	p := filepath.Join(t.TempDir(), "a.json")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHashNeedsEveryHashedField runs hash over every field set and every
// shape of --src/--dst: a flow that lacks a hashed field is refused with an
// error that names the field and the flag that supplies it; a complete flow
// prints the row table.Hash gives.
func TestHashNeedsEveryHashedField(t *testing.T) {
	flows := []struct {
		name             string
		src, dst         string
		srcPort, dstPort bool
		want             table.Flow
	}{
		{name: "src address only", src: "198.51.100.7",
			want: table.Flow{Src: netip.MustParseAddr("198.51.100.7")}},
		{name: "src with port", src: "198.51.100.7:40000", srcPort: true,
			want: table.Flow{Src: netip.MustParseAddr("198.51.100.7"), SrcPort: 40000}},
		{name: "src and dst address", src: "198.51.100.7:40000", dst: "10.100.0.3", srcPort: true,
			want: table.Flow{Src: netip.MustParseAddr("198.51.100.7"), SrcPort: 40000, Dst: netip.MustParseAddr("10.100.0.3")}},
		{name: "full IPv4 flow", src: "198.51.100.7:40000", dst: "10.100.0.3:443", srcPort: true, dstPort: true,
			want: table.Flow{Src: netip.MustParseAddr("198.51.100.7"), SrcPort: 40000, Dst: netip.MustParseAddr("10.100.0.3"), DstPort: 443}},
		{name: "dst with port, src without", src: "198.51.100.7", dst: "10.100.0.3:443", dstPort: true,
			want: table.Flow{Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("10.100.0.3"), DstPort: 443}},
		{name: "full IPv6 flow", src: "[2001:db8::7]:40000", dst: "[fd00::1]:443", srcPort: true, dstPort: true,
			want: table.Flow{Src: netip.MustParseAddr("2001:db8::7"), SrcPort: 40000, Dst: netip.MustParseAddr("fd00::1"), DstPort: 443}},
		{name: "IPv6 dst without port", src: "[2001:db8::7]:40000", dst: "fd00::1", srcPort: true,
			want: table.Flow{Src: netip.MustParseAddr("2001:db8::7"), SrcPort: 40000, Dst: netip.MustParseAddr("fd00::1")}},
		{name: "explicit port 0 counts as given", src: "198.51.100.7:0", dst: "10.100.0.3:0", srcPort: true, dstPort: true,
			want: table.Flow{Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("10.100.0.3")}},
	}
	for fields := table.Fields(1); fields <= table.SrcAddr|table.DstAddr|table.SrcPort|table.DstPort; fields++ {
		config := hashConfig(t, fields)
		for _, fl := range flows {
			t.Run(strings.Join(fields.Names(), ",")+"/"+fl.name, func(t *testing.T) {
				args := []string{"hash", "--config", config, "--table", "a", "--src", fl.src}
				if fl.dst != "" {
					args = append(args, "--dst", fl.dst)
				}
				var missing, fixes []string
				if fields&table.SrcPort != 0 && !fl.srcPort {
					missing, fixes = append(missing, "src_port"), append(fixes, "--src IP:PORT")
				}
				if fields&table.DstAddr != 0 && fl.dst == "" {
					missing = append(missing, "dst_addr")
				}
				if fields&table.DstPort != 0 && !fl.dstPort {
					missing = append(missing, "dst_port")
				}
				switch {
				case fields&table.DstPort != 0 && !fl.dstPort && fl.want.Dst.Is4():
					fixes = append(fixes, "--dst "+fl.dst+":PORT")
				case fields&table.DstPort != 0 && !fl.dstPort && fl.want.Dst.Is6():
					fixes = append(fixes, "--dst ["+fl.dst+"]:PORT")
				case fields&table.DstPort != 0 && !fl.dstPort:
					fixes = append(fixes, "--dst IP:PORT")
				case fields&table.DstAddr != 0 && fl.dst == "":
					fixes = append(fixes, "--dst IP[:PORT]")
				}
				out, _, err := glbctl(t, args...)
				if len(missing) > 0 {
					want := "table a hashes " + strings.Join(missing, " and ") + ": give " + strings.Join(fixes, " and ")
					if err == nil || err.Error() != want {
						t.Fatalf("err = %v, want %q\nstdout:\n%s", err, want, out)
					}
					if out != "" {
						t.Errorf("printed a row for an incomplete flow:\n%s", out)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				c, err := table.Load(config)
				if err != nil {
					t.Fatal(err)
				}
				spec := c.Table("a")
				row := table.RowOf(table.Hash(spec.HashKey, fields, fl.want))
				if want := fmt.Sprintf("row     %d (%#04x)\n", row, row); !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			})
		}
	}
}

// TestHashRejectsMixedFamilies: a flow has one address family.
func TestHashRejectsMixedFamilies(t *testing.T) {
	config := hashConfig(t, table.SrcAddr)
	for _, tc := range []struct{ src, dst string }{
		{"198.51.100.7:40000", "[fd00::1]:443"},
		{"[2001:db8::7]:40000", "10.100.0.3:443"},
		{"2001:db8::7", "10.100.0.3"},
		{"198.51.100.7", "::ffff:10.100.0.3"},
	} {
		t.Run(tc.src+"→"+tc.dst, func(t *testing.T) {
			out, _, err := glbctl(t, "hash", "--config", config, "--table", "a", "--src", tc.src, "--dst", tc.dst)
			if err == nil || !strings.Contains(err.Error(), "different address families") {
				t.Fatalf("err = %v, want a mixed-family error\nstdout:\n%s", err, out)
			}
		})
	}
}
