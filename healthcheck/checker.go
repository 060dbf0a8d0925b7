package healthcheck

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/glb-project/glb/director/table"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of DESIGN.md §6.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = time.Second
	DefaultRise     = 3
	DefaultFall     = 3
)

// Checker runs the health checks of a forwarding-table config and reports
// the resulting table.Health. Its zero value is ready to use: set the
// fields, call Update with the config and Run, and read Changes.
//
//	hc := &healthcheck.Checker{SrcIP: src, Log: log, Registerer: reg}
//	hc.Update(cfg) // and again on every config reload
//	go hc.Run(ctx)
//	for h := range hc.Changes() {
//		rebuild(cfg, h) // table.Build(spec, h) for every table
//	}
//
// Set the fields before calling any method; they must not change after.
type Checker struct {
	// Interval is the time between the starts of two probes of one check.
	// Zero means 2s.
	Interval time.Duration
	// Timeout bounds one probe; a probe that takes longer fails. It must
	// not exceed Interval. Zero means 1s.
	Timeout time.Duration
	// Rise and Fall are how many passing (failing) results in a row turn a
	// failing (passing) check around. A check's first result counts at
	// once. Zero means 3.
	Rise, Fall int
	// SrcIP is the source of GUE probes, outer and inner: the director's
	// --src-ip, which must be an address of this host, since the echo
	// replies come back to it. The invalid Addr lets the kernel pick the
	// source of the route to each backend.
	SrcIP netip.Addr
	// Log gets a line for every change of a check's or a backend's
	// health. Nil discards.
	Log *slog.Logger
	// Registerer gets the glb_healthcheck_* metrics while Run runs. Nil:
	// no metrics.
	Registerer prometheus.Registerer

	clock       clock        // nil: the real one
	afterResult func(Status) // tests: called after each result is applied

	mu       sync.Mutex
	inited   bool
	log      *slog.Logger
	runCtx   context.Context // set while Run runs
	stopped  bool
	targets  map[Check]*target
	backends map[netip.Addr]backendState
	health   table.Health // the snapshot last sent
	changes  chan table.Health
	wg       sync.WaitGroup
	m        *metrics
	gue      *gueProber
	client   *http.Client

	interval, timeout time.Duration
	rise, fall        int
}

// target is one running check.
type target struct {
	check  Check
	cancel context.CancelFunc
	damp   damper
	status Status
}

// backendState is a backend's health as last reported.
type backendState struct {
	known, healthy bool
}

func (b backendState) String() string {
	switch {
	case !b.known:
		return "unknown"
	case b.healthy:
		return "healthy"
	}
	return "unhealthy"
}

// Validate checks the settings. Run calls it.
func (c *Checker) Validate() error {
	var errs []error
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("health check interval %v is negative: use a positive duration, or 0 for %v", c.Interval, DefaultInterval))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("health check timeout %v is negative: use a positive duration, or 0 for %v", c.Timeout, DefaultTimeout))
	}
	interval, timeout := cmp.Or(c.Interval, DefaultInterval), cmp.Or(c.Timeout, DefaultTimeout)
	if c.Interval >= 0 && c.Timeout >= 0 && timeout > interval {
		errs = append(errs, fmt.Errorf("health check timeout %v is longer than the interval %v: lower the timeout or raise the interval", timeout, interval))
	}
	if c.Rise < 0 || c.Fall < 0 {
		errs = append(errs, fmt.Errorf("health check rise %d / fall %d: use counts of 1 or more, or 0 for %d", c.Rise, c.Fall, DefaultRise))
	}
	if c.SrcIP.IsValid() && !c.SrcIP.Is4() {
		errs = append(errs, fmt.Errorf("GUE check source %s is not IPv4: GUE's outer header is IPv4 only", c.SrcIP))
	}
	return errors.Join(errs...)
}

// init applies the defaults and makes the maps, once. c.mu is held.
func (c *Checker) init() {
	if c.inited {
		return
	}
	c.inited = true
	c.interval, c.timeout = cmp.Or(c.Interval, DefaultInterval), cmp.Or(c.Timeout, DefaultTimeout)
	c.rise, c.fall = cmp.Or(c.Rise, DefaultRise), cmp.Or(c.Fall, DefaultFall)
	if c.clock == nil {
		c.clock = realClock{}
	}
	c.log = c.Log
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.targets = map[Check]*target{}
	c.backends = map[netip.Addr]backendState{}
	c.health = table.Health{}
	c.changes = make(chan table.Health, 1)
	c.m = newMetrics()
	c.client = newHTTPClient()
	c.gue = newGUEProber(c.SrcIP, func(outcome string) { c.m.icmp.WithLabelValues(outcome).Inc() })
}

