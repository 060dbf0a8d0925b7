package credentials

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/glb-project/glb/internal/fakeclock"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/glb-project/glb/proxy/config"
	"github.com/glb-project/glb/proxy/redistest"
	"github.com/glb-project/glb/test/githubsim"
)

func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) }

type env struct {
	sim   *githubsim.Server
	ts    *httptest.Server
	clk   *fakeclock.Clock
	log   *bytes.Buffer
	logMu *sync.Mutex
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the simulator set up by sim before it serves.
func newEnvWith(t *testing.T, sim func(*githubsim.Server)) *env {
	t.Helper()
	e := &env{sim: &githubsim.Server{}, clk: newClock(), log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	e.sim.Now = e.clk.Now
	if sim != nil {
		sim(e.sim)
	}
	e.ts = httptest.NewServer(e.sim)
	t.Cleanup(func() { e.ts.Close(); e.sim.Close() })
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *env) pool(t *testing.T, creds []config.Credential, mod func(*Options)) *Pool {
	t.Helper()
	o := Options{REST: e.ts.URL, GraphQL: e.ts.URL + "/graphql", Now: e.clk.Now,
		Log: slog.New(slog.NewJSONHandler(lockedWriter{e.logMu, e.log}, nil))}
	if mod != nil {
		mod(&o)
	}
	p, err := New(creds, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) pat(name string) config.Credential {
	tok := "ghp_" + name + "0123456789abcdefghijklmnopqrstuvwxyz"
	e.sim.AddToken(tok, name)
	return config.Credential{Name: name, PATEnv: "X", Token: tok}
}

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

func appKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testKey)})
}

func (e *env) app(t *testing.T, name string, appID, inst int64) config.Credential {
	k, p := appKey(t)
	e.sim.AddApp(appID, &k.PublicKey, inst)
	return config.Credential{Name: name, AppID: appID, InstallationID: inst, PrivateKeyFile: "x", PrivateKey: p}
}

// get sends a request through the pool and returns the status, the
// credential used and the body.
func get(t *testing.T, p *Pool, method, url string, ch *Choice, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ch == nil {
		ch = &Choice{}
	}
	req = req.WithContext(WithChoice(req.Context(), ch))
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b) + "|used=" + ch.Used
}

func TestSearchExhaustedStillServesCore(t *testing.T) {
	e := newEnv(t)
	p := e.pool(t, []config.Credential{e.pat("bot")}, nil)
	e.sim.SetRemaining("bot", "search", 0)

	resp, body := get(t, p, "GET", e.ts.URL+"/search/issues?q=widget", nil, "")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("search with no search limit left: %d retry-after=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	for range 3 {
		resp, body = get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("core request after search exhaustion: %d %s", resp.StatusCode, body)
		}
	}
	// The second search is refused without asking GitHub.
	before := e.sim.Stats().Labels["bot"].Resources["search"].Calls
	resp, _ = get(t, p, "GET", e.ts.URL+"/search/issues?q=other", nil, "")
	if resp.StatusCode != http.StatusForbidden || e.sim.Stats().Labels["bot"].Resources["search"].Calls != before {
		t.Fatalf("benched search went upstream: status %d", resp.StatusCode)
	}
}

func TestExhaustionMovesToNextCredential(t *testing.T) {
	e := newEnv(t)
	a, b := e.pat("a"), e.pat("b")
	p := e.pool(t, []config.Credential{a, b}, nil)
	e.sim.SetRemaining("a", "core", 0) // the pool does not know yet

	for i := range 5 {
		resp, body := get(t, p, "GET", e.ts.URL+"/repos/acme/widgets/issues", nil, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: client saw %d %s", i, resp.StatusCode, body)
		}
		if !strings.HasSuffix(body, "used=b") {
			t.Fatalf("request %d not answered by b: %s", i, body[len(body)-10:])
		}
	}
	st := e.sim.Stats()
	if st.Labels["a"].Limited != 1 || st.Labels["a"].Calls != 1 || st.Labels["b"].Counted != 5 {
		t.Errorf("stats a=%+v b=%+v: want one refusal for a, then b only", st.Labels["a"], st.Labels["b"])
	}

	// A credential whose last answer said remaining 0 is not asked again
	// before its reset, even if nothing refused it.
	e.sim.ResetStats()
	e.clk.Advance(2 * time.Hour) // a's window resets
	e.sim.SetRemaining("b", "core", 1)
	get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", &Choice{Prefer: "b"}, "")
	for range 3 {
		if _, body := get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", &Choice{Prefer: "b"}, ""); !strings.HasSuffix(body, "used=a") {
			t.Fatalf("exhausted b still preferred: %s", body[len(body)-10:])
		}
	}
	if st := e.sim.Stats(); st.Labels["b"].Limited != 0 {
		t.Errorf("b was asked after reporting remaining 0: %+v", st.Labels["b"])
	}
}

