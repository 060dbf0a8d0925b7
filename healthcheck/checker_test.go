package healthcheck

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glb-project/glb/director/table"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock drives the check schedule: timers fire only when the test
// advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{at: f.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- f.now
		return t.ch, func() bool { return false }
	}
	f.timers = append(f.timers, t)
	return t.ch, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, o := range f.timers {
			if o == t {
				f.timers = append(f.timers[:i], f.timers[i+1:]...)
				return true
			}
		}
		return false
	}
}

// advance moves time on and fires the timers that are due.
func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.timers[:0]
	for _, t := range f.timers {
		if t.at.After(f.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- f.now
	}
	f.timers = kept
}

func (f *fakeClock) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// backend is a real HTTP server on a loopback address whose health
// endpoint answers with the status the test sets, counting requests.
type backend struct {
	ip     netip.Addr
	port   int
	status atomic.Int32
	hits   atomic.Int32
}

func newBackend(tb testing.TB, ip string) *backend {
	tb.Helper()
	b := &backend{ip: netip.MustParseAddr(ip)}
	b.status.Store(200)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		tb.Fatal(err)
	}
	b.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.WriteHeader(int(b.status.Load()))
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return b
}

func (b *backend) spec(state table.State) table.Backend {
	return table.Backend{IP: b.ip, State: state,
		Healthchecks: table.Healthchecks{HTTP: b.port, HTTPURI: "/_glb/health"}}
}

func config(tables ...[]table.Backend) *table.Config {
	cfg := &table.Config{}
	for i, bs := range tables {
		cfg.Tables = append(cfg.Tables, table.Spec{Name: fmt.Sprintf("t%d", i), Backends: bs})
	}
	return cfg
}

// harness runs a Checker on a fake clock and sees every result it takes.
type harness struct {
	c       *Checker
	clk     *fakeClock
	reg     *prometheus.Registry
	results chan Status
	stop    func()
}

func newHarness(tb testing.TB, cfg *table.Config, mod func(*Checker)) *harness {
	tb.Helper()
	h := &harness{clk: newFakeClock(), reg: prometheus.NewPedanticRegistry(), results: make(chan Status, 100)}
	h.c = &Checker{Registerer: h.reg, Log: slog.New(slog.NewTextHandler(testWriter{tb}, nil))}
	h.c.clock = h.clk
	h.c.afterResult = func(s Status) { h.results <- s }
	if mod != nil {
		mod(h.c)
	}
	h.c.Update(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.c.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("Run: %v", err)
			}
		})
	}
	tb.Cleanup(h.stop)
	return h
}

// testWriter sends log lines to the test log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// next waits for the next result.
func (h *harness) next(tb testing.TB) Status {
	tb.Helper()
	select {
	case s := <-h.results:
		return s
	case <-time.After(10 * time.Second):
		tb.Fatal("no health check result within 10s")
	}
	return Status{}
}

// round waits for one result from each of n checks, in any order.
func (h *harness) round(tb testing.TB, n int) map[Check]Status {
	tb.Helper()
	got := map[Check]Status{}
	for range n {
		s := h.next(tb)
		got[s.Check] = s
	}
	if len(got) != n {
		tb.Fatalf("a round of %d results came from %d checks", n, len(got))
	}
	return got
}

// tick waits until all n checks wait for their next turn, then lets one
// interval pass.
func (h *harness) tick(tb testing.TB, n int) {
	tb.Helper()
	nstest.WaitFor(tb, 10*time.Second, fmt.Sprintf("%d checks to wait for their next turn", n), func() bool {
		return h.clk.pending() == n
	})
	h.clk.advance(DefaultInterval)
}

// change returns the snapshot on Changes, failing if there is none.
func (h *harness) change(tb testing.TB) table.Health {
	tb.Helper()
	select {
	case s := <-h.c.Changes():
		return s
	default:
		tb.Fatal("no health change was reported")
	}
	return nil
}

// noChange fails if a snapshot is waiting on Changes.
func (h *harness) noChange(tb testing.TB) {
	tb.Helper()
	select {
	case s := <-h.c.Changes():
		tb.Fatalf("unexpected health change: %v", s)
	default:
	}
}

