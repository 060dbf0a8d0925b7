package credentials

import (
	"errors"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// poolMetrics are the pool's counters, and a collector that reads the
// rate-limit state at scrape time.
type poolMetrics struct {
	p          *Pool
	upstream   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	retries    *prometheus.CounterVec
	benches    *prometheus.CounterVec
	allBenched *prometheus.CounterVec
	mints      *prometheus.CounterVec

	remainingDesc, limitDesc, resetDesc, benchedDesc, availableDesc *prometheus.Desc
}

var _ prometheus.Collector = (*poolMetrics)(nil)

func newPoolMetrics(p *Pool) *poolMetrics {
	return &poolMetrics{
		p: p,
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_upstream_requests_total",
			Help: "Requests sent to GitHub, by credential, rate-limit resource and status code (\"error\" when no response came).",
		}, []string{"credential", "resource", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "glb_proxy_upstream_request_duration_seconds",
			Help:    "Time to the response headers of GitHub, by rate-limit resource.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"resource"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_upstream_retries_total",
			Help: "Requests retried on another credential, by reason.",
		}, []string{"reason"}),
		benches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_credential_benches_total",
			Help: "Times a credential was benched, by reason (primary, secondary, graphql_rate_limited, unauthorized, mint_failed).",
		}, []string{"credential", "reason"}),
		allBenched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_all_credentials_benched_total",
			Help: "Requests refused at once because every credential was benched for their resource.",
		}, []string{"resource"}),
		mints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_app_token_mints_total",
			Help: "Installation-token acquisitions by App credential and result: minted here, shared (taken from Redis, minted by a replica), error.",
		}, []string{"credential", "result"}),
		remainingDesc: prometheus.NewDesc("glb_proxy_rate_limit_remaining",
			"Requests (GraphQL: points) left in the current window, as GitHub last reported.", []string{"credential", "resource"}, nil),
		limitDesc: prometheus.NewDesc("glb_proxy_rate_limit_limit",
			"Size of the current rate-limit window, as GitHub last reported.", []string{"credential", "resource"}, nil),
		resetDesc: prometheus.NewDesc("glb_proxy_rate_limit_reset_timestamp_seconds",
			"Unix time when the current rate-limit window resets.", []string{"credential", "resource"}, nil),
		benchedDesc: prometheus.NewDesc("glb_proxy_credential_benched",
			"1 while a credential is benched for a resource (resource \"all\": a secondary limit or a bad token).", []string{"credential", "resource"}, nil),
		availableDesc: prometheus.NewDesc("glb_proxy_credentials_available",
			"Credentials usable now for a resource; 0 means clients get 403 with Retry-After.", []string{"resource"}, nil),
	}
}

func (m *poolMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.upstream, m.duration, m.retries, m.benches, m.allBenched, m.mints, m} {
		if err := r.Register(c); err != nil {
			return errors.New("register credential metrics: " + err.Error())
		}
	}
	return nil
}

// Describe implements prometheus.Collector for the scrape-time gauges.
func (m *poolMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.remainingDesc
	ch <- m.limitDesc
	ch <- m.resetDesc
	ch <- m.benchedDesc
	ch <- m.availableDesc
}

// Collect implements prometheus.Collector.
func (m *poolMetrics) Collect(ch chan<- prometheus.Metric) {
	p := m.p
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	resources := make([]string, 0, len(p.resources))
	for r := range p.resources {
		resources = append(resources, r)
	}
	sort.Strings(resources)
	for _, r := range resources {
		n := 0
		for _, c := range p.creds {
			if ok, _ := c.usableLocked(r, now); ok {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(m.availableDesc, prometheus.GaugeValue, float64(n), r)
	}
	for _, c := range p.creds {
		all := now.Before(c.secondaryUntil) || now.Before(c.failUntil)
		ch <- prometheus.MustNewConstMetric(m.benchedDesc, prometheus.GaugeValue, b2f(all), c.name, "all")
		for r, rs := range c.rates {
			if rs.known {
				ch <- prometheus.MustNewConstMetric(m.remainingDesc, prometheus.GaugeValue, float64(rs.remaining), c.name, r)
				ch <- prometheus.MustNewConstMetric(m.limitDesc, prometheus.GaugeValue, float64(rs.limit), c.name, r)
				ch <- prometheus.MustNewConstMetric(m.resetDesc, prometheus.GaugeValue, float64(rs.reset.Unix()), c.name, r)
			}
			benched := now.Before(rs.benchedUntil) || rs.known && rs.remaining <= 0 && now.Before(rs.reset)
			ch <- prometheus.MustNewConstMetric(m.benchedDesc, prometheus.GaugeValue, b2f(benched), c.name, r)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
