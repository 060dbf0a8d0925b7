package proxy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/glb-project/glb/internal/testenv"
	"github.com/glb-project/glb/proxy/server"
)

// namingRegistry records the name of every metric registered on it.
type namingRegistry struct {
	*prometheus.Registry
	names map[string]bool
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *namingRegistry) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return r.Registry.Register(c)
}

func (r *namingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// registeredNames builds the proxy with the in-memory cache and with Redis
// configured, and returns every metric name either registers.
func registeredNames(t *testing.T) map[string]bool {
	names := map[string]bool{}
	w := newWorld(t, []string{"bot"}, map[string][]string{"c": {`{path: "/**"}`}})
	for _, extra := range []string{
		"",
		"cache: {redis: \"redis://127.0.0.1:1/0\"}\n", // go-redis connects lazily; nothing listens
	} {
		reg := &namingRegistry{Registry: prometheus.NewRegistry(), names: names}
		inProcess(t, w, []string{"bot"}, extra, server.Options{Registry: reg})
	}
	return names
}

var metricRE = regexp.MustCompile(`\bglb_proxy_[a-z_]+\b`)

func metricNames(expr string) []string {
	return metricRE.FindAllString(expr, -1)
}

func known(names map[string]bool, m string) bool {
	if names[m] {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(m, suf); ok && names[base] {
			return true
		}
	}
	return false
}

// TestDashboardAndAlertsUseRealMetrics parses the Grafana dashboard and
// the alert rules and checks that every glb_proxy_ metric they name is one
// the proxy registers.
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	names := registeredNames(t)
	if !names["glb_proxy_requests_total"] || !names["glb_proxy_rate_limit_remaining"] || !names["glb_proxy_cache_bytes"] {
		t.Fatalf("registry walk found too little: %v", names)
	}

	var exprs []string
	raw, err := os.ReadFile(filepath.Join(root, "deploy/grafana/glb-proxy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, vv := range x {
				if s, ok := vv.(string); ok && (k == "expr" || k == "definition" || k == "query") {
					exprs = append(exprs, s)
				}
				walk(vv)
			}
		case []any:
			for _, vv := range x {
				walk(vv)
			}
		}
	}
	walk(dash)
	panels, _ := dash["panels"].([]any)
	if len(panels) < 10 {
		t.Errorf("dashboard has %d panels", len(panels))
	}

	raw, err = os.ReadFile(filepath.Join(root, "deploy/prometheus/glb-proxy-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			exprs = append(exprs, r.Expr)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s lacks severity, summary or description", r.Alert)
			}
		}
	}
	for _, want := range []string{"GlbProxyCredentialNearExhaustion", "GlbProxyAllCredentialsBenched", "GlbProxyRedisErrors"} {
		if !alerts[want] {
			t.Errorf("alert %s missing", want)
		}
	}

	used := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricNames(e) {
			used[m] = true
			if !known(names, m) {
				t.Errorf("%q uses %s, which glb-proxy does not export", e, m)
			}
		}
	}
	var list []string
	for m := range used {
		list = append(list, m)
	}
	sort.Strings(list)
	t.Logf("dashboard and alerts use %d metrics: %v", len(list), list)
	// What the issue asks the dashboard to draw.
	for _, want := range []string{"glb_proxy_requests_total", "glb_proxy_saved_requests_total", "glb_proxy_rate_limit_remaining",
		"glb_proxy_redis_errors_total", "glb_proxy_request_duration_seconds_bucket"} {
		if !used[want] {
			t.Errorf("nothing draws %s", want)
		}
	}
}
