package cache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the cache's counters, registered on a registry the caller
// passes in.
type Metrics struct {
	storeErrors *prometheus.CounterVec
	coalesced   prometheus.Counter
	inFlight    prometheus.Gauge
}

// NewMetrics registers the cache metrics on reg. If mem is the store, its
// size is exported too.
func NewMetrics(reg prometheus.Registerer, mem *Memory) (*Metrics, error) {
	m := &Metrics{
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_redis_errors_total",
			Help: "Failed Redis calls, by operation (get, put, refresh, app_token). While Redis fails, requests pass through uncached.",
		}, []string{"op"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glb_proxy_coalesced_requests_total",
			Help: "Requests answered with another identical request's upstream answer (X-GLB-Cache: COALESCED).",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glb_proxy_coalesce_waiting_requests",
			Help: "Requests waiting now for the answer of a shared (coalesced) upstream call, the one that leads it included.",
		}),
	}
	cs := []prometheus.Collector{m.storeErrors, m.coalesced, m.inFlight}
	if mem != nil {
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "glb_proxy_cache_entries", Help: "Entries in the in-memory cache.",
			}, func() float64 { n, _ := mem.Usage(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "glb_proxy_cache_bytes", Help: "Bytes held by the in-memory cache.",
			}, func() float64 { _, b := mem.Usage(); return float64(b) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "glb_proxy_cache_max_bytes", Help: "Byte cap of the in-memory cache.",
			}, func() float64 { return float64(mem.MaxBytes) }),
		)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register cache metrics: %w", err)
		}
	}
	// Known label values start at zero, so alerts see the series.
	for _, op := range []string{"get", "put", "refresh", "app_token"} {
		m.storeErrors.WithLabelValues(op)
	}
	return m, nil
}

// StoreError counts one failed store call.
func (m *Metrics) StoreError(op string) {
	m.storeErrors.WithLabelValues(op).Inc()
}