func health(kv ...any) table.Health {
	h := table.Health{}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i].(*backend).ip] = kv[i+1].(bool)
	}
	return h
}

func wantHealth(tb testing.TB, got, want table.Health) {
	tb.Helper()
	if !maps.Equal(got, want) {
		tb.Fatalf("health %v, want %v", got, want)
	}
}

func TestFirstResultCountsAtOnceThenThreeInARow(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	a.status.Store(500)
	h := newHarness(t, config([]table.Backend{a.spec(table.Active)}), nil)

	s := h.next(t)
	if !s.Known || s.Healthy || s.Reason != "http status 500" {
		t.Fatalf("first result: %+v", s)
	}
	wantHealth(t, h.change(t), health(a, false))

	a.status.Store(200)
	for i := 1; i <= 2; i++ {
		h.tick(t, 1)
		s := h.next(t)
		if s.Healthy || !s.LastPassed || s.Streak != i {
			t.Fatalf("pass %d: %+v", i, s)
		}
		h.noChange(t)
	}
	h.tick(t, 1)
	if s := h.next(t); !s.Healthy || s.Streak != 0 {
		t.Fatalf("third pass: %+v", s)
	}
	wantHealth(t, h.change(t), health(a, true))

	// Two fails, a pass, then three fails: only the third fail in a row
	// takes the backend down.
	for i, status := range []int32{500, 500, 200, 500, 500} {
		a.status.Store(status)
		h.tick(t, 1)
		if s := h.next(t); !s.Healthy {
			t.Fatalf("result %d (%d) took the backend down: %+v", i, status, s)
		}
		h.noChange(t)
	}
	h.tick(t, 1)
	if s := h.next(t); s.Healthy {
		t.Fatalf("third fail in a row: %+v", s)
	}
	wantHealth(t, h.change(t), health(a, false))
	wantHealth(t, h.c.Snapshot(), health(a, false))

	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(fmt.Sprintf(`
# HELP glb_healthcheck_flaps_total Changes of a backend's health (healthy to unhealthy or back), each of which rebuilt the table.
# TYPE glb_healthcheck_flaps_total counter
glb_healthcheck_flaps_total{backend="127.0.0.1"} 2
# HELP glb_healthcheck_backend_healthy Health of each checked backend as the forwarding table sees it: 1 when all its checks pass.
# TYPE glb_healthcheck_backend_healthy gauge
glb_healthcheck_backend_healthy{backend="127.0.0.1"} 0
# HELP glb_healthcheck_results_total Health check results, by backend, check type, port, URI (HTTP only) and result (pass or fail), before damping.
# TYPE glb_healthcheck_results_total counter
glb_healthcheck_results_total{backend="127.0.0.1",check="http",port="%[1]d",result="fail",uri="/_glb/health"} 6
glb_healthcheck_results_total{backend="127.0.0.1",check="http",port="%[1]d",result="pass",uri="/_glb/health"} 4
`, a.port)), "glb_healthcheck_flaps_total", "glb_healthcheck_backend_healthy", "glb_healthcheck_results_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(h.c.m.duration); n != 1 {
		t.Fatalf("%d latency histograms, want 1", n)
	}
}

func TestBackendIsHealthyWhenAllItsChecksPass(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	b := newBackend(t, "127.0.0.2")
	closed := closedPort(t)
	aSpec, bSpec := a.spec(table.Active), b.spec(table.Active)
	aSpec.Healthchecks.TCP = a.port             // open: the HTTP server
	bSpec.Healthchecks.TCP = int(closed.Port()) // nothing listens on 127.0.0.2 there
	h := newHarness(t, config([]table.Backend{aSpec, bSpec}), nil)

	h.round(t, 4)
	wantHealth(t, h.c.Snapshot(), health(a, true, b, false))
	var bReason string
	for _, s := range h.c.Status() {
		if s.Backend == b.ip && s.Kind == TCP {
			bReason = s.Reason
		}
	}
	if bReason != "connection refused" {
		t.Fatalf("b's TCP check: reason %q", bReason)
	}
}

