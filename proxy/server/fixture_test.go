package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/glb-project/glb/internal/syncbuf"
	"github.com/glb-project/glb/proxy/clients"
	"github.com/glb-project/glb/proxy/config"
	"github.com/glb-project/glb/test/githubsim"
)

// fixture is a proxy in front of a simulated GitHub, both in-process.
type fixture struct {
	sim    *githubsim.Server
	simTS  *httptest.Server
	proxy  *Proxy
	ts     *httptest.Server
	tokens map[string]string // client name -> glbp_ token
	pats   map[string]string // credential name -> PAT
	logs   *syncbuf.Buffer
	reg    *prometheus.Registry
	dir    string
}

type clientSpec struct {
	name   string
	scopes []string
}

func newFixture(t *testing.T, creds []string, specs []clientSpec, mod func(*Options)) *fixture {
	t.Helper()
	return newFixtureWith(t, creds, specs, fixtureOptions{proxy: mod})
}

// fixtureOptions change a fixture before it starts.
type fixtureOptions struct {
	proxy func(*Options)
	yaml  string                  // more top-level configuration keys
	sim   func(*githubsim.Server) // set up the simulator
	rest  string                  // upstream.rest instead of the simulator
}

func newFixtureWith(t *testing.T, creds []string, specs []clientSpec, fo fixtureOptions) *fixture {
	t.Helper()
	f := &fixture{sim: &githubsim.Server{}, tokens: map[string]string{}, pats: map[string]string{}, logs: &syncbuf.Buffer{},
		reg: prometheus.NewPedanticRegistry(), dir: t.TempDir()}
	if fo.sim != nil {
		fo.sim(f.sim)
	}
	f.simTS = httptest.NewServer(f.sim)
	t.Cleanup(func() { f.simTS.Close(); f.sim.Close() })

	var reg strings.Builder
	reg.WriteString("version: 1\nclients:\n")
	for _, s := range specs {
		tok, err := clients.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[s.name] = tok
		fmt.Fprintf(&reg, "  - name: %s\n    token_sha256: %s\n    scopes:\n", s.name, clients.HashToken(tok))
		for _, sc := range s.scopes {
			fmt.Fprintf(&reg, "      - %s\n", sc)
		}
	}
	clientsFile := filepath.Join(f.dir, "clients.yaml")
	if err := os.WriteFile(clientsFile, []byte(reg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var doc strings.Builder
	rest := f.simTS.URL
	if fo.rest != "" {
		rest = fo.rest
	}
	fmt.Fprintf(&doc, "%slisten: 127.0.0.1:0\nupstream: {rest: %s}\nclients_file: %s\ncredentials:\n", fo.yaml, rest, clientsFile)
	env := map[string]string{}
	for _, c := range creds {
		pat := "ghp_" + strings.ReplaceAll(c, "-", "") + "PAT0123456789abcdefghijklmnopqrstu"
		f.pats[c] = pat
		f.sim.AddToken(pat, c)
		v := "PAT_" + strings.ToUpper(strings.ReplaceAll(c, "-", "_"))
		env[v] = pat
		fmt.Fprintf(&doc, "  - {name: %s, pat_env: %s}\n", c, v)
	}
	cfg, err := config.Parse([]byte(doc.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ResolveSecrets(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	o := Options{Log: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Registry: f.reg, Version: "test"}
	if fo.proxy != nil {
		fo.proxy(&o)
	}
	p, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	f.proxy = p
	f.ts = httptest.NewServer(p)
	t.Cleanup(f.ts.Close)
	return f
}

type reply struct {
	status int
	header http.Header
	body   string
}

// do sends a request to the proxy as client (its token in the given
// scheme: "token", "Bearer" or "Basic"; "" sends none).
func (f *fixture) do(t *testing.T, client, method, target, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.ts.URL+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	// Send the path exactly as written, escapes and dots included.
	req.URL.Opaque = ""
	req.URL.RawPath = ""
	if i := strings.IndexByte(target, '?'); i >= 0 {
		req.URL.Path, req.URL.RawQuery = target[:i], target[i+1:]
	} else {
		req.URL.Path = target
	}
	req.URL.Opaque = "//" + req.URL.Host + req.URL.Path
	if client != "" {
		req.Header.Set("Authorization", "token "+f.tokens[client])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func (f *fixture) calls() int { return f.sim.Stats().Total.Calls }

func (f *fixture) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(f.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitWaiting polls the proxy's coalesce gauge until n requests wait on
// shared flights (GitHub holds the leader meanwhile).
func (f *fixture) waitWaiting(t *testing.T, n int, release chan struct{}) {
	t.Helper()
	waiting := regexp.MustCompile(`(?m)^glb_proxy_coalesce_waiting_requests (\d+)$`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := waiting.FindStringSubmatch(f.metrics(t))
		if m != nil && m[1] == strconv.Itoa(n) {
			return
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("requests waiting on a flight: %v, want %d", m, n)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}
