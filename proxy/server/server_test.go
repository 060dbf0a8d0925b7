package server

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glb-project/glb/proxy/cache"
	"github.com/glb-project/glb/proxy/clients"
)

var matrixClients = []clientSpec{
	{"reader", []string{`{methods: [GET, HEAD], path: "/repos/acme/widgets/**"}`}},
	{"docs-reader", []string{`{path: "/repos/acme/widgets/contents/docs/**"}`}},
	{"issue-writer", []string{`{methods: [GET, POST], path: "/repos/acme/widgets/issues"}`}},
	{"org-reader", []string{`{path: "/repos/acme/*"}`, `{path: "/orgs/acme/**"}`}},
	{"gql-reader", []string{`{graphql: query}`}},
	{"git-fetcher", []string{`{git: fetch, path: "/acme/*"}`}},
}

// TestScopeMatrix sends every client every request, including the tricky
// spellings, and checks that exactly the allowed ones reach GitHub. A
// refused request must leave githubsim untouched.
func TestScopeMatrix(t *testing.T) {
	f := newFixture(t, []string{"bot"}, matrixClients, nil)
	type req struct{ method, path, body string }
	reqs := []req{
		{"GET", "/repos/acme/widgets", ""},
		{"GET", "/api/v3/repos/acme/widgets/issues", ""},
		{"GET", "/repos/ACME/Widgets/issues", ""},
		{"HEAD", "/api/v3/repos/Acme/widgets", ""},
		{"GET", "/repos/acme/widgets/contents/docs/guide.md", ""},
		{"GET", "/repos/acme/widgets/contents/DOCS/guide.md", ""},
		{"GET", "/repos/acme/widgets/contents/README.md", ""},
		{"GET", "/repos/acme/gadgets", ""},
		{"GET", "/api/v3/repos/acme/gadgets/issues", ""},
		{"GET", "/repos/acme/widgets/../gadgets", ""},
		{"GET", "/repos/acme/widgets/%2e%2e/gadgets", ""},
		{"GET", "/repos/acme/widgets/.%2E/gadgets", ""},
		{"GET", "/api/v3/../repos/acme/gadgets", ""},
		{"GET", "/repos/acme%2Fwidgets/issues", ""},
		{"GET", "/repos/acme/widgets%2F..%2Fgadgets", ""},
		{"GET", "//repos/acme/widgets", ""},
		{"GET", "/repos/acme/widgets/", ""},
		{"GET", "/repos/acme/widgets%5C..%5Cgadgets", ""},
		{"GET", "/orgs/acme", ""},
		{"GET", "/orgs/ACME/repos", ""},
		{"GET", "/user", ""},
		{"POST", "/repos/acme/widgets/issues", `{"title":"matrix"}`},
		{"POST", "/repos/ACME/WIDGETS/issues", `{"title":"matrix"}`},
		{"PATCH", "/repos/acme/widgets/issues/1", `{"title":"x"}`},
		{"DELETE", "/repos/acme/widgets", ""},
		{"POST", "/graphql", `{"query":"{ viewer { login } }"}`},
		{"POST", "/api/graphql", `{"query":"mutation { addStar(input:{starrableId:\"x\"}) { clientMutationId } }"}`},
		{"POST", "/api/v3/graphql", `{"query":"query A { viewer { login } } mutation B { x }","operationName":"B"}`},
		{"POST", "/graphql", `{"query":"{ a }","query":"mutation { b }"}`},
		{"GET", "/acme/widgets.git/info/refs?service=git-upload-pack", ""},
		{"GET", "/ACME/Widgets.git/info/refs?service=git-upload-pack", ""},
		{"GET", "/acme/widgets.git/info/refs?service=git-receive-pack", ""},
		{"GET", "/octo/widgets.git/info/refs?service=git-upload-pack", ""},
		{"GET", "/acme/widgets.git/../../octo/x.git/info/refs?service=git-upload-pack", ""},
	}
	// allowed[client] lists the indexes of reqs that client may send.
	allowed := map[string][]int{
		"reader":       {0, 1, 2, 3, 4, 5, 6},
		"docs-reader":  {4},
		"issue-writer": {1, 2, 21, 22},
		"org-reader":   {0, 3, 7, 18, 19},
		"gql-reader":   {25},
		"git-fetcher":  {29, 30},
	}
	// Requests refused before any client check.
	badPath := map[int]bool{9: true, 10: true, 11: true, 12: true, 13: true, 14: true, 15: true, 16: true, 17: true, 33: true}
	for client := range f.tokens {
		ok := map[int]bool{}
		for _, i := range allowed[client] {
			ok[i] = true
		}
		for i, rq := range reqs {
			before := f.calls()
			r := f.do(t, client, rq.method, rq.path, rq.body)
			after := f.calls()
			switch {
			case ok[i]:
				if after == before {
					t.Errorf("%s %s %s: allowed but did not reach githubsim (status %d %s)", client, rq.method, rq.path, r.status, r.body)
				}
			case badPath[i]:
				if r.status != http.StatusBadRequest || after != before {
					t.Errorf("%s %s %s: status %d, upstream calls +%d; want 400 and none", client, rq.method, rq.path, r.status, after-before)
				}
			default:
				if (r.status != http.StatusForbidden && r.status != http.StatusBadRequest) || after != before {
					t.Errorf("%s %s %s: status %d, upstream calls +%d; want 403 and none (%s)", client, rq.method, rq.path, r.status, after-before, r.body)
				}
			}
			if r.status >= 400 && r.status != 404 && !strings.Contains(r.body, `"documentation_url"`) && rq.method != "HEAD" && !strings.Contains(rq.path, ".git") {
				t.Errorf("%s %s %s: %d body not GitHub-shaped: %s", client, rq.method, rq.path, r.status, r.body)
			}
			if r.header.Get(cache.Header) == "" || r.header.Get(RequestIDHeader) == "" {
				t.Errorf("%s %s %s: missing X-GLB-Cache or X-GLB-Request-Id", client, rq.method, rq.path)
			}
		}
	}
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t, []string{"bot"}, matrixClients, nil)
	stranger, _ := clients.NewToken()
	tok := f.tokens["reader"]
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	for _, tt := range []struct {
		name, auth string
		want       int
	}{
		{"token", "token " + tok, 200},
		{"bearer", "Bearer " + tok, 200},
		{"basic", basic("x-access-token", tok), 200},
		{"none", "", 401},
		{"unknown", "token " + stranger, 401},
		{"malformed", "token glbp_nope", 401},
		{"github pat", "token " + f.pats["bot"], 401},
		{"garbage", "Negotiate abc", 401},
	} {
		before := f.calls()
		req, _ := http.NewRequest("GET", f.ts.URL+"/repos/acme/widgets", nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
		if tt.want == 401 && f.calls() != before {
			t.Errorf("%s: a 401 reached githubsim", tt.name)
		}
	}
	// git gets a Basic challenge, so it sends credentials.
	r := f.do(t, "", "GET", "/acme/widgets.git/info/refs?service=git-upload-pack", "")
	if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("git without credentials: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
}

func TestClientValidatorAnsweredLocally(t *testing.T) {
	f := newFixture(t, []string{"bot"}, matrixClients, nil)
	// First request already carries a validator (say, from a previous CI
	// run): the proxy must not forward it and store an empty 304.
	first := f.do(t, "reader", "GET", "/repos/acme/widgets", "", "If-None-Match", `W/"stale"`)
	if first.status != 200 || first.body == "" {
		t.Fatalf("first: %d", first.status)
	}
	etag := first.header.Get("ETag")
	st := f.sim.Stats().Total
	r := f.do(t, "reader", "GET", "/repos/acme/widgets", "", "If-None-Match", etag)
	if r.status != http.StatusNotModified || r.body != "" || r.header.Get(cache.Header) != cache.Revalidated {
		t.Fatalf("client validator: %d %s %q", r.status, r.header.Get(cache.Header), r.body)
	}
	after := f.sim.Stats().Total
	if after.Counted != st.Counted || after.NotModified != st.NotModified+1 {
		t.Fatalf("githubsim counted %d→%d, 304s %d→%d", st.Counted, after.Counted, st.NotModified, after.NotModified)
	}
	// Another client without a validator gets the full body, not an
	// empty 304 stored on the first client's behalf.
	o := f.do(t, "org-reader", "GET", "/repos/acme/widgets", "")
	if o.status != 200 || o.body != first.body {
		t.Fatalf("second client: %d, %d bytes", o.status, len(o.body))
	}
	// If-Modified-Since works the same way.
	if lm := first.header.Get("Last-Modified"); lm != "" {
		if r := f.do(t, "reader", "GET", "/repos/acme/widgets", "", "If-Modified-Since", lm); r.status != http.StatusNotModified {
			t.Errorf("If-Modified-Since: %d", r.status)
		}
	}
}

func TestLinksPointBackAtTheProxy(t *testing.T) {
	f := newFixture(t, []string{"bot"}, matrixClients, nil)
	for _, prefix := range []string{"", "/api/v3"} {
		r := f.do(t, "reader", "GET", prefix+"/repos/acme/widgets/issues?per_page=5", "")
		link := r.header.Get("Link")
		if !strings.Contains(link, "<"+f.ts.URL+prefix+"/repos") && !strings.Contains(link, "<"+f.ts.URL+prefix+"/repositories") {
			t.Errorf("prefix %q: Link %q does not point at the proxy", prefix, link)
		}
		if strings.Contains(link, f.simTS.URL) {
			t.Errorf("prefix %q: Link %q points at GitHub", prefix, link)
		}
	}
}

func TestIdentityPathsBypassTheCache(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, []clientSpec{{"all", []string{`{path: "/**"}`}}}, nil)
	for range 3 {
		r := f.do(t, "all", "GET", "/user", "")
		if r.status != 200 || r.header.Get(cache.Header) != cache.Bypass {
			t.Fatalf("/user: %d %s", r.status, r.header.Get(cache.Header))
		}
	}
	if c := f.sim.Stats().Total.Counted; c != 3 {
		t.Errorf("/user counted %d times, want 3 (never cached)", c)
	}
	if r := f.do(t, "all", "GET", "/rate_limit", ""); r.header.Get(cache.Header) != cache.Bypass {
		t.Errorf("/rate_limit cached")
	}
}

