package proxy_test

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/glb-project/glb/proxy/config"
	"github.com/glb-project/glb/proxy/server"
	"github.com/glb-project/glb/test/githubsim"
)

// inProcess runs the proxy's handler in this process on a loopback
// listener (real HTTP, real code; no binary to start per iteration).
func inProcess(tb testing.TB, w *world, creds []string, extra string, o server.Options) *httptest.Server {
	tb.Helper()
	doc := fmt.Sprintf("listen: 127.0.0.1:0\nupstream: {rest: %q}\nclients_file: %q\n", w.ts.URL, w.clients) + w.credentialsYAML(creds...) + extra
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		tb.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range w.env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if err := cfg.ResolveSecrets(func(k string) string { return env[k] }); err != nil {
		tb.Fatal(err)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	p, err := server.New(cfg, o)
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewServer(p)
	tb.Cleanup(ts.Close)
	return ts
}

// trace is a CI-like workload: waves of jobs that start together (a push
// triggers a pipeline), each polling a handful of the same repositories'
// resources; now and then something changes upstream.
type trace struct {
	jobs, waves, perJob int
	changeEvery         int // waves between upstream changes
	seed                uint64
	// graphQL adds, per job and wave, the query gh pr list sends (one of
	// two repositories), after the job's REST polls.
	graphQL bool
	// graphQLScope is the teams' GraphQL scope; "" means {graphql: query}.
	graphQLScope string
}

// prListQuery is a GraphQL poll like gh pr list's.
func prListQuery(owner, repo string) string {
	return fmt.Sprintf(`{"query":"query PullRequestList($owner: String!, $repo: String!, $limit: Int!) { repository(owner: $owner, name: $repo) { pullRequests(first: $limit, states: [OPEN]) { totalCount nodes { number title headRefName } } } }","variables":{"owner":%q,"repo":%q,"limit":30}}`, owner, repo)
}

var ciTrace = trace{jobs: 24, waves: 20, perJob: 6, changeEvery: 4, seed: 42}

var traceResources = []string{
	"/repos/acme/widgets",
	"/repos/acme/widgets/issues?state=open&per_page=30",
	"/repos/acme/widgets/pulls?state=open",
	"/repos/acme/widgets/commits?per_page=10",
	"/repos/acme/widgets/branches",
	"/repos/acme/widgets/pulls/5",
	"/repos/acme/widgets/issues/1/comments",
	"/repos/acme/widgets/contents/README.md",
	"/repos/octo/hello",
	"/repos/octo/hello/issues",
	"/repos/octo/hello/commits?per_page=5",
	"/repos/acme/widgets/labels",
}

// economy replays tr through a proxy and returns the client requests sent
// and the share of them that spent upstream rate limit.
func economy(tb testing.TB, tr trace, o server.Options) (requests int, spent float64) {
	requests, spent, _ = economyGraphQL(tb, tr, o)
	return requests, spent
}

// economyGraphQL is economy that also returns the share of the trace's
// GraphQL requests that reached GitHub (0 without GraphQL polls).
func economyGraphQL(tb testing.TB, tr trace, o server.Options) (requests int, spent, graphQLSpent float64) {
	tb.Helper()
	gqlScope := tr.graphQLScope
	if gqlScope == "" {
		gqlScope = `{graphql: query}`
	}
	teams := map[string][]string{}
	for i := range 4 {
		teams[fmt.Sprintf("team-%d", i)] = []string{`{path: "/repos/**"}`, gqlScope}
	}
	w := newWorld(tb, []string{"bot-1", "bot-2", "bot-3"}, teams)
	ts := inProcess(tb, w, []string{"bot-1", "bot-2", "bot-3"}, "", o)
	rng := rand.New(rand.NewPCG(tr.seed, tr.seed))
	// Each job polls a fixed subset, as a CI job's script does.
	subsets := make([][]string, tr.jobs)
	for j := range subsets {
		perm := rng.Perm(len(traceResources))
		for _, i := range perm[:tr.perJob] {
			subsets[j] = append(subsets[j], traceResources[i])
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	var failures sync.Map
	graphQLRequests := 0
	for wave := range tr.waves {
		if wave > 0 && wave%tr.changeEvery == 0 {
			if wave/tr.changeEvery%2 == 0 {
				w.sim.CreateIssue("acme", "widgets", fmt.Sprintf("found in wave %d", wave), "")
			} else {
				w.sim.PushCommit("acme", "widgets", "main", fmt.Sprintf("wave %d", wave))
			}
		}
		var wg sync.WaitGroup
		for j := range tr.jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok := w.tokens[fmt.Sprintf("team-%d", j%4)]
				for _, path := range subsets[j] {
					req, _ := http.NewRequest("GET", ts.URL+path, nil)
					req.Header.Set("Authorization", "token "+tok)
					resp, err := client.Do(req)
					if err != nil {
						failures.Store(path, err.Error())
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failures.Store(path, resp.Status)
					}
				}
				if !tr.graphQL {
					return
				}
				repo := []string{"widgets", "hello"}[j%2]
				owner := map[string]string{"widgets": "acme", "hello": "octo"}[repo]
				req, _ := http.NewRequest("POST", ts.URL+"/graphql", strings.NewReader(prListQuery(owner, repo)))
				req.Header.Set("Authorization", "token "+tok)
				resp, err := client.Do(req)
				if err != nil {
					failures.Store("graphql", err.Error())
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(b), `"totalCount"`) {
					failures.Store("graphql", resp.Status+" "+string(b))
				}
			}()
		}
		wg.Wait()
		requests += tr.jobs * tr.perJob
		if tr.graphQL {
			requests += tr.jobs
			graphQLRequests += tr.jobs
		}
	}
	failures.Range(func(k, v any) bool { tb.Errorf("%s: %v", k, v); return true })
	st := w.sim.Stats()
	gqlCalls := 0
	for _, l := range st.Labels {
		gqlCalls += l.Resources["graphql"].Calls
	}
	if graphQLRequests > 0 {
		graphQLSpent = 100 * float64(gqlCalls) / float64(graphQLRequests)
	}
	return requests, 100 * float64(st.Total.Counted) / float64(requests), graphQLSpent
}

// BenchmarkEconomy replays the CI trace through glb-proxy and, in the
// same run, through the same code with mechanisms turned off, and reports
// the share of client requests that spent upstream rate limit:
//
//   - glb: everything on;
//   - baseline, the issue's definition: no coalescing and no 304 merging
//     (no stored validators go upstream, so every request that is not
//     shared is a full, counted call; the trace's jobs send no validators
//     of their own, as fresh CI jobs do not);
//   - naive-cache: a cache that revalidates but neither coalesces nor
//     keeps credential affinity (a revalidation goes to whichever
//     credential has the most left, whose ETag differs);
//   - each of coalescing and affinity off alone.
func BenchmarkEconomy(b *testing.B) {
	configs := []struct {
		unit string
		o    server.Options
	}{
		{"glb-%spent", server.Options{}},
		{"baseline-%spent", server.Options{NoCoalesce: true, NoRevalidate: true}},
		{"naive-cache-%spent", server.Options{NoCoalesce: true, NoAffinity: true}},
		// Each mechanism alone, to show what it is worth.
		{"no-coalesce-%spent", server.Options{NoCoalesce: true}},
		{"no-affinity-%spent", server.Options{NoAffinity: true}},
	}
	sums := make([]float64, len(configs))
	var n int
	for range b.N {
		for i, c := range configs {
			r, spent := economy(b, ciTrace, c.o)
			sums[i] += spent
			n = r
		}
	}
	for i, c := range configs {
		b.ReportMetric(sums[i]/float64(b.N), c.unit)
	}
	b.ReportMetric(float64(n), "requests/trace")
}

// BenchmarkEconomyGraphQL replays the CI trace with a GraphQL poll per job
// and wave (gh pr list's query, on one of two repositories) and reports,
// in the same run, the share of all client requests that spent rate limit
// and the share of the GraphQL requests that reached GitHub: with GraphQL
// queries coalesced (the default), with {graphql: query, max_age: 30s},
// and with GraphQL sharing off (every query to GitHub, as before).
func BenchmarkEconomyGraphQL(b *testing.B) {
	gql := ciTrace
	gql.graphQL = true
	fresh := gql
	fresh.graphQLScope = `{graphql: query, max_age: 30s}`
	configs := []struct {
		name string
		tr   trace
		o    server.Options
	}{
		{"coalesced", gql, server.Options{}},
		{"max-age-30s", fresh, server.Options{}},
		{"no-graphql-share", gql, server.Options{NoGraphQLShare: true}},
	}
	sums := make([][2]float64, len(configs))
	var n int
	for range b.N {
		for i, c := range configs {
			r, spent, gqlSpent := economyGraphQL(b, c.tr, c.o)
			sums[i][0] += spent
			sums[i][1] += gqlSpent
			n = r
		}
	}
	for i, c := range configs {
		b.ReportMetric(sums[i][0]/float64(b.N), c.name+"-%spent")
		b.ReportMetric(sums[i][1]/float64(b.N), c.name+"-graphql-%upstream")
	}
	b.ReportMetric(float64(n), "requests/trace")
}

// TestEconomyBar holds glb-proxy to the issue's bar on a shorter trace: at
// most 10% of client requests may spend rate limit.
func TestEconomyBar(t *testing.T) {
	tr := trace{jobs: 12, waves: 8, perJob: 5, changeEvery: 3, seed: 7}
	n, spent := economy(t, tr, server.Options{})
	if spent > 10 {
		t.Fatalf("%.1f%% of %d client requests spent rate limit; the bar is 10%%", spent, n)
	}
	t.Logf("%.1f%% of %d client requests spent rate limit", spent, n)
}

// latencies collects request durations from parallel workers.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, elapsed time.Duration) {
	sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
	if len(l.d) == 0 {
		return
	}
	q := func(p float64) float64 { return float64(l.d[int(p*float64(len(l.d)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(len(l.d))/elapsed.Seconds(), "req/s")
}

// BenchmarkSpeed measures cache-hit throughput and latency through
// glb-proxy beside a direct-to-githubsim baseline, all on loopback in
// this process: direct (client -> githubsim with a PAT), hit (a scope
// with max_age: answered from the cache), revalidated (the default: a 304
// from githubsim each time).
func BenchmarkSpeed(b *testing.B) {
	w := newWorld(b, []string{"bot"}, map[string][]string{
		"fresh":  {`{path: "/repos/**", max_age: 1h}`},
		"strict": {`{path: "/repos/**"}`},
	})
	// A benchmark makes more requests than GitHub's hourly limit.
	w.sim.Limits = map[string]githubsim.Limit{"core": {N: 1 << 30, Window: time.Hour}}
	ts := inProcess(b, w, []string{"bot"}, "", server.Options{})
	const path = "/repos/acme/widgets"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 64}}
	for _, tc := range []struct{ name, base, auth string }{
		{"direct", w.ts.URL, "token " + w.pats["bot"]},
		{"hit", ts.URL, "token " + w.tokens["fresh"]},
		{"revalidated", ts.URL, "token " + w.tokens["strict"]},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w.sim.ResetLimits()
			warm, _ := http.NewRequest("GET", tc.base+path, nil)
			warm.Header.Set("Authorization", tc.auth)
			if resp, err := client.Do(warm); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			var l latencies
			b.SetParallelism(4)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", tc.base+path, nil)
					req.Header.Set("Authorization", tc.auth)
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					l.add(time.Since(t0))
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			l.report(b, elapsed)
		})
	}
}