func TestAllBenchedAnswersAtOnce(t *testing.T) {
	e := newEnv(t)
	p := e.pool(t, []config.Credential{e.pat("a"), e.pat("b")}, nil)
	e.sim.SetRemaining("a", "core", 0)
	e.sim.SetRemaining("b", "core", 0)

	resp, body := get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, "")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra <= 0 || ra > 3600 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if resp.Header.Get("X-RateLimit-Remaining") != "0" || !strings.Contains(body, `"documentation_url"`) || !strings.Contains(body, "rate limit exceeded") {
		t.Fatalf("not GitHub's shape: %v %s", resp.Header, body)
	}
	calls := e.sim.Stats().Total.Calls
	for range 5 {
		resp, _ = get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, "")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if got := e.sim.Stats().Total.Calls; got != calls {
		t.Fatalf("benched pool made %d upstream calls", got-calls)
	}
	if p.Ready() {
		t.Error("Ready with every credential benched for core")
	}
	e.clk.Advance(time.Duration(ra+1) * time.Second)
	if resp, body = get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the reset: %d %s", resp.StatusCode, body)
	}
	if !p.Ready() {
		t.Error("not Ready after the reset")
	}
}

// TestAllBenchedKeepsGitHubsStatus: when every credential is benched, the
// client gets the status GitHub used when it benched them (403 or 429),
// its documentation URL and its first sentence, with glb-proxy's
// Retry-After; never the request ID of someone else's refused request.
// Without a refusal to go by (the pool benched a credential because its
// last answer said remaining 0), the answer is a 403.
func TestAllBenchedKeepsGitHubsStatus(t *testing.T) {
	for _, tt := range []struct {
		name        string
		limitStatus int
		limit       func(*githubsim.Server)
		want        int
		wantMsg     string
		wantDocs    string
	}{
		{"primary 403", 0, func(s *githubsim.Server) { s.SetRemaining("a", "core", 0) }, 403,
			"API rate limit exceeded for user ID", "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"},
		{"primary 429", http.StatusTooManyRequests, func(s *githubsim.Server) { s.SetRemaining("a", "core", 0) }, 429,
			"API rate limit exceeded for user ID", "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"},
		{"secondary 429", http.StatusTooManyRequests, func(s *githubsim.Server) { s.TriggerSecondaryLimit("a", time.Hour) }, 429,
			"You have exceeded a secondary rate limit.", "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"},
		{"no refusal", http.StatusTooManyRequests, func(s *githubsim.Server) { s.SetRemaining("a", "core", 1) }, 403,
			"API rate limit exceeded: every upstream credential", "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnvWith(t, func(s *githubsim.Server) { s.LimitStatus = tt.limitStatus })
			p := e.pool(t, []config.Credential{e.pat("a")}, nil)
			tt.limit(e.sim)
			resp, body := get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, "")
			if tt.name == "no refusal" {
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Remaining") != "0" {
					t.Fatalf("last request: %d remaining %q", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
				}
				resp, body = get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, "")
			}
			calls := e.sim.Stats().Total.Calls
			for i := range 2 { // the answer to the request GitHub refused, then one that asks nobody
				if i == 1 {
					resp, body = get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, "")
				}
				body, _, _ = strings.Cut(body, "|used=")
				var m struct {
					Message string `json:"message"`
					Docs    string `json:"documentation_url"`
				}
				if err := json.Unmarshal([]byte(body), &m); err != nil {
					t.Fatalf("body %q: %v", body, err)
				}
				if resp.StatusCode != tt.want || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-RateLimit-Remaining") != "0" ||
					!strings.HasPrefix(m.Message, tt.wantMsg) || !strings.Contains(m.Message, `rate limited for "core"; retry after`) ||
					strings.Contains(m.Message, "request ID") || m.Docs != tt.wantDocs {
					t.Fatalf("answer %d: %d Retry-After=%q %s", i, resp.StatusCode, resp.Header.Get("Retry-After"), body)
				}
			}
			if n := e.sim.Stats().Total.Calls - calls; n != 0 {
				t.Errorf("%d upstream calls with every credential benched", n)
			}
		})
	}
}