func TestUnknownUntilEveryCheckHasReported(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	spec := a.spec(table.Active)
	spec.Healthchecks.TCP = a.port
	h := newHarness(t, config([]table.Backend{spec}), nil)
	h.next(t)
	if got := h.c.Snapshot(); len(got) != 0 {
		t.Fatalf("one of two checks passed, health already %v", got)
	}
	h.next(t)
	wantHealth(t, h.change(t), health(a, true))
}

func TestInactiveBackendsAreNotChecked(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	off := newBackend(t, "127.0.0.2")
	h := newHarness(t, config([]table.Backend{a.spec(table.Active), off.spec(table.Inactive)}), nil)
	h.next(t)
	h.tick(t, 1)
	h.next(t)
	if n := off.hits.Load(); n != 0 {
		t.Fatalf("inactive backend got %d health checks", n)
	}
	if st := h.c.Status(); len(st) != 1 || st[0].Backend != a.ip {
		t.Fatalf("status lists %v", st)
	}
	wantHealth(t, h.c.Snapshot(), health(a, true))
}

func TestSharedBackendIsCheckedOncePerDistinctCheck(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	other := a.spec(table.Draining)
	other.Healthchecks.HTTPURI = "/other"
	h := newHarness(t, config(
		[]table.Backend{a.spec(table.Active)},
		[]table.Backend{a.spec(table.Filling)}, // same checks
		[]table.Backend{other},                 // another URI: a second check
	), nil)
	h.round(t, 2)
	if st := h.c.Status(); len(st) != 2 {
		t.Fatalf("%d checks for one backend with two distinct checks: %v", len(st), st)
	}
	h.tick(t, 2)
	h.round(t, 2)
	if n := a.hits.Load(); n != 4 {
		t.Fatalf("%d requests in two rounds of two checks", n)
	}
}

// TestChecksOnOnePortKeepTheirOwnSeries: two HTTP checks of one backend
// and port that differ only in URI have a series each, and removing one
// leaves the other's series alone.
func TestChecksOnOnePortKeepTheirOwnSeries(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	other := a.spec(table.Active)
	other.Healthchecks.HTTPURI = "/other"
	h := newHarness(t, config([]table.Backend{a.spec(table.Active)}, []table.Backend{other}), nil)
	h.round(t, 2)
	want := func(uris ...string) {
		t.Helper()
		var b strings.Builder
		b.WriteString("# HELP glb_healthcheck_check_healthy Damped state of each health check (backend, check type, port, URI for HTTP): 1 healthy, 0 failing.\n# TYPE glb_healthcheck_check_healthy gauge\n")
		for _, u := range uris {
			fmt.Fprintf(&b, "glb_healthcheck_check_healthy{backend=\"127.0.0.1\",check=\"http\",port=\"%d\",uri=%q} 1\n", a.port, u)
		}
		b.WriteString("# HELP glb_healthcheck_results_total Health check results, by backend, check type, port, URI (HTTP only) and result (pass or fail), before damping.\n# TYPE glb_healthcheck_results_total counter\n")
		for _, u := range uris {
			fmt.Fprintf(&b, "glb_healthcheck_results_total{backend=\"127.0.0.1\",check=\"http\",port=\"%d\",result=\"pass\",uri=%q} 1\n", a.port, u)
		}
		if err := testutil.GatherAndCompare(h.reg, strings.NewReader(b.String()), "glb_healthcheck_results_total", "glb_healthcheck_check_healthy"); err != nil {
			t.Fatal(err)
		}
		if n := testutil.CollectAndCount(h.c.m.duration); n != len(uris) {
			t.Fatalf("%d latency histograms, want %d", n, len(uris))
		}
	}
	want("/_glb/health", "/other")

	// /other leaves the config: its series go, /_glb/health's stay.
	h.c.Update(config([]table.Backend{a.spec(table.Active)}))
	want("/_glb/health")
}

