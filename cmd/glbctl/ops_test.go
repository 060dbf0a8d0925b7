package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glb-project/glb/consul"
	"github.com/glb-project/glb/director/table"
)

// opsState has two tables sharing proxy-1 and proxy-2.
const opsState = `{"tables": [
 {"name": "github-api", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
  "binds": [{"ip": "10.100.0.0/29", "proto": "tcp", "port": 443}],
  "backends": [
   {"ip": "10.1.0.11", "name": "proxy-1", "state": "active"},
   {"ip": "10.1.0.12", "name": "proxy-2", "state": "active"},
   {"ip": "10.1.0.13", "name": "proxy-3", "state": "active"},
   {"ip": "10.1.0.14", "name": "proxy-4", "state": "active"}]},
 {"name": "git", "hash_key": "0f0e0d0c0b0a09080706050403020100", "seed": "0f0e0d0c0b0a09080706050403020100",
  "binds": [{"ip": "10.100.0.9", "proto": "tcp", "port": 22}],
  "backends": [
   {"ip": "10.1.0.11", "name": "proxy-1", "state": "active"},
   {"ip": "10.1.0.12", "name": "proxy-2", "state": "active"},
   {"ip": "10.1.0.21", "name": "git-1", "state": "active"}]}]}`

func writeState(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "forwarding_table.json")
	if err := os.WriteFile(p, []byte(opsState), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadState(t *testing.T, spec string) *table.Config {
	t.Helper()
	st, err := consul.Open(spec, consul.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func backend(t *testing.T, cfg *table.Config, tableName, host string) *table.Backend {
	t.Helper()
	tb := cfg.Table(tableName)
	if tb == nil {
		t.Fatalf("no table %s", tableName)
	}
	b := tb.FindBackend(host)
	if b == nil {
		t.Fatalf("no host %s in %s", host, tableName)
	}
	return b
}

// step is one glbctl run and what it must print.
type step struct {
	name       string
	args       []string
	wantErr    bool
	wantOut    []string
	wantStderr []string // stderr, including the error message
	check      func(t *testing.T, cfg *table.Config)
}

func runSteps(t *testing.T, spec string, steps []step) {
	t.Helper()
	for _, s := range steps {
		out, stderr, err := glbctl(t, s.args...)
		if err != nil {
			stderr += "glbctl: " + err.Error()
		}
		if s.wantErr != (err != nil) {
			t.Fatalf("%s: err = %v, want error %v\nstdout:\n%s\nstderr:\n%s", s.name, err, s.wantErr, out, stderr)
		}
		for _, w := range s.wantOut {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: stdout lacks %q:\n%s", s.name, w, out)
			}
		}
		for _, w := range s.wantStderr {
			if !strings.Contains(stderr, w) {
				t.Fatalf("%s: stderr lacks %q:\n%s", s.name, w, stderr)
			}
		}
		if s.check != nil {
			s.check(t, loadState(t, spec))
		}
	}
}

func TestHostStateCommands(t *testing.T) {
	path := writeState(t)
	state := func(host string, want table.State) func(*testing.T, *table.Config) {
		return func(t *testing.T, cfg *table.Config) {
			t.Helper()
			for _, tb := range cfg.Tables {
				if b := tb.FindBackend(host); b != nil && b.State != want {
					t.Fatalf("%s is %s in %s, want %s", host, b.State, tb.Name, want)
				}
			}
		}
	}
	runSteps(t, path, []step{
		{name: "drain", args: []string{"drain", "proxy-2", "--reason", "kernel upgrade", "--by", "alice", "--state", path},
			wantOut: []string{`proxy-2 (10.1.0.12): active → draining in github-api, git, by alice: "kernel upgrade"`,
				"table github-api:", "0 lose flows", "table git:", "active → draining"},
			check: func(t *testing.T, cfg *table.Config) {
				b := backend(t, cfg, "git", "proxy-2")
				if b.State != table.Draining || b.By != "alice" || b.Reason != "kernel upgrade" || time.Since(b.At) > time.Hour {
					t.Fatalf("recorded %+v", b)
				}
			}},
		{name: "second drain is refused and names the holder", args: []string{"drain", "proxy-3", "--reason", "disk", "--state", path}, wantErr: true,
			wantStderr: []string{"proxy-3 (10.1.0.13) cannot go to draining now", `proxy-2 (10.1.0.12) is draining (by alice since`, `"kernel upgrade"`, "holds the table's one change slot", "--force"},
			check:      state("proxy-3", table.Active)},
		{name: "drain needs a reason", args: []string{"drain", "proxy-4", "--state", path}, wantErr: true, wantStderr: []string{"needs --reason"}},
		{name: "illegal transition names the legal ones", args: []string{"remove", "proxy-3", "--reason", "x", "--state", path}, wantErr: true,
			wantStderr: []string{"proxy-3 (10.1.0.13) is active and cannot go to inactive: from active a host can go to draining (glbctl drain)"}},
		{name: "dry run writes nothing", args: []string{"remove", "proxy-2", "--reason", "dead", "--dry-run", "--state", path},
			wantOut: []string{"dry run, nothing written: would move proxy-2 (10.1.0.12): draining → inactive"}, check: state("proxy-2", table.Draining)},
		{name: "same state is a no-op", args: []string{"drain", "10.1.0.12", "--reason", "again", "--state", path},
			wantOut: []string{"proxy-2 (10.1.0.12) is already draining: nothing to do"}},
		{name: "unknown host lists the known ones", args: []string{"drain", "proxy-9", "--reason", "x", "--state", path}, wantErr: true,
			wantStderr: []string{`unknown host "proxy-9"`, "git-1 (10.1.0.21)"}},
		{name: "force overrides the rule and is logged", args: []string{"drain", "proxy-3", "--reason", "disk dying", "--force", "--by", "bob", "--state", path},
			wantOut:    []string{"FORCED over the one-at-a-time rule"},
			wantStderr: []string{"one-at-a-time rule overridden with --force", "by=bob"},
			check: func(t *testing.T, cfg *table.Config) {
				if r := backend(t, cfg, "github-api", "proxy-3").Reason; !strings.Contains(r, "disk dying [forced over the one-at-a-time rule: proxy-2 draining in github-api]") {
					t.Fatalf("reason %q", r)
				}
			}},
		{name: "status shows both holders", args: []string{"status", "--state", path},
			wantOut: []string{"change slot: held by proxy-2, proxy-3 (more than one"}},
		{name: "activate ends a drain", args: []string{"activate", "proxy-3", "--state", path}, check: state("proxy-3", table.Active)},
		{name: "remove a drained host", args: []string{"remove", "proxy-2", "--reason", "decommissioned", "--state", path}, check: state("proxy-2", table.Inactive)},
		{name: "a removed host comes back through fill", args: []string{"fill", "proxy-2", "--state", path}, check: state("proxy-2", table.Filling)},
		{name: "and is activated", args: []string{"activate", "proxy-2", "--state", path}, check: state("proxy-2", table.Active)},
	})

	// $GLB_STATE and $USER are the defaults.
	t.Setenv(consul.EnvState, path)
	t.Setenv("SUDO_USER", "")
	t.Setenv("USER", "carol")
	runSteps(t, path, []step{
		{name: "defaults from the environment", args: []string{"drain", "git-1", "--reason", "env"},
			wantOut: []string{"by carol"}, check: func(t *testing.T, cfg *table.Config) {
				if backend(t, cfg, "git", "git-1").By != "carol" {
					t.Fatal("by is not $USER")
				}
			}},
	})
}

func TestStatus(t *testing.T) {
	path := writeState(t)
	if _, _, err := glbctl(t, "drain", "proxy-2", "--reason", "kernel upgrade", "--by", "alice", "--state", path); err != nil {
		t.Fatal(err)
	}
	out, _, err := glbctl(t, "status", "--state", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"state " + path, "health: from the config", "table github-api  tcp 10.100.0.0/29:443  2 hops",
		"HOST", "PRIMARY", "IN HOPS", "LAST CHANGE", "draining", "alice", "kernel upgrade", "change slot: held by proxy-2", "table git"} {
		if !strings.Contains(out, w) {
			t.Fatalf("status lacks %q:\n%s", w, out)
		}
	}

	var s status
	out, _, err = glbctl(t, "status", "--state", path, "--json", "--table", "github-api")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Tables) != 1 || len(s.Tables[0].Hosts) != 4 {
		t.Fatalf("json status %+v", s)
	}
	sum := 0.0
	for _, h := range s.Tables[0].Hosts {
		sum += h.Primary
		if h.Name == "proxy-2" && (h.Primary != 0 || h.InHops == 0 || h.State != "draining") {
			t.Fatalf("a draining host: %+v (it must be primary nowhere, still a second-chance hop)", h)
		}
	}
	if sum < 0.999 || sum > 1.001 {
		t.Fatalf("primary shares add up to %v", sum)
	}

	// Live health from two directors that disagree about proxy-3.
	st := consul.NewFileStore(path, consul.Options{})
	cfg := loadState(t, path)
	ip3 := backend(t, cfg, "github-api", "proxy-3").IP
	ctx := context.Background()
	st.PublishHealth(ctx, consul.HealthReport{Source: "director-a", At: time.Now(), Backends: map[netip.Addr]bool{ip3: false}})
	st.PublishHealth(ctx, consul.HealthReport{Source: "director-b", At: time.Now(), Backends: map[netip.Addr]bool{ip3: true}})
	st.PublishHealth(ctx, consul.HealthReport{Source: "director-old", At: time.Now().Add(-time.Hour), Backends: map[netip.Addr]bool{}})
	out, _, err = glbctl(t, "status", "--state", path, "--table", "github-api")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "health: live, from director-a") || strings.Contains(out, "director-old") ||
		!strings.Contains(out, "UNHEALTHY*") || !strings.Contains(out, "directors disagree") {
		t.Fatalf("live health not shown:\n%s", out)
	}
}

