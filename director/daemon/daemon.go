package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/glb-project/glb/director/dataplane"
	"github.com/glb-project/glb/director/table"
)

// State is where the forwarding config comes from: in glb-director,
// consul.Signaller over a file or Consul store (see consul.Open).
type State interface {
	// Load returns the current config, parsed and validated.
	Load(ctx context.Context) (*table.Config, error)
	// Watch runs until ctx is done and sends on changed, without
	// blocking, whenever the config may have changed.
	Watch(ctx context.Context, changed chan<- struct{})
}

// Health is the health checkers' view of the backends.
type Health interface {
	// Snapshot returns the current view; nil means the config's
	// "healthy" fields.
	Snapshot() table.Health
	// Watch runs until ctx is done and sends on changed, without
	// blocking, whenever the view changes.
	Watch(ctx context.Context, changed chan<- struct{})
}

// Config configures a Daemon.
type Config struct {
	State  State                // required
	Health Health               // nil: the config's healthy fields
	Plane  *dataplane.Dataplane // required
	// OnConfig, when set, is called with every config the daemon has
	// applied (at Start and after each successful reload), so the health
	// checker checks exactly the backends the tables use: pass
	// healthcheck.Checker.Update.
	OnConfig func(*table.Config)
	// ResolveNeighbors makes the daemon ask the kernel to resolve the MAC
	// of every backend's next hop after each apply (FIB mode).
	ResolveNeighbors bool
	Log              *slog.Logger          // nil discards
	Registerer       prometheus.Registerer // nil: metrics are not exported
	Now              func() time.Time      // nil: time.Now
}

// Daemon keeps the data plane equal to state + health.
type Daemon struct {
	c       Config
	log     *slog.Logger
	now     func() time.Time
	reload  chan struct{}
	cfg     *table.Config // last good config
	metrics metrics
}

type metrics struct {
	reloads      *prometheus.CounterVec
	lastOK       prometheus.Gauge
	lastTime     prometheus.Gauge
	lastOKTime   prometheus.Gauge
	generation   prometheus.Gauge
	applySeconds prometheus.Histogram
}

// New checks c and registers the daemon's metrics.
func New(c Config) (*Daemon, error) {
	if c.State == nil || c.Plane == nil {
		return nil, errors.New("daemon: State and Plane are required")
	}
	d := &Daemon{c: c, log: c.Log, now: c.Now, reload: make(chan struct{}, 1)}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.metrics = metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_director_config_reloads_total",
			Help: "Config loads, by result (success, or failure: the running tables were kept).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glb_director_config_last_reload_success",
			Help: "1 if the last config load succeeded, 0 if it failed and the running tables were kept.",
		}),
		lastTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glb_director_config_last_reload_timestamp_seconds",
			Help: "When the config was last loaded, successfully or not.",
		}),
		lastOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glb_director_config_last_success_timestamp_seconds",
			Help: "When a config was last loaded and applied successfully.",
		}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glb_director_config_generation",
			Help: "Applies that changed the kernel's tables or binds since the daemon started.",
		}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "glb_director_apply_duration_seconds",
			Help:    "Time to build the tables and swap them into the kernel.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	d.metrics.reloads.WithLabelValues("success")
	d.metrics.reloads.WithLabelValues("failure")
	if c.Registerer != nil {
		for _, m := range []prometheus.Collector{d.metrics.reloads, d.metrics.lastOK, d.metrics.lastTime, d.metrics.lastOKTime, d.metrics.generation, d.metrics.applySeconds} {
			if err := c.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return d, nil
}

// Start loads the config and applies it. It fails if the first config is
// invalid: there is nothing to keep yet.
func (d *Daemon) Start(ctx context.Context) error {
	if err := d.load(ctx); err != nil {
		return err
	}
	return nil
}

// Reload asks Run to load the config again (SIGHUP).
func (d *Daemon) Reload() {
	select {
	case d.reload <- struct{}{}:
	default:
	}
}

// Run keeps the data plane equal to state and health until ctx is done.
// Call Start first.
func (d *Daemon) Run(ctx context.Context) error {
	if d.cfg == nil {
		return errors.New("daemon: Run before a successful Start")
	}
	stateChanged := make(chan struct{}, 1)
	healthChanged := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{}, 2)
	go func() { d.c.State.Watch(ctx, stateChanged); done <- struct{}{} }()
	watchers := 1
	if d.c.Health != nil {
		watchers++
		go func() { d.c.Health.Watch(ctx, healthChanged); done <- struct{}{} }()
	}
	defer func() {
		cancel()
		for range watchers {
			<-done
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.reload:
			d.log.Info("reloading config (signal)")
			_ = d.load(ctx)
		case <-stateChanged:
			d.log.Info("config changed, reloading")
			_ = d.load(ctx)
		case <-healthChanged:
			if err := d.apply(d.cfg); err != nil {
				d.log.Error("health changed, but applying the tables failed; the running tables stay", "err", err)
			}
		}
	}
}

// load reads the config and applies it, or keeps the running tables.
func (d *Daemon) load(ctx context.Context) error {
	now := d.now()
	d.metrics.lastTime.Set(float64(now.UnixNano()) / 1e9)
	cfg, err := d.c.State.Load(ctx)
	if err == nil {
		err = d.apply(cfg)
	}
	if err != nil {
		d.metrics.reloads.WithLabelValues("failure").Inc()
		d.metrics.lastOK.Set(0)
		if d.cfg != nil {
			d.log.Error("new config rejected; the running tables stay in use until a valid config is loaded", "err", err)
		}
		return err
	}
	d.cfg = cfg
	if d.c.OnConfig != nil {
		d.c.OnConfig(cfg)
	}
	d.metrics.reloads.WithLabelValues("success").Inc()
	d.metrics.lastOK.Set(1)
	d.metrics.lastOKTime.Set(float64(now.UnixNano()) / 1e9)
	return nil
}

// apply builds every table of cfg with the current health and swaps the
// changed ones into the data plane.
func (d *Daemon) apply(cfg *table.Config) error {
	start := d.now()
	var health table.Health
	if d.c.Health != nil {
		health = d.c.Health.Snapshot()
	}
	tables := make([]dataplane.Table, len(cfg.Tables))
	for i := range cfg.Tables {
		spec := &cfg.Tables[i]
		tables[i] = dataplane.Table{Spec: spec, Built: table.Build(spec, health)}
		if tables[i].Built.Width == 0 {
			d.log.Warn("table has no usable backend: the director drops its packets", "table", spec.Name)
		}
	}
	res, err := d.c.Plane.Apply(tables)
	if err != nil {
		return fmt.Errorf("apply tables: %w", err)
	}
	d.metrics.applySeconds.Observe(d.now().Sub(start).Seconds())
	if len(res.Swapped) > 0 || len(res.Removed) > 0 || res.BindsChanged {
		d.metrics.generation.Inc()
		d.log.Info("tables applied", "swapped", res.Swapped, "removed", res.Removed, "binds_changed", res.BindsChanged)
	}
	if d.c.ResolveNeighbors {
		if err := d.c.Plane.ResolveNeighbors(backendAddrs(cfg)); err != nil {
			d.log.Warn("some backends' next hops cannot be resolved; packets to them are dropped (drop_no_route / drop_no_neighbor)", "err", err)
		}
	}
	return nil
}

// backendAddrs lists every backend that may be a hop.
func backendAddrs(cfg *table.Config) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, t := range cfg.Tables {
		for _, b := range t.Backends {
			if b.State != table.Inactive && !seen[b.IP] {
				seen[b.IP] = true
				out = append(out, b.IP)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
