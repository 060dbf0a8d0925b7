package consul

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glb-project/glb/director/table"
	"github.com/prometheus/client_golang/prometheus"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o640); err != nil {
		t.Fatal(err)
	}
}

func drain(host, reason string) func(*table.Config) error {
	return func(c *table.Config) error {
		_, err := Change{Host: host, To: table.Draining, Reason: reason, By: "alice", At: t0}.Apply(c)
		return err
	}
}

func TestFileUpdate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "forwarding_table.json")
	writeFile(t, path, testState)
	st := NewFileStore(path, Options{})
	ctx := context.Background()

	before, after, err := st.Update(ctx, drain("proxy-2", "kernel upgrade"))
	if err != nil {
		t.Fatal(err)
	}
	if before.Tables[0].FindBackend("proxy-2").State != table.Active || after.Tables[0].FindBackend("proxy-2").State != table.Draining {
		t.Fatal("before/after do not show the drain")
	}
	got, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := got.Tables[0].FindBackend("proxy-2")
	if b.State != table.Draining || b.Reason != "kernel upgrade" || b.By != "alice" || !b.At.Equal(t0) {
		t.Fatalf("stored backend: %+v", b)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want the original 0640", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}

	// A refused change writes nothing.
	data, _ := os.ReadFile(path)
	_, _, err = st.Update(ctx, drain("proxy-3", "second"))
	var se *SlotError
	if !errors.As(err, &se) {
		t.Fatalf("second drain: %v", err)
	}
	if now, _ := os.ReadFile(path); string(now) != string(data) {
		t.Fatal("a refused update changed the file")
	}

	// A change that does not validate is refused.
	_, _, err = st.Update(ctx, func(c *table.Config) error { c.Tables[0].Hops = 99; return nil })
	if err == nil || !strings.Contains(err.Error(), "does not validate") {
		t.Fatalf("invalid change: %v", err)
	}
}

func TestFileUpdateFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.json")
	link := filepath.Join(dir, "forwarding_table.json")
	writeFile(t, real, testState)
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := NewFileStore(link, Options{}).Update(context.Background(), drain("proxy-1", "r")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the update replaced the symlink with a file")
	}
	if data, _ := os.ReadFile(real); !strings.Contains(string(data), "draining") {
		t.Fatal("the update did not reach the link's target")
	}
}

// Two writers that each drain a different host at the same moment: the
// lock and the re-check make exactly one of them win; the other sees the
// first drain and is refused by the one-at-a-time rule.
func TestFileConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	writeFile(t, path, testState)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, host := range []string{"proxy-2", "proxy-3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = NewFileStore(path, Options{}).Update(context.Background(), drain(host, "race"))
		}()
	}
	wg.Wait()
	var se *SlotError
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.As(err, &se):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d writers succeeded (errors %v), want exactly 1", ok, errs)
	}
	cfg, _ := NewFileStore(path, Options{}).Load(context.Background())
	n := 0
	for _, b := range cfg.Tables[0].Backends {
		if b.State != table.Active {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d hosts are not active after the race, want 1", n)
	}
}

// A writer that does not take the lock (an editor) changes the file
// between our read and our rename: the update notices and starts over.
func TestFileUpdateSeesForeignWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	writeFile(t, path, testState)
	st := NewFileStore(path, Options{})
	calls := 0
	_, after, err := st.Update(context.Background(), func(c *table.Config) error {
		calls++
		if calls == 1 {
			// The editor drains proxy-4 behind our back.
			edited := strings.Replace(testState, `"10.1.0.14", "name": "proxy-4", "state": "active"`, `"10.1.0.14", "name": "proxy-4", "state": "draining"`, 1)
			writeFile(t, path, edited)
		}
		_, err := Change{Host: "proxy-2", To: table.Draining, Reason: "r"}.Apply(c)
		return err
	})
	var se *SlotError
	if !errors.As(err, &se) || calls != 2 || after != nil {
		t.Fatalf("after a foreign write: calls=%d err=%v; want the retry to see proxy-4 draining and refuse", calls, err)
	}
}

func TestFileWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	writeFile(t, path, testState)
	reg := prometheus.NewPedanticRegistry()
	// A long poll interval: changes must arrive through inotify.
	st := NewFileStore(path, Options{Registerer: reg, PollInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan *table.Config, 10)
	done := make(chan error)
	go func() { done <- st.Watch(ctx, func(c *table.Config) { got <- c }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	next := func(what string) *table.Config {
		t.Helper()
		select {
		case c := <-got:
			return c
		case <-time.After(30 * time.Second):
			t.Fatalf("no state delivered: %s", what)
			return nil
		}
	}
	if c := next("initial"); len(c.Tables) != 2 {
		t.Fatalf("initial state: %d tables", len(c.Tables))
	}

	// A write through the store is delivered.
	if _, _, err := NewFileStore(path, Options{}).Update(ctx, drain("proxy-2", "r")); err != nil {
		t.Fatal(err)
	}
	if c := next("after a drain"); c.Tables[0].FindBackend("proxy-2").State != table.Draining {
		t.Fatal("watch delivered a state without the drain")
	}

	// A rewrite with the same content is not a change; an invalid file keeps
	// the last good state and marks it stale.
	data, _ := os.ReadFile(path)
	writeFile(t, path, string(data))
	writeFile(t, path, `{"tables": [{"name": "broken"}]}`)
	eventually(t, "the invalid file to be noticed", func() bool { return gauge(t, reg, "glb_state_invalid") == 1 })
	if gauge(t, reg, "glb_state_stale") != 1 || !st.Status().Stale || st.Status().Err == nil {
		t.Fatal("an invalid file did not mark the state stale")
	}
	select {
	case c := <-got:
		t.Fatalf("delivered a state after a touch or an invalid write: %d tables", len(c.Tables))
	default:
	}

	// Fixing the file delivers it and clears the staleness.
	writeFile(t, path, testState)
	if c := next("after the fix"); c.Tables[0].FindBackend("proxy-2").State != table.Active {
		t.Fatal("fixed state not delivered")
	}
	if gauge(t, reg, "glb_state_stale") != 0 || gauge(t, reg, "glb_state_invalid") != 0 {
		t.Fatal("staleness not cleared")
	}

	// An empty state after a full one is refused.
	writeFile(t, path, `{"tables": []}`)
	eventually(t, "the empty state to be refused", func() bool { return gauge(t, reg, "glb_state_errors_total", "kind", "empty") == 1 })

	// Removing the file is a read error; the last good state stays.
	os.Remove(path)
	eventually(t, "the missing file to be noticed", func() bool { return gauge(t, reg, "glb_state_errors_total", "kind", "read") >= 1 })
	if gauge(t, reg, "glb_state_changes_total") != 3 {
		t.Fatalf("changes = %v, want 3 (initial, drain, fix)", gauge(t, reg, "glb_state_changes_total"))
	}
}

func TestFileHealthReports(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	writeFile(t, path, testState)
	st := NewFileStore(path, Options{})
	ctx := context.Background()
	if r, err := st.HealthReports(ctx); err != nil || r != nil {
		t.Fatalf("no reports yet: %v %v", r, err)
	}
	cfg := parseState(t, testState)
	ip := cfg.Tables[0].Backends[1].IP
	for _, src := range []string{"director-b", "director-a"} {
		if err := st.PublishHealth(ctx, HealthReport{Source: src, At: t0, Backends: map[netip.Addr]bool{ip: src == "director-a"}}); err != nil {
			t.Fatal(err)
		}
	}
	reports, err := st.HealthReports(ctx)
	if err != nil || len(reports) != 2 || reports[0].Source != "director-a" {
		t.Fatalf("reports %+v %v", reports, err)
	}
	if h := LiveHealth(reports, t0, 0); h[ip] {
		t.Fatal("one director says unhealthy: the merged view must say unhealthy")
	}
	if d := Disagreements(reports, t0, 0); len(d) != 1 || d[0] != ip {
		t.Fatalf("disagreements %v", d)
	}
	if err := st.PublishHealth(ctx, HealthReport{Source: "../escape"}); err == nil {
		t.Fatal("a source with a path was accepted")
	}
}
