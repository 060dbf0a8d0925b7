package healthcheck

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Checker's Prometheus series. Labels are bounded by the
// config: backend is a configured address, check one of http/tcp/gue,
// port a configured port, uri a configured http_uri (empty for tcp and
// gue). backend, check, port and uri together name one check, as Check
// does, so two HTTP checks on one port keep apart. Series of a check or
// backend that leaves the config are deleted.
type metrics struct {
	results      *prometheus.CounterVec   // backend, check, port, uri, result
	duration     *prometheus.HistogramVec // backend, check, port, uri
	checkHealthy *prometheus.GaugeVec     // backend, check, port, uri
	healthy      *prometheus.GaugeVec     // backend
	flaps        *prometheus.CounterVec   // backend
	icmp         *prometheus.CounterVec   // outcome

	collectors []prometheus.Collector
}

func newMetrics() *metrics {
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_healthcheck_results_total",
			Help: "Health check results, by backend, check type, port, URI (HTTP only) and result (pass or fail), before damping.",
		}, []string{"backend", "check", "port", "uri", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "glb_healthcheck_duration_seconds",
			Help:    "Time a health check took to pass or fail, by backend, check type, port and URI (HTTP only).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"backend", "check", "port", "uri"}),
		checkHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "glb_healthcheck_check_healthy",
			Help: "Damped state of each health check (backend, check type, port, URI for HTTP): 1 healthy, 0 failing.",
		}, []string{"backend", "check", "port", "uri"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "glb_healthcheck_backend_healthy",
			Help: "Health of each checked backend as the forwarding table sees it: 1 when all its checks pass.",
		}, []string{"backend"}),
		flaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_healthcheck_flaps_total",
			Help: "Changes of a backend's health (healthy to unhealthy or back), each of which rebuilt the table.",
		}, []string{"backend"}),
		icmp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_healthcheck_gue_icmp_total",
			Help: "ICMP messages read by the GUE checks' raw socket, by outcome (matched_reply, matched_unreachable, late, mismatch, foreign, malformed, bad_checksum).",
		}, []string{"outcome"}),
	}
	for _, o := range icmpOutcomes {
		m.icmp.WithLabelValues(o)
	}
	m.collectors = []prometheus.Collector{m.results, m.duration, m.checkHealthy, m.healthy, m.flaps, m.icmp}
	return m
}

// register adds every collector to r; on error it undoes what it added.
func (m *metrics) register(r prometheus.Registerer) error {
	for i, c := range m.collectors {
		if err := r.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				r.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return errors.New("register metrics: glb_healthcheck_* is already registered: run one Checker per registry")
			}
			return err
		}
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors {
		r.Unregister(c)
	}
}

// checkLabels are the label values that name one check: backend, check,
// port and uri, in that order.
func checkLabels(c Check) []string {
	return []string{c.Backend.String(), c.Kind.String(), strconv.Itoa(int(c.Port)), c.URI}
}

// forgetCheck deletes a check's series, and no other check's.
func (m *metrics) forgetCheck(c Check) {
	v := checkLabels(c)
	l := prometheus.Labels{"backend": v[0], "check": v[1], "port": v[2], "uri": v[3]}
	m.results.DeletePartialMatch(l)
	m.duration.Delete(l)
	m.checkHealthy.Delete(l)
}

// forgetBackend deletes a backend's series.
func (m *metrics) forgetBackend(backend string) {
	m.healthy.DeleteLabelValues(backend)
	m.flaps.DeleteLabelValues(backend)
}