// Changes returns the channel that receives a new table.Health snapshot at
// once whenever a backend's health changes, or a config update adds or
// drops a checked backend. It holds at most one snapshot: an unread one is
// replaced by the newer, so a slow reader gets the latest state and never
// blocks the checks. The snapshot lists the checked backends whose health
// is known; the table takes the rest from the config.
func (c *Checker) Changes() <-chan table.Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	return c.changes
}

// Snapshot returns the current health (see Changes).
func (c *Checker) Snapshot() table.Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	return maps.Clone(c.health)
}

// Watch signals changed, without blocking, whenever the health changes,
// until ctx is done; the receiver reads the new state with Snapshot. With
// Snapshot it makes the Checker the director daemon's health source
// (daemon.Health). It consumes Changes: use one or the other.
func (c *Checker) Watch(ctx context.Context, changed chan<- struct{}) {
	ch := c.Changes()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}

// Status returns the state of every check, sorted by backend, kind, port
// and URI.
func (c *Checker) Status() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	out := make([]Status, 0, len(c.targets))
	for _, t := range c.targets {
		out = append(out, t.status)
	}
	slices.SortFunc(out, func(a, b Status) int { return a.Check.compare(b.Check) })
	return out
}

// Update sets the backends to check from a forwarding-table config: every
// backend of every table that is not inactive, with the checks its
// "healthchecks" field names. Checks that stay keep their state; new ones
// start at once (while Run runs) and take their first result at once;
// checks that go stop, and a backend left with none drops out of the
// snapshot. It may be called before Run and at any time while it runs.
func (c *Checker) Update(cfg *table.Config) {
	want := checksOf(cfg)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	keep := make(map[Check]bool, len(want))
	affected := map[netip.Addr]bool{}
	for _, chk := range want {
		keep[chk] = true
		if c.targets[chk] != nil {
			continue
		}
		t := &target{check: chk, status: Status{Check: chk}}
		c.targets[chk] = t
		affected[chk.Backend] = true
		if c.runCtx != nil && !c.stopped {
			c.start(t)
		}
		c.log.Debug("health check added", "backend", chk.Backend, "check", chk.String())
	}
	for chk, t := range c.targets {
		if keep[chk] {
			continue
		}
		if t.cancel != nil {
			t.cancel()
		}
		delete(c.targets, chk)
		c.m.forgetCheck(chk)
		affected[chk.Backend] = true
		c.log.Debug("health check removed", "backend", chk.Backend, "check", chk.String())
	}
	for ip := range affected {
		c.updateBackend(ip, nil)
	}
	c.publish()
}

// Run runs the checks until ctx ends, then stops them all and returns once
// every goroutine it started has exited. It returns an error at once if
// the settings are invalid or the metrics cannot be registered. A Checker
// runs once.
func (c *Checker) Run(ctx context.Context) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	c.init()
	if c.runCtx != nil || c.stopped {
		c.mu.Unlock()
		return errors.New("healthcheck: Checker.Run called twice")
	}
	if c.Registerer != nil {
		if err := c.m.register(c.Registerer); err != nil {
			c.mu.Unlock()
			return err
		}
		defer c.m.unregister(c.Registerer)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.runCtx = runCtx
	for _, t := range c.targets {
		c.start(t)
	}
	c.mu.Unlock()

	<-runCtx.Done()
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.wg.Wait()
	c.gue.close()
	return nil
}

// start runs a target's loop. c.mu is held.
func (c *Checker) start(t *target) {
	ctx, cancel := context.WithCancel(c.runCtx)
	t.cancel = cancel
	c.wg.Add(1)
	go c.loop(ctx, t)
}

// loop probes one check every interval, the first time at once. Each wait
// is shortened by a random 0–10 % of the interval, so checks that started
// together (every backend, when the director starts) drift apart instead
// of probing the proxies in lockstep, and a probe is never later than one
// interval after the one before.
func (c *Checker) loop(ctx context.Context, t *target) {
	defer c.wg.Done()
	for {
		start := c.clock.Now()
		began := time.Now()
		r := c.probe(ctx, t.check)
		took := time.Since(began)
		if ctx.Err() != nil {
			return
		}
		c.record(t, r, took)
		spread := time.Duration(rand.Int64N(int64(c.interval)/10 + 1))
		wait := max(start.Add(c.interval-spread).Sub(c.clock.Now()), 0)
		tick, stop := c.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-tick:
		}
	}
}

func (c *Checker) probe(ctx context.Context, chk Check) result {
	return withTimeout(ctx, c.timeout, func(ctx context.Context) result {
		switch chk.Kind {
		case HTTP:
			return probeHTTP(ctx, c.client, chk)
		case TCP:
			return probeTCP(ctx, chk)
		case GUE:
			return c.gue.probe(ctx, chk)
		}
		return fail("unknown check kind %d", chk.Kind)
	})
}