func TestSecondaryLimitBenchesEveryResource(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewPedanticRegistry()
	p := e.pool(t, []config.Credential{e.pat("a"), e.pat("b")}, func(o *Options) { o.Registerer = reg })
	e.sim.TriggerSecondaryLimit("a", 90*time.Second)

	for _, path := range []string{"/repos/acme/widgets", "/search/issues?q=x", "/repos/acme/widgets/pulls"} {
		resp, body := get(t, p, "GET", e.ts.URL+path, nil, "")
		if resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, "used=b") {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body[len(body)-10:])
		}
	}
	if n := e.sim.Stats().Labels["a"].Calls; n != 1 {
		t.Errorf("a asked %d times during its secondary limit, want once", n)
	}
	if v := testutil.ToFloat64(p.metrics.benches.WithLabelValues("a", "secondary")); v != 1 {
		t.Errorf("benches{a,secondary} = %v", v)
	}
	e.clk.Advance(91 * time.Second)
	if _, body := get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", &Choice{Prefer: "a"}, ""); !strings.HasSuffix(body, "used=a") {
		t.Errorf("a not back after Retry-After: %s", body[len(body)-10:])
	}
}

func TestAffinity(t *testing.T) {
	e := newEnv(t)
	a, b := e.pat("a"), e.pat("b")
	for _, tt := range []struct {
		noAffinity bool
		want       string
	}{{false, "b"}, {true, "a"}} {
		p := e.pool(t, []config.Credential{a, b}, func(o *Options) { o.NoAffinity = tt.noAffinity })
		// Teach the pool that a has more left than b.
		e.sim.SetRemaining("a", "core", 4000)
		e.sim.SetRemaining("b", "core", 100)
		get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", &Choice{Prefer: "a"}, "")
		get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", &Choice{Prefer: "b"}, "")
		_, body := get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", &Choice{Prefer: "b"}, "")
		if !strings.HasSuffix(body, "used="+tt.want) {
			t.Errorf("NoAffinity=%v: used %s, want %s", tt.noAffinity, body[len(body)-6:], tt.want)
		}
		_, body = get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, "")
		if !strings.HasSuffix(body, "used=a") {
			t.Errorf("no preference: used %s, want a (most remaining)", body[len(body)-6:])
		}
	}
}