func TestUpdateKeepsUnchangedChecks(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	b := newBackend(t, "127.0.0.2")
	c := newBackend(t, "127.0.0.3")
	h := newHarness(t, config([]table.Backend{a.spec(table.Active), b.spec(table.Active)}), nil)
	h.round(t, 2)
	wantHealth(t, h.change(t), health(a, true, b, true))

	a.status.Store(500)
	h.tick(t, 2)
	h.round(t, 2) // a: one fail, still healthy

	// b leaves, c arrives; a is unchanged and keeps its count.
	// The update's own snapshot (without b) may be replaced by the one
	// c's first result makes before the test reads it: Changes keeps the
	// latest.
	h.c.Update(config([]table.Backend{a.spec(table.Active), c.spec(table.Active)}))
	if s := h.next(t); s.Backend != c.ip || !s.Healthy {
		t.Fatalf("new backend's first result: %+v", s)
	}
	wantHealth(t, h.change(t), health(a, true, c, true))
	for _, s := range h.c.Status() {
		if s.Backend == a.ip && (s.Streak != 1 || s.Results != 2 || !s.Healthy) {
			t.Fatalf("a lost its state across the update: %+v", s)
		}
	}
	if got := testutil.CollectAndCount(h.c.m.results); got != 3 {
		t.Fatalf("%d result series after b left, want 3 (a pass, a fail, c pass)", got)
	}
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(`
# HELP glb_healthcheck_backend_healthy Health of each checked backend as the forwarding table sees it: 1 when all its checks pass.
# TYPE glb_healthcheck_backend_healthy gauge
glb_healthcheck_backend_healthy{backend="127.0.0.1"} 1
glb_healthcheck_backend_healthy{backend="127.0.0.3"} 1
`), "glb_healthcheck_backend_healthy"); err != nil {
		t.Fatal(err)
	}

	// a's next two fails make three in a row across the update.
	h.tick(t, 2)
	h.round(t, 2)
	h.noChange(t)
	h.tick(t, 2)
	h.round(t, 2)
	wantHealth(t, h.change(t), health(a, false, c, true))

	// Draining a host to inactive stops its checks and drops it.
	h.c.Update(config([]table.Backend{a.spec(table.Inactive), c.spec(table.Active)}))
	wantHealth(t, h.change(t), health(c, true))
}

