package main

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/glb-project/glb/director/table"
)

const testConfig = `{"tables": [{"name": "github-api",
	"hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
	"binds": [{"ip": "10.100.0.0/29", "proto": "tcp", "port": 443}, {"ip": "fd00::/64", "proto": "tcp", "port": 443}],
	"backends": [
		{"ip": "1.1.1.1", "state": "active"}, {"ip": "1.1.1.2", "state": "active"},
		{"ip": "1.1.1.3", "state": "active"}, {"ip": "1.1.1.4", "state": "%s"}]},
	{"name": "git", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "0f0e0d0c0b0a09080706050403020100",
	"binds": [{"ip": "10.100.0.9", "proto": "tcp", "port_start": 22, "port_end": 23}],
	"backends": [{"ip": "1.1.2.1", "state": "active"}]}]}`

func writeConfig(t *testing.T, state string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "table.json")
	if err := os.WriteFile(p, []byte(strings.Replace(testConfig, "%s", state, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func glbctl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestCommands(t *testing.T) {
	active, draining := writeConfig(t, "active"), writeConfig(t, "draining")
	for _, tc := range []struct {
		name       string
		args       []string
		wantErr    error // errUsage, or any error when errAny
		errAny     bool
		wantOut    []string
		wantStderr []string
	}{
		{name: "overview", args: []string{"--help"}, wantOut: []string{"table rows", "table diff", "hash", "glbctl COMMAND --help"}},
		{name: "no arguments is a usage error", args: nil, wantErr: errUsage},
		{name: "version", args: []string{"--version"}, wantOut: []string{"glbctl "}},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: errUsage, wantStderr: []string{`unknown command "frobnicate"`}},
		{name: "group without subcommand", args: []string{"table"}, wantErr: errUsage, wantStderr: []string{"needs a subcommand", "table rows", "table diff"}},
		{name: "command help", args: []string{"table", "rows", "--help"}, wantOut: []string{"Usage: glbctl table rows", "row<TAB>hop,hop", "-config"}},
		{name: "help COMMAND", args: []string{"help", "hash"}, wantOut: []string{"Usage: glbctl hash", "-src"}},
		{name: "bad flag", args: []string{"hash", "--bogus"}, wantErr: errUsage, wantStderr: []string{"flag provided but not defined"}},
		{name: "rows needs a table when there are several", args: []string{"table", "rows", "--config", active}, errAny: true,
			wantStderr: nil},
		{name: "hash by destination bind", args: []string{"hash", "--config", active, "--src", "198.51.100.7:40000", "--dst", "10.100.0.3:443"},
			wantOut: []string{"table   github-api", "row", "hops"}},
		{name: "hash of an IPv6 flow", args: []string{"hash", "--config", active, "--src", "[2001:db8::7]:40000", "--dst", "[fd00::1]:443"},
			wantOut: []string{"github-api"}},
		{name: "hash with no bind for the destination", args: []string{"hash", "--config", active, "--src", "198.51.100.7", "--dst", "10.100.0.3:80"}, errAny: true},
		{name: "hash needs --src", args: []string{"hash", "--config", active, "--table", "git"}, errAny: true},
		{name: "hash with a bad address", args: []string{"hash", "--config", active, "--src", "1.2.3", "--table", "git"}, errAny: true},
		{name: "diff of a drain loses nothing", args: []string{"table", "diff", "--from", active, "--to", draining},
			wantOut: []string{"table github-api:", "0 lose flows", "1.1.1.4", "active → draining", "table git: no change"}},
		{name: "diff of one table", args: []string{"table", "diff", "--from", active, "--to", draining, "--table", "git"},
			wantOut: []string{"table git: no change"}},
		{name: "diff needs both sides", args: []string{"table", "diff", "--from", active}, errAny: true},
		{name: "missing config file", args: []string{"table", "rows", "--config", "/nonexistent.json"}, errAny: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := glbctl(t, tc.args...)
			switch {
			case tc.errAny && err == nil:
				t.Fatalf("no error; output:\n%s", out)
			case !tc.errAny && !errors.Is(err, tc.wantErr) && (err != nil || tc.wantErr != nil):
				t.Fatalf("err = %v, want %v\nstderr: %s", err, tc.wantErr, stderr)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestTableRows checks the printed rows against the table package.
func TestTableRows(t *testing.T) {
	path := writeConfig(t, "draining")
	out, _, err := glbctl(t, "table", "rows", "--config", path, "--table", "github-api")
	if err != nil {
		t.Fatal(err)
	}
	c, err := table.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tbl := table.Build(c.Table("github-api"), nil)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != table.NumRows {
		t.Fatalf("%d lines, want %d", len(lines), table.NumRows)
	}
	for r, l := range lines {
		var hops []string
		for _, a := range tbl.Hops(uint16(r)) {
			hops = append(hops, a.String())
		}
		if want := strings.Join([]string{strconv.Itoa(r), strings.Join(hops, ",")}, "\t"); l != want {
			t.Fatalf("line %d = %q, want %q", r, l, want)
		}
	}
}

// TestHashAgreesWithTable checks hash's output against the table package.
func TestHashAgreesWithTable(t *testing.T) {
	path := writeConfig(t, "active")
	out, _, err := glbctl(t, "hash", "--config", path, "--src", "198.51.100.7:40000", "--dst", "10.100.0.3:443")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := table.Load(path)
	spec := c.Table("github-api")
	h := table.Hash(spec.HashKey, spec.Fields(), table.Flow{Src: netip.MustParseAddr("198.51.100.7")})
	row := table.RowOf(h)
	var hops []string
	for _, a := range table.Build(spec, nil).Hops(row) {
		hops = append(hops, a.String())
	}
	for _, want := range []string{"row     " + strconv.Itoa(int(row)) + " ", "hops    " + strings.Join(hops, ", ")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