func TestWriteRetriedOnlyWhenNotExecuted(t *testing.T) {
	e := newEnv(t)
	p := e.pool(t, []config.Credential{e.pat("a"), e.pat("b")}, nil)
	e.sim.SetRemaining("a", "core", 0)
	resp, body := get(t, p, "POST", e.ts.URL+"/repos/acme/widgets/issues", nil, `{"title":"from the pool"}`)
	if resp.StatusCode != http.StatusCreated || !strings.HasSuffix(body, "used=b") {
		t.Fatalf("POST after a rate-limit refusal: %d %s", resp.StatusCode, body)
	}
	// Exactly one issue with that title exists.
	_, list := get(t, p, "GET", e.ts.URL+"/repos/acme/widgets/issues?per_page=100&state=all", nil, "")
	if n := strings.Count(list, `"title":"from the pool"`); n != 1 {
		t.Fatalf("%d issues created, want 1", n)
	}

	// A POST whose connection broke after it was sent is not replayed.
	var sent int
	broken := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent++
		return nil, io.ErrUnexpectedEOF
	})
	p2 := e.pool(t, []config.Credential{e.pat("c"), e.pat("d")}, func(o *Options) { o.Upstream = broken })
	req, _ := http.NewRequest("POST", e.ts.URL+"/repos/acme/widgets/issues", strings.NewReader(`{"title":"x"}`))
	if _, err := p2.RoundTrip(req); err == nil || sent != 1 {
		t.Fatalf("broken POST: err=%v sent=%d, want an error after one try", err, sent)
	}
	// A GET is retried on the other credential.
	sent = 0
	req, _ = http.NewRequest("GET", e.ts.URL+"/repos/acme/widgets", nil)
	if _, err := p2.RoundTrip(req); err == nil || sent != 2 {
		t.Fatalf("broken GET: err=%v sent=%d, want two tries", err, sent)
	}
	// A POST that never connected is retried.
	p3 := e.pool(t, []config.Credential{e.pat("e"), e.pat("f")}, nil)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	req, _ = http.NewRequest("POST", closedURL+"/repos/acme/widgets/issues", strings.NewReader(`{"title":"x"}`))
	_, err := p3.RoundTrip(req)
	if err == nil || testutil.ToFloat64(p3.metrics.retries.WithLabelValues("transport")) != 1 {
		t.Fatalf("POST to a closed port: err=%v, retries=%v; want one retry then the error", err, testutil.ToFloat64(p3.metrics.retries.WithLabelValues("transport")))
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRevokedPAT(t *testing.T) {
	e := newEnv(t)
	a, b := e.pat("a"), e.pat("b")
	p := e.pool(t, []config.Credential{a, b}, nil)
	e.sim.RemoveToken(a.Token)
	for range 3 {
		resp, body := get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", &Choice{Prefer: "a"}, "")
		if resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, "used=b") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if n := e.sim.Stats().BadCredentials; n != 1 {
		t.Errorf("revoked PAT tried %d times, want once", n)
	}
}

// TestEveryCredentialRevoked: when GitHub refuses every credential, the
// client is told the proxy is broken (502, GitHub-shaped, no token in it),
// not that it is rate limited.
func TestEveryCredentialRevoked(t *testing.T) {
	e := newEnv(t)
	a, b := e.pat("a"), e.pat("b")
	p := e.pool(t, []config.Credential{a, b}, nil)
	e.sim.RemoveToken(a.Token)
	e.sim.RemoveToken(b.Token)
	ch := &Choice{}
	resp, body := get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", ch, "")
	if resp.StatusCode != http.StatusBadGateway || !ch.Unauthorized {
		t.Fatalf("every credential revoked: %d (unauthorized %v) %s, want 502", resp.StatusCode, ch.Unauthorized, body)
	}
	if !strings.Contains(body, "refused every upstream credential") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("the answer does not say what broke: %v %s", resp.Header, body)
	}
	for _, tok := range []string{a.Token, b.Token} {
		if strings.Contains(body, tok) {
			t.Fatalf("the answer carries a credential's token: %s", body)
		}
	}
	if n := e.sim.Stats().BadCredentials; n != 2 {
		t.Errorf("GitHub saw %d bad-credential calls, want one per credential", n)
	}
}