func TestRunStopsEveryGoroutine(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	spec := a.spec(table.Active)
	spec.Healthchecks.TCP = a.port
	before := runtime.NumGoroutine()
	h := newHarness(t, config([]table.Backend{spec}), nil)
	h.round(t, 2)
	h.stop()
	nstest.WaitFor(t, 10*time.Second, "the checker's goroutines to exit", func() bool {
		return runtime.NumGoroutine() <= before
	})
	if n, err := testutil.GatherAndCount(h.reg); err != nil || n != 0 {
		t.Fatalf("after Run returned, %d series are still registered (%v)", n, err)
	}
	if err := h.c.Run(context.Background()); err == nil {
		t.Fatal("a second Run did not fail")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		c    *Checker
		want string
	}{
		{"the zero value is valid", &Checker{}, ""},
		{"a timeout above the interval", &Checker{Interval: time.Second, Timeout: 2 * time.Second}, "longer than the interval"},
		{"a timeout above the default interval", &Checker{Timeout: 3 * time.Second}, "longer than the interval 2s"},
		{"a negative interval", &Checker{Interval: -time.Second}, "negative"},
		{"a negative fall", &Checker{Fall: -1}, "rise 0 / fall -1"},
		{"an IPv6 source", &Checker{SrcIP: netip.MustParseAddr("fd00::1")}, "not IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestTwoCheckersOnOneRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	first := &Checker{Registerer: reg}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	nstest.WaitFor(t, 10*time.Second, "the first checker to register", func() bool {
		n, _ := testutil.GatherAndCount(reg)
		return n > 0
	})
	err := (&Checker{Registerer: reg}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("second checker on the registry: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// daemonHealth is the director daemon's health source interface
// (director/daemon.Health), restated so this package's tests do not
// depend on the daemon.
type daemonHealth interface {
	Snapshot() table.Health
	Watch(ctx context.Context, changed chan<- struct{})
}

var _ daemonHealth = (*Checker)(nil)

func TestWatchSignalsEveryChange(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	a.status.Store(500)
	h := newHarness(t, config([]table.Backend{a.spec(table.Active)}), nil)
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() { h.c.Watch(ctx, changed); close(done) }()
	defer func() { cancel(); <-done }()

	h.next(t)
	waitSignal(t, changed)
	wantHealth(t, h.c.Snapshot(), health(a, false))
	a.status.Store(200)
	for range 3 {
		h.tick(t, 1)
		h.next(t)
	}
	waitSignal(t, changed)
	wantHealth(t, h.c.Snapshot(), health(a, true))
}

func waitSignal(tb testing.TB, ch <-chan struct{}) {
	tb.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		tb.Fatal("Watch did not signal the change")
	}
}

func TestChangesKeepsOnlyTheLatestSnapshot(t *testing.T) {
	c := &Checker{}
	ip1, ip2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	c.mu.Lock()
	c.init()
	c.backends[ip1] = backendState{known: true, healthy: true}
	c.publish()
	c.backends[ip2] = backendState{known: true, healthy: false}
	c.publish()
	c.publish() // no change: nothing sent
	c.mu.Unlock()
	wantHealth(t, <-c.Changes(), table.Health{ip1: true, ip2: false})
	select {
	case s := <-c.Changes():
		t.Fatalf("a second snapshot %v was queued", s)
	default:
	}
}

func TestCheckAddedToAHealthyBackend(t *testing.T) {
	a := newBackend(t, "127.0.0.1")
	h := newHarness(t, config([]table.Backend{a.spec(table.Active)}), nil)
	h.next(t)
	wantHealth(t, h.change(t), health(a, true))

	// A TCP check to a closed port joins: the backend stays healthy until
	// it reports, and its first (failing) result counts at once.
	spec := a.spec(table.Active)
	spec.Healthchecks.TCP = int(closedPort(t).Port())
	h.c.Update(config([]table.Backend{spec}))
	h.noChange(t)
	wantHealth(t, h.c.Snapshot(), health(a, true))
	if s := h.next(t); s.Kind != TCP || s.Healthy {
		t.Fatalf("new check's first result: %+v", s)
	}
	wantHealth(t, h.change(t), health(a, false))
}

// TestChecksSpreadWithinTheInterval starts many checks together and looks
// at when each asks to run next: never later than one interval, never
// earlier than nine tenths of it, and not all at the same instant.
func TestChecksSpreadWithinTheInterval(t *testing.T) {
	const n = 16
	var bs []table.Backend
	for i := range n {
		bs = append(bs, newBackend(t, fmt.Sprintf("127.0.0.%d", i+1)).spec(table.Active))
	}
	h := newHarness(t, config(bs), nil)
	h.round(t, n)
	nstest.WaitFor(t, 10*time.Second, "every check to wait for its next turn", func() bool { return h.clk.pending() == n })
	h.clk.mu.Lock()
	start := h.clk.now
	at := map[time.Time]bool{}
	for _, tm := range h.clk.timers {
		wait := tm.at.Sub(start)
		if wait > DefaultInterval || wait < DefaultInterval*9/10 {
			t.Errorf("a check waits %v, outside [0.9, 1] × %v", wait, DefaultInterval)
		}
		at[tm.at] = true
	}
	h.clk.mu.Unlock()
	if len(at) < 2 {
		t.Errorf("%d checks all wait until the same instant", n)
	}
}

// TestChecked lists the backends that get a check: once each, in address
// order, not inactive ones nor ones without a check.
func TestChecked(t *testing.T) {
	b := func(ip string, st table.State, hc table.Healthchecks) table.Backend {
		return table.Backend{IP: netip.MustParseAddr(ip), State: st, Healthchecks: hc}
	}
	cfg := config(
		[]table.Backend{b("10.0.0.3", table.Active, table.Healthchecks{TCP: 80}), b("10.0.0.1", table.Draining, table.Healthchecks{GUE: 19523}),
			b("10.0.0.2", table.Active, table.Healthchecks{}), b("10.0.0.4", table.Inactive, table.Healthchecks{TCP: 80})},
		[]table.Backend{b("10.0.0.3", table.Active, table.Healthchecks{HTTP: 8080})},
	)
	got := Checked(cfg)
	want := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.3")}
	if !slices.Equal(got, want) {
		t.Fatalf("Checked = %v, want %v", got, want)
	}
}