func TestConcurrentClientsOneUpstreamCallEach(t *testing.T) {
	f := newFixture(t, []string{"bot"}, matrixClients, nil)
	const n = 20
	release := make(chan struct{})
	f.sim.Hold = func(*http.Request) { <-release }
	var wg sync.WaitGroup
	modes := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.do(t, "reader", "GET", "/repos/acme/widgets/pulls", "")
			if r.status != 200 {
				t.Errorf("status %d", r.status)
			}
			modes[i] = r.header.Get(cache.Header)
		}()
	}
	// GitHub holds the first call until all n requests wait on it: only
	// then can one upstream call prove that they were merged (serial
	// requests would pass a count of calls made by revalidation).
	f.waitWaiting(t, n, release)
	close(release)
	wg.Wait()
	if st := f.sim.Stats().Total; st.Calls != 1 || st.Counted != 1 {
		t.Errorf("%d concurrent requests made %d upstream calls (%d counted), want 1", n, st.Calls, st.Counted)
	}
	count := map[string]int{}
	for _, m := range modes {
		count[m]++
	}
	if count[cache.Miss] != 1 || count[cache.Coalesced] != n-1 {
		t.Errorf("modes %v, want 1 MISS and %d COALESCED", count, n-1)
	}
	if !strings.Contains(f.metrics(t), `glb_proxy_spent_requests_total{client="reader",resource="core"} 1`) {
		t.Error("the one upstream call is not charged once to its client")
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	f := newFixture(t, []string{"bot"}, matrixClients, nil)
	for _, p := range []string{"/_glb/health", "/_glb/ready"} {
		resp, err := http.Get(f.ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	f.do(t, "reader", "GET", "/repos/acme/widgets", "")
	f.do(t, "reader", "GET", "/repos/acme/widgets", "")
	f.do(t, "gql-reader", "GET", "/repos/acme/widgets", "")
	m := f.metrics(t)
	for _, want := range []string{
		`glb_proxy_requests_total{cache="MISS",client="reader",code="200",method="GET",route="/repos/{owner}/{repo}"} 1`,
		`glb_proxy_requests_total{cache="REVALIDATED",client="reader",code="200",method="GET",route="/repos/{owner}/{repo}"} 1`,
		`glb_proxy_saved_requests_total{client="reader"} 1`,
		`glb_proxy_rejected_requests_total{reason="scope"} 1`,
		`glb_proxy_rate_limit_remaining{credential="bot",resource="core"}`,
		`glb_proxy_upstream_requests_total{code="304",credential="bot",resource="core"} 1`,
		`glb_proxy_ready 1`,
		`glb_proxy_clients 6`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Exhaust the only credential: not ready.
	f.sim.SetRemaining("bot", "core", 0)
	f.do(t, "reader", "GET", "/repos/acme/widgets/issues", "")
	resp, err := http.Get(f.ts.URL + "/_glb/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("ready with no usable credential: %d", resp.StatusCode)
	}
}

func TestNoTokenInLogsOrMetrics(t *testing.T) {
	f := newFixture(t, []string{"bot", "spare"}, matrixClients, nil)
	stranger, _ := clients.NewToken()
	for c := range f.tokens {
		f.do(t, c, "GET", "/repos/acme/widgets", "")
		f.do(t, c, "GET", "/repos/acme/gadgets/"+f.tokens[c], "")
		f.do(t, c, "POST", "/graphql", `{"query":"{ viewer { login } }"}`)
		f.do(t, c, "GET", "/user?access_token="+f.tokens[c], "")
	}
	req, _ := http.NewRequest("GET", f.ts.URL+"/repos/acme/widgets", nil)
	req.Header.Set("Authorization", "token "+stranger)
	http.DefaultClient.Do(req)
	f.sim.SetRemaining("bot", "core", 0)
	f.do(t, "reader", "GET", "/repos/acme/widgets/pulls", "")
	all := f.logs.String() + f.metrics(t)
	secrets := []string{stranger}
	for _, tok := range f.tokens {
		secrets = append(secrets, tok)
	}
	for _, pat := range f.pats {
		secrets = append(secrets, pat)
	}
	for _, s := range secrets {
		if strings.Contains(all, s) || strings.Contains(all, s[5:25]) {
			t.Fatalf("a token (or a long part of one) is in the logs or metrics")
		}
	}
	if !strings.Contains(f.logs.String(), `"msg":"request"`) {
		t.Fatal("no request logs to check")
	}
}

// TestPreconditionsPassThrough: If-Match, If-Unmodified-Since, Range and
// If-Range make GitHub's answer depend on more than the cache keys on, so
// such requests bypass the cache (no max_age hit, no coalescing, nothing
// stored) and carry the headers upstream.
func TestPreconditionsPassThrough(t *testing.T) {
	f := newFixture(t, []string{"bot"}, []clientSpec{{"fresh", []string{`{path: "/repos/acme/**", max_age: 1h}`}}}, nil)
	const path = "/repos/acme/widgets"
	first := f.do(t, "fresh", "GET", path, "")
	if first.status != 200 || first.header.Get(cache.Header) != cache.Miss {
		t.Fatalf("first: %d %s", first.status, first.header.Get(cache.Header))
	}
	if r := f.do(t, "fresh", "GET", path, ""); r.header.Get(cache.Header) != cache.Hit {
		t.Fatalf("within max_age: %s", r.header.Get(cache.Header))
	}
	cases := []struct {
		name, header, value string
		status              int
	}{
		{"If-Match that fails", "If-Match", `W/"not-the-current-one"`, http.StatusPreconditionFailed},
		{"If-Match *", "If-Match", "*", http.StatusOK},
		{"If-Unmodified-Since in the past", "If-Unmodified-Since", "Mon, 01 Jan 2001 00:00:00 GMT", http.StatusPreconditionFailed},
		{"Range", "Range", "bytes=0-9", http.StatusOK},
		{"If-Range", "If-Range", first.header.Get("ETag"), http.StatusOK},
	}
	for _, tc := range cases {
		calls := f.calls()
		r := f.do(t, "fresh", "GET", path, "", tc.header, tc.value)
		if r.status != tc.status || r.header.Get(cache.Header) != cache.Bypass {
			t.Errorf("%s: %d %s, want %d BYPASS", tc.name, r.status, r.header.Get(cache.Header), tc.status)
		}
		if f.calls() != calls+1 {
			t.Errorf("%s: answered without asking GitHub", tc.name)
		}
	}
	// The 412s were not stored: a plain request still gets the body.
	if r := f.do(t, "fresh", "GET", path, ""); r.status != 200 || r.body != first.body || r.header.Get(cache.Header) != cache.Hit {
		t.Fatalf("after the preconditions: %d %s", r.status, r.header.Get(cache.Header))
	}
}

// TestSpentCounter: glb_proxy_spent_requests_total charges each client
// with exactly the upstream calls that githubsim counted against a rate
// limit: misses, changes, errors, bypasses and GraphQL, but not 304s,
// coalesced followers, refusals retried on another credential, or the
// pool's own answer when every credential is exhausted.
func TestSpentCounter(t *testing.T) {
	f := newFixture(t, []string{"a", "b"}, matrixClients, nil)
	q := `{"query":"query { repository(owner: \"acme\", name: \"widgets\") { name } }"}`
	f.sim.SetRemaining("a", "core", 0) // the first core request is refused by a, then served by b
	steps := []struct {
		client, method, path, body string
	}{
		{"reader", "GET", "/repos/acme/widgets", ""},                            // MISS after a's refusal: 1
		{"reader", "GET", "/repos/acme/widgets", ""},                            // REVALIDATED: 0
		{"org-reader", "GET", "/repos/acme/widgets", ""},                        // REVALIDATED: 0
		{"reader", "GET", "/repos/acme/widgets/issues/9999", ""},                // 404: 1
		{"issue-writer", "POST", "/repos/acme/widgets/issues", `{"title":"t"}`}, // BYPASS write: 1
		{"gql-reader", "POST", "/graphql", q},                                   // graphql: 1
	}
	for _, s := range steps {
		if r := f.do(t, s.client, s.method, s.path, s.body); r.status >= 500 {
			t.Fatalf("%s %s: %d", s.method, s.path, r.status)
		}
	}
	// Every credential exhausted for core: the pool answers, GitHub
	// counts nothing.
	f.sim.SetRemaining("b", "core", 0)
	if r := f.do(t, "org-reader", "GET", "/orgs/acme", ""); r.status != http.StatusForbidden {
		t.Fatalf("all exhausted: %d", r.status)
	}
	m := f.metrics(t)
	want := map[string]float64{
		`client="reader",resource="core"`:        2,
		`client="issue-writer",resource="core"`:  1,
		`client="gql-reader",resource="graphql"`: 1,
	}
	var sum float64
	for _, l := range strings.Split(m, "\n") {
		labels, ok := strings.CutPrefix(l, "glb_proxy_spent_requests_total{")
		if !ok {
			continue
		}
		var v float64
		fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v)
		sum += v
		key := labels[:strings.IndexByte(labels, '}')]
		if want[key] != v {
			t.Errorf("spent{%s} = %v, want %v", key, v, want[key])
		}
		delete(want, key)
	}
	for k, v := range want {
		t.Errorf("spent{%s} missing, want %v", k, v)
	}
	if c := f.sim.Stats().Total.Counted; float64(c) != sum {
		t.Errorf("spent counter sums to %v, githubsim counted %d", sum, c)
	}
}

// TestKeyedHeadersReachTheKeys: headers forwarded to GitHub under
// GitHub's spelling (X-GitHub-Api-Version, GraphQL-Features) are the ones
// the cache and the coalescer key on, through the real handler: two API
// versions are two upstream calls (the unsupported one gets GitHub's 400,
// not the other's stored 200), and a GraphQL query with preview features
// never shares an answer with the same query without them, neither from
// the store nor in flight.
func TestKeyedHeadersReachTheKeys(t *testing.T) {
	f := newFixture(t, []string{"bot"}, append([]clientSpec{{"fresh", []string{`{path: "/repos/acme/**", max_age: 1h}`}}}, graphQLClients...), nil)
	const path = "/repos/acme/widgets"
	steps := []struct {
		version    string
		wantStatus int
		wantMode   string
		wantCalls  int
	}{
		{"2022-11-28", 200, cache.Miss, 1},
		{"2022-11-28", 200, cache.Hit, 0},
		{"2026-03-10", 200, cache.Miss, 1},
		{"1999-01-01", 400, cache.Miss, 1},
		{"", 200, cache.Miss, 1},
	}
	for _, s := range steps {
		var hdr []string
		if s.version != "" {
			hdr = []string{"X-GitHub-Api-Version", s.version}
		}
		calls := f.calls()
		r := f.do(t, "fresh", "GET", path, "", hdr...)
		if r.status != s.wantStatus || r.header.Get(cache.Header) != s.wantMode || f.calls()-calls != s.wantCalls {
			t.Errorf("REST with version %q: %d %s, %d upstream calls; want %d %s, %d calls", s.version, r.status,
				r.header.Get(cache.Header), f.calls()-calls, s.wantStatus, s.wantMode, s.wantCalls)
		}
	}

	q := issuesQuery("owner", "name", "states")
	for _, s := range []struct {
		features  string
		wantMode  string
		wantCalls int
	}{
		{"sub_issues", cache.Miss, 1},
		{"sub_issues", cache.Hit, 0},
		{"", cache.Miss, 1},
		{"sub_issues,issue_types", cache.Miss, 1},
	} {
		var hdr []string
		if s.features != "" {
			hdr = []string{"GraphQL-Features", s.features}
		}
		before := f.gqlStats().Calls
		r := f.do(t, "gq-fresh", "POST", "/graphql", q, hdr...)
		if r.status != 200 || r.header.Get(cache.Header) != s.wantMode || f.gqlStats().Calls-before != s.wantCalls {
			t.Errorf("GraphQL with features %q: %d %s, %d upstream calls; want 200 %s, %d calls", s.features, r.status,
				r.header.Get(cache.Header), f.gqlStats().Calls-before, s.wantMode, s.wantCalls)
		}
	}

	// In flight: with and without features at once both reach GitHub.
	arrived, release := holdArrivals(f)
	defer func() { f.sim.Hold = nil }()
	var wg sync.WaitGroup
	var replies [2]reply
	for i, features := range []string{"sub_issues", ""} {
		var hdr []string
		if features != "" {
			hdr = []string{"GraphQL-Features", features}
		}
		wg.Add(1)
		go func() { defer wg.Done(); replies[i] = f.do(t, "gq", "POST", "/graphql", q, hdr...) }()
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			close(release)
			wg.Wait()
			t.Fatal("a query with GraphQL-Features and one without were merged into one upstream call")
		}
	}
	close(release)
	wg.Wait()
	for _, r := range replies {
		if r.status != 200 || r.header.Get(cache.Header) != cache.Miss {
			t.Errorf("in flight: %d %s, want 200 MISS", r.status, r.header.Get(cache.Header))
		}
	}
}