func TestTableDiffAgainstState(t *testing.T) {
	path := writeState(t)
	before, _ := os.ReadFile(path)
	runSteps(t, path, []step{
		{name: "preview a drain", args: []string{"table", "diff", "--state", path, "--drain", "proxy-2"},
			wantOut: []string{"preview: proxy-2 active → draining in github-api, git", "table github-api:", "0 lose flows", "table git:"}},
		{name: "two changes at once", args: []string{"table", "diff", "--state", path, "--drain", "proxy-2", "--fill", "proxy-3"}, wantErr: true,
			wantStderr: []string{"one change at a time"}},
		{name: "nothing to compare", args: []string{"table", "diff", "--state", path}, wantErr: true, wantStderr: []string{"pending change"}},
	})
	if now, _ := os.ReadFile(path); string(now) != string(before) {
		t.Fatal("a preview wrote the state")
	}
	glbctl(t, "drain", "proxy-2", "--reason", "r", "--state", path)
	runSteps(t, path, []step{
		{name: "a refused change is reported", args: []string{"table", "diff", "--state", path, "--drain", "proxy-3"}, wantErr: true,
			wantStderr: []string{"glbctl drain would refuse this", "proxy-2 (10.1.0.12) is draining"}},
		{name: "and previewed with --force", args: []string{"table", "diff", "--state", path, "--drain", "proxy-3", "--force"},
			wantOut: []string{"preview: proxy-3 active → draining in github-api"}},
		{name: "against a proposed file", args: []string{"table", "diff", "--state", path, "--to", writeState(t), "--table", "git"},
			wantOut: []string{"table git:", "draining → active"}},
	})
}

func TestStateImportExport(t *testing.T) {
	src := writeState(t)
	dst := filepath.Join(t.TempDir(), "new.json")
	runSteps(t, dst, []step{
		{name: "dry-run import into nothing", args: []string{"state", "import", src, "--state", dst, "--dry-run"},
			wantOut: []string{"dry run, nothing written", "table github-api is new"}},
		{name: "import creates the state", args: []string{"state", "import", src, "--state", dst},
			wantOut: []string{"imported " + src}},
	})
	out, _, err := glbctl(t, "state", "export", "--state", dst)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := loadState(t, src).Marshal()
	if out != string(want) {
		t.Fatalf("export differs from the imported file:\n%s", out)
	}
	if _, _, err := glbctl(t, "state", "import", "/nonexistent.json", "--state", dst); err == nil {
		t.Fatal("importing a missing file succeeded")
	}
}