// record applies one result: metrics, damping, and, when the check's
// state changes, the backend's health.
func (c *Checker) record(t *target, r result, took time.Duration) {
	c.mu.Lock()
	if c.targets[t.check] != t || c.stopped {
		c.mu.Unlock()
		return
	}
	labels := checkLabels(t.check)
	outcome := "fail"
	if r.ok {
		outcome = "pass"
	}
	c.m.results.WithLabelValues(append(labels, outcome)...).Inc()
	c.m.duration.WithLabelValues(labels...).Observe(took.Seconds())

	old := backendState{t.damp.known, t.damp.healthy}
	changed := t.damp.observe(r.ok, c.rise, c.fall)
	st := &t.status
	st.Known, st.Healthy, st.Streak = t.damp.known, t.damp.healthy, t.damp.streak
	st.LastPassed, st.Reason, st.LastCheck = r.ok, r.reason, c.clock.Now()
	st.Results++
	if changed {
		c.m.checkHealthy.WithLabelValues(labels...).Set(b2f(t.damp.healthy))
		now := backendState{true, t.damp.healthy}
		level := slog.LevelInfo
		if !now.healthy {
			level = slog.LevelWarn
		}
		c.log.Log(context.Background(), level, "health check changed", "backend", t.check.Backend,
			"check", t.check.String(), "old", old.String(), "new", now.String(), "reason", reasonText(r))
		c.updateBackend(t.check.Backend, t)
		c.publish()
	}
	status := *st
	hook := c.afterResult
	c.mu.Unlock()
	if hook != nil {
		hook(status)
	}
}

func reasonText(r result) string {
	if r.ok {
		return "passed"
	}
	return r.reason
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// updateBackend recomputes a backend's health from its checks after cause
// (nil: a config update) changed. c.mu is held.
func (c *Checker) updateBackend(ip netip.Addr, cause *target) {
	old, had := c.backends[ip]
	var n, known int
	var failing []string
	for _, t := range c.targets {
		if t.check.Backend != ip {
			continue
		}
		n++
		if !t.damp.known {
			continue
		}
		known++
		if !t.damp.healthy {
			failing = append(failing, t.check.String()+": "+t.status.Reason)
		}
	}
	if n == 0 {
		if had {
			delete(c.backends, ip)
			c.m.forgetBackend(ip.String())
			c.log.Info("backend no longer checked", "backend", ip, "old", old.String())
		}
		return
	}
	var now backendState
	switch {
	case len(failing) > 0:
		now = backendState{true, false}
	case known == n:
		now = backendState{true, true}
	case old.known && known > 0:
		// Every check that has reported passes; a check added by a
		// config update has not reported yet.
		now = backendState{true, true}
	case old.known:
		// Every check was replaced; keep the state until they report.
		now = old
	}
	if now == old {
		return
	}
	c.backends[ip] = now
	if !now.known {
		return
	}
	c.m.healthy.WithLabelValues(ip.String()).Set(b2f(now.healthy))
	if old.known {
		c.m.flaps.WithLabelValues(ip.String()).Inc()
	}
	attrs := []any{"backend", ip, "old", old.String(), "new", now.String()}
	if cause != nil {
		attrs = append(attrs, "check", cause.check.String())
	}
	slices.Sort(failing)
	reason := "all checks pass"
	if len(failing) > 0 {
		reason = strings.Join(failing, "; ")
	}
	attrs = append(attrs, "reason", reason)
	level := slog.LevelInfo
	if !now.healthy {
		level = slog.LevelWarn
	}
	c.log.Log(context.Background(), level, "backend health changed", attrs...)
}

// publish sends the snapshot if it differs from the last one sent. c.mu
// is held; the send never blocks, as only publish sends and it first
// takes back an unread snapshot.
func (c *Checker) publish() {
	snap := table.Health{}
	for ip, b := range c.backends {
		if b.known {
			snap[ip] = b.healthy
		}
	}
	if maps.Equal(snap, c.health) {
		return
	}
	c.health = snap
	select {
	case <-c.changes:
	default:
	}
	c.changes <- maps.Clone(snap)
}

// String describes the settings, for a startup log line.
func (c *Checker) String() string {
	src := "chosen by route"
	if c.SrcIP.IsValid() {
		src = c.SrcIP.String()
	}
	return "interval " + cmp.Or(c.Interval, DefaultInterval).String() + ", timeout " + cmp.Or(c.Timeout, DefaultTimeout).String() +
		", rise " + strconv.Itoa(cmp.Or(c.Rise, DefaultRise)) + ", fall " + strconv.Itoa(cmp.Or(c.Fall, DefaultFall)) + ", gue source " + src
}
