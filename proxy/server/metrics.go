package server

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the front's own series. Labels are bounded: client names come
// from the registry, routes are templates (capped), methods a fixed set.
type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	saved      *prometheus.CounterVec
	spent      *prometheus.CounterVec
	authFail   *prometheus.CounterVec
	rejected   *prometheus.CounterVec
	reloads    *prometheus.CounterVec
	clients    prometheus.GaugeFunc
	ready      prometheus.GaugeFunc
	tlsReloads *prometheus.CounterVec

	routesMu sync.Mutex
	routes   map[string]bool
}

// maxRoutes caps the distinct route labels; later ones become "/{other}".
const maxRoutes = 256

func newMetrics(reg prometheus.Registerer, p *Proxy) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_requests_total",
			Help: "Client requests by client, method, route template, cache mode (X-GLB-Cache) and status code.",
		}, []string{"client", "method", "route", "cache", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "glb_proxy_request_duration_seconds",
			Help:    "Time to answer a client request (to the end of the body), by API kind (rest, graphql, git, internal) and cache mode.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind", "cache"}),
		saved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_saved_requests_total",
			Help: "Client requests answered without spending upstream rate limit (HIT, REVALIDATED, COALESCED, STALE), by client.",
		}, []string{"client"}),
		spent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_spent_requests_total",
			Help: "Upstream calls that GitHub counted against a rate limit (every answer but a 304, a 401 and a rate-limit refusal), by client and rate-limit resource. A GraphQL call counts as one, whatever its cost in points. Coalesced calls are charged to the client that led them.",
		}, []string{"client", "resource"}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_auth_failures_total",
			Help: "Requests refused with 401, by reason (missing, malformed, unknown).",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_rejected_requests_total",
			Help: "Requests refused before reaching upstream, by reason (bad_path, scope, bad_graphql, method, too_large, body_timeout, bad_body, not_ready).",
		}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_clients_reloads_total",
			Help: "Client registry loads by result (ok, error). On error the last good registry stays.",
		}, []string{"result"}),
		tlsReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glb_proxy_tls_reloads_total",
			Help: "TLS certificate loads by result (ok, error). On error the last good certificate stays.",
		}, []string{"result"}),
		routes: map[string]bool{},
	}
	m.clients = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "glb_proxy_clients",
		Help: "Clients in the loaded registry.",
	}, func() float64 {
		if s := p.registry.Current(); s != nil {
			return float64(len(s.Clients))
		}
		return 0
	})
	m.ready = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "glb_proxy_ready",
		Help: "1 when the proxy is ready (registry loaded, a credential usable), as /_glb/ready says.",
	}, func() float64 {
		if p.ready() == nil {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.saved, m.spent, m.authFail, m.rejected, m.reloads, m.tlsReloads, m.clients, m.ready} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register server metrics: %w", err)
		}
	}
	for _, r := range []string{"missing", "malformed", "unknown"} {
		m.authFail.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
		m.tlsReloads.WithLabelValues(r)
	}
	return m, nil
}

// route caps the route label's cardinality.
func (m *metrics) route(t string) string {
	m.routesMu.Lock()
	defer m.routesMu.Unlock()
	if m.routes[t] {
		return t
	}
	if len(m.routes) >= maxRoutes {
		return "/{other}"
	}
	m.routes[t] = true
	return t
}

var methods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

func methodLabel(m string) string {
	if methods[m] {
		return m
	}
	return "OTHER"
}