func TestGraphQLRateLimited(t *testing.T) {
	// GitHub answers an exhausted GraphQL budget with 200 and a
	// RATE_LIMITED error; this upstream does that for token a only.
	var mu sync.Mutex
	calls := map[string]int{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "token ")
		mu.Lock()
		calls[tok]++
		mu.Unlock()
		w.Header().Set("X-RateLimit-Resource", "graphql")
		w.Header().Set("X-RateLimit-Limit", "5000")
		w.Header().Set("X-RateLimit-Reset", "4102444800")
		if tok == "tok-a" {
			w.Header().Set("X-RateLimit-Remaining", "0")
			io.WriteString(w, `{"data":null,"errors":[{"type":"RATE_LIMITED","message":"API rate limit exceeded"}]}`)
			return
		}
		w.Header().Set("X-RateLimit-Remaining", "4000")
		io.WriteString(w, `{"data":{"viewer":{"login":"b"}}}`)
	}))
	defer up.Close()
	p, err := New([]config.Credential{{Name: "a", Token: "tok-a"}, {Name: "b", Token: "tok-b"}}, Options{REST: up.URL, GraphQL: up.URL + "/graphql"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp, body := get(t, p, "POST", up.URL+"/graphql", &Choice{Prefer: "a"}, `{"query":"{viewer{login}}"}`)
		if resp.StatusCode != 200 || !strings.Contains(body, `"login":"b"`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if calls["tok-a"] != 1 || calls["tok-b"] != 3 {
		t.Errorf("calls %v: want a once (then benched), b three times", calls)
	}
}

func TestAppTokenMintedOnce(t *testing.T) {
	e := newEnv(t)
	p := e.pool(t, []config.Credential{e.app(t, "ci-app", 12345, 678)}, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.ts.URL+"/repos/acme/widgets", nil)
			resp, err := p.RoundTrip(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- resp.Status
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	st := e.sim.Stats()
	if st.Mints["app-12345-inst-678"] != 1 || st.Labels["app-12345-inst-678"].Counted != 20 {
		t.Fatalf("mints %v, installation stats %+v", st.Mints, st.Labels["app-12345-inst-678"])
	}
	// Shortly before expiry the token is replaced.
	e.clk.Advance(56 * time.Minute)
	get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, "")
	if n := e.sim.Stats().Mints["app-12345-inst-678"]; n != 2 {
		t.Fatalf("mints after 56 minutes: %d, want 2", n)
	}
}

func TestAppTokenSharedThroughRedis(t *testing.T) {
	rs := redistest.Start(t)
	e := newEnv(t)
	cred := e.app(t, "ci-app", 777, 9)
	var pools []*Pool
	for range 2 {
		rc := rs.Client()
		pools = append(pools, e.pool(t, []config.Credential{cred}, func(o *Options) { o.Redis = rc }))
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.ts.URL+"/repos/acme/widgets", nil)
			resp, err := pools[i%2].RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if n := e.sim.Stats().Mints["app-777-inst-9"]; n != 1 {
		t.Fatalf("two replicas minted %d tokens, want 1", n)
	}
	// What Redis holds is sealed: the token is not in it.
	keys, err := rs.Client().Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := pools[0].creds[0].app.Token(context.Background())
	for _, k := range keys {
		v, _ := rs.Client().Get(context.Background(), k).Bytes()
		if bytes.Contains(v, []byte(tok)) || strings.Contains(k, tok) {
			t.Fatalf("redis key %s holds the installation token in clear", k)
		}
	}
	// A third replica started later takes the shared token too.
	p3 := e.pool(t, []config.Credential{cred}, func(o *Options) { o.Redis = rs.Client() })
	if resp, _ := get(t, p3, "GET", e.ts.URL+"/repos/acme/widgets", nil, ""); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if n := e.sim.Stats().Mints["app-777-inst-9"]; n != 1 {
		t.Fatalf("late replica minted: %d mints", n)
	}
	// With Redis gone, a replica still works: it mints its own.
	rs.Kill()
	e.clk.Advance(58 * time.Minute)
	if resp, _ := get(t, p3, "GET", e.ts.URL+"/repos/acme/widgets", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("without redis: %s", resp.Status)
	}
}

func TestNoSecretsInLogsOrMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewPedanticRegistry()
	a, b := e.pat("a"), e.pat("b")
	app := e.app(t, "ci-app", 4242, 1)
	p := e.pool(t, []config.Credential{a, b, app}, func(o *Options) { o.Registerer = reg })
	e.sim.RemoveToken(a.Token)
	e.sim.SetRemaining("b", "core", 0)
	e.sim.TriggerSecondaryLimit("app-4242-inst-1", time.Minute)
	for range 3 {
		get(t, p, "GET", e.ts.URL+"/repos/acme/widgets", nil, "")
	}
	appTok, _ := p.creds[2].app.Token(context.Background())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, mf := range mfs {
		fmt.Fprintln(&out, mf.String())
	}
	e.logMu.Lock()
	logs := e.log.String()
	e.logMu.Unlock()
	for _, secret := range []string{a.Token, b.Token, appTok} {
		if strings.Contains(logs, secret) || strings.Contains(out.String(), secret) {
			t.Fatalf("a token leaked into logs or metrics")
		}
	}
	if !strings.Contains(out.String(), "glb_proxy_credential_benched") || !strings.Contains(logs, "credential benched") {
		t.Fatalf("expected bench metrics and logs:\n%s\n%s", out.String(), logs)
	}
}
