package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/fakeclock"
	"github.com/glb-project/glb/proxy/cache"
	"github.com/glb-project/glb/proxy/clients"
	"github.com/glb-project/glb/proxy/redistest"
	"github.com/glb-project/glb/proxy/route"
	"github.com/glb-project/glb/test/githubsim"
)

var graphQLClients = []clientSpec{
	{"gq", []string{`{graphql: query}`}},
	{"gq-fresh", []string{`{graphql: query, max_age: 30s}`}},
	{"gq-any-fresh", []string{`{graphql: any, max_age: 30s}`}},
	{"rest-only", []string{`{path: "/**", max_age: 1h}`}},
}

// issuesQuery lists acme/widgets' open issues; the variables are written
// in the key order given.
func issuesQuery(order ...string) string {
	vars := map[string]string{"owner": `"acme"`, "name": `"widgets"`, "states": `["OPEN"]`}
	var parts []string
	for _, k := range order {
		parts = append(parts, strconv.Quote(k)+": "+vars[k])
	}
	q := `query Issues($owner: String!, $name: String!, $states: [IssueState!]) { repository(owner: $owner, name: $name) { issues(first: 5, states: $states) { totalCount nodes { title } } } }`
	return fmt.Sprintf(`{"query": %q, "variables": {%s}}`, q, strings.Join(parts, ", "))
}

// gqlStats are githubsim's GraphQL counts.
func (f *fixture) gqlStats() githubsim.ResourceStats {
	var sum githubsim.ResourceStats
	for _, l := range f.sim.Stats().Labels {
		r := l.Resources["graphql"]
		sum.Calls += r.Calls
		sum.Counted += r.Counted
		sum.Points += r.Points
	}
	return sum
}

// TestGraphQLConcurrentQueriesOneUpstreamCall: N identical queries (the
// same document and variables, in different key orders) held at GitHub
// until all of them wait make one upstream call and spend the points
// once; the followers are COALESCED and charged nothing.
func TestGraphQLConcurrentQueriesOneUpstreamCall(t *testing.T) {
	f := newFixture(t, []string{"bot"}, graphQLClients, nil)
	const n = 12
	release := make(chan struct{})
	f.sim.Hold = func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/graphql") {
			<-release
		}
	}
	orders := [][]string{{"owner", "name", "states"}, {"states", "name", "owner"}, {"name", "owner", "states"}}
	var wg sync.WaitGroup
	replies := make([]reply, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = f.do(t, "gq", "POST", "/graphql", issuesQuery(orders[i%len(orders)]...))
		}()
	}
	f.waitWaiting(t, n, release)
	close(release)
	wg.Wait()
	st := f.gqlStats()
	if st.Calls != 1 || st.Counted != 1 || st.Points < 1 {
		t.Fatalf("%d concurrent identical queries: %d upstream calls, %d counted, %d points; want 1 call", n, st.Calls, st.Counted, st.Points)
	}
	modes := map[string]int{}
	for _, r := range replies {
		modes[r.header.Get(cache.Header)]++
		if r.status != 200 || r.body != replies[0].body || !strings.Contains(r.body, `"totalCount"`) {
			t.Errorf("reply %d %s, want the leader's answer %s", r.status, r.body, replies[0].body)
		}
	}
	if modes[cache.Miss] != 1 || modes[cache.Coalesced] != n-1 {
		t.Errorf("modes %v, want 1 MISS and %d COALESCED", modes, n-1)
	}
	// The same query once more, alone: it spends what the shared call did,
	// so the N clients together spent one query's points.
	f.sim.Hold = nil
	f.do(t, "gq", "POST", "/graphql", issuesQuery("owner", "name", "states"))
	if again := f.gqlStats().Points - st.Points; again != st.Points {
		t.Errorf("one query costs %d points; the %d shared ones cost %d together", again, n, st.Points)
	}
	m := f.metrics(t)
	for _, want := range []string{
		`glb_proxy_spent_requests_total{client="gq",resource="graphql"} 2`,
		fmt.Sprintf(`glb_proxy_saved_requests_total{client="gq"} %d`, n-1),
		fmt.Sprintf(`glb_proxy_requests_total{cache="COALESCED",client="gq",code="200",method="POST",route="/graphql"} %d`, n-1),
		fmt.Sprintf(`glb_proxy_coalesced_requests_total %d`, n-1),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestGraphQLMaxAge: with {graphql: query, max_age: 30s} an identical
// query within the window is a HIT that costs nothing, even after a
// change upstream; after the window it goes to GitHub and sees the change.
// A client without max_age, and one without a GraphQL query scope, never
// get the stored answer. With the memory store and with Redis.
func TestGraphQLMaxAge(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			yaml := ""
			if store == "redis" {
				rs := redistest.Start(t)
				yaml = fmt.Sprintf("cache: {redis: %q}\n", "redis://"+rs.Addr+"/0")
			}
			clk := fakeclock.New(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
			f := newFixtureWith(t, []string{"bot"}, graphQLClients, fixtureOptions{yaml: yaml, proxy: func(o *Options) { o.Now = clk.Now }})
			q := issuesQuery("owner", "name", "states")
			total := func(r reply) int {
				var out struct {
					Data struct {
						Repository struct {
							Issues struct{ TotalCount int }
						}
					}
				}
				if err := json.Unmarshal([]byte(r.body), &out); err != nil {
					t.Fatalf("answer %d %q: %v", r.status, r.body, err)
				}
				return out.Data.Repository.Issues.TotalCount
			}
			step := func(client, wantMode string, wantCalls int) reply {
				t.Helper()
				before := f.gqlStats()
				r := f.do(t, client, "POST", "/graphql", q)
				after := f.gqlStats()
				if r.status != 200 || r.header.Get(cache.Header) != wantMode || after.Calls-before.Calls != wantCalls {
					t.Fatalf("%s: %d %s, %d upstream calls; want 200 %s, %d calls (%s)", client, r.status, r.header.Get(cache.Header),
						after.Calls-before.Calls, wantMode, wantCalls, r.body)
				}
				if wantMode == cache.Hit && after.Points != before.Points {
					t.Fatalf("a HIT spent %d points", after.Points-before.Points)
				}
				return r
			}
			first := step("gq-fresh", cache.Miss, 1)
			step("gq-fresh", cache.Hit, 0)
			f.sim.CreateIssue("acme", "widgets", "seen after the window", "")
			clk.Advance(29 * time.Second)
			if r := step("gq-fresh", cache.Hit, 0); total(r) != total(first) {
				t.Errorf("HIT within the window: %d issues, want the stored %d", total(r), total(first))
			}
			// Without max_age: never from the store, whatever it holds.
			if r := step("gq", cache.Miss, 1); total(r) != total(first)+1 {
				t.Errorf("client without max_age: %d issues, want the new %d", total(r), total(first)+1)
			}
			// No GraphQL scope: refused before the cache is looked at.
			before := f.gqlStats().Calls
			if r := f.do(t, "rest-only", "POST", "/graphql", q); r.status != http.StatusForbidden || f.gqlStats().Calls != before || strings.Contains(r.body, "totalCount") {
				t.Fatalf("client without a graphql scope: %d %s", r.status, r.body)
			}
			clk.Advance(2 * time.Second) // 31s after the store
			if r := step("gq-fresh", cache.Miss, 1); total(r) != total(first)+1 {
				t.Errorf("after the window: %d issues, want the new %d", total(r), total(first)+1)
			}
			step("gq-any-fresh", cache.Hit, 0) // another client, same window: shared
			m := f.metrics(t)
			for _, want := range []string{
				`glb_proxy_spent_requests_total{client="gq-fresh",resource="graphql"} 2`,
				`glb_proxy_saved_requests_total{client="gq-fresh"} 2`,
				`glb_proxy_requests_total{cache="HIT",client="gq-fresh",code="200",method="POST",route="/graphql"} 2`,
				`glb_proxy_request_duration_seconds_count{cache="HIT",kind="graphql"} 3`,
			} {
				if !strings.Contains(m, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			if strings.Contains(m, `glb_proxy_spent_requests_total{client="gq-any-fresh"`) {
				t.Error("a HIT was charged as spent")
			}
		})
	}
}

// createIssueMutation is a createIssue mutation on acme/widgets (its node
// id read first).
func createIssueMutation(t *testing.T, f *fixture, title string) string {
	t.Helper()
	r := f.do(t, "gq-any-fresh", "POST", "/graphql", `{"query":"{ repository(owner: \"acme\", name: \"widgets\") { id } }"}`)
	var out struct {
		Data struct{ Repository struct{ ID string } }
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || out.Data.Repository.ID == "" {
		t.Fatalf("repository id: %d %s", r.status, r.body)
	}
	q := fmt.Sprintf(`mutation { createIssue(input: {repositoryId: %q, title: %q}) { issue { number title } } }`, out.Data.Repository.ID, title)
	b, _ := json.Marshal(map[string]string{"query": q})
	return string(b)
}

// holdArrivals parks every GraphQL call at GitHub and reports each arrival.
func holdArrivals(f *fixture) (arrived chan struct{}, release chan struct{}) {
	arrived, release = make(chan struct{}, 64), make(chan struct{})
	f.sim.Hold = func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/graphql") {
			arrived <- struct{}{}
			<-release
		}
	}
	return arrived, release
}

// concurrently sends body twice at once and waits until both calls have
// reached GitHub: requests that were merged would never both arrive. The
// first request carries hdr (name, value pairs), the second does not.
func concurrently(t *testing.T, f *fixture, client, body string, hdr ...string) [2]reply {
	t.Helper()
	arrived, release := holdArrivals(f)
	defer func() { f.sim.Hold = nil }()
	var out [2]reply
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		h := hdr
		if i > 0 {
			h = nil
		}
		go func() { defer wg.Done(); out[i] = f.do(t, client, "POST", "/graphql", body, h...) }()
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			close(release)
			wg.Wait()
			t.Fatalf("two identical requests did not both reach GitHub: they were merged (%s)", body)
		}
	}
	close(release)
	wg.Wait()
	return out
}

// TestGraphQLMutationsNeverShared: two identical createIssue mutations,
// at once and one after the other, from a client whose scope has a
// max_age, create four issues.
func TestGraphQLMutationsNeverShared(t *testing.T) {
	f := newFixture(t, []string{"bot"}, graphQLClients, nil)
	m := createIssueMutation(t, f, "same title")
	before := f.gqlStats().Calls
	replies := concurrently(t, f, "gq-any-fresh", m)
	for range 2 {
		replies2 := f.do(t, "gq-any-fresh", "POST", "/graphql", m)
		replies[0].body += replies2.body
		if replies2.header.Get(cache.Header) != cache.Bypass {
			t.Errorf("a mutation is %s, want BYPASS", replies2.header.Get(cache.Header))
		}
	}
	for _, r := range replies {
		if r.status != 200 || r.header.Get(cache.Header) != cache.Bypass {
			t.Errorf("mutation: %d %s %s", r.status, r.header.Get(cache.Header), r.body)
		}
	}
	if calls := f.gqlStats().Calls - before; calls != 4 {
		t.Errorf("4 mutations made %d upstream calls", calls)
	}
	numbers := map[string]bool{}
	for _, n := range regexp.MustCompile(`"number":(\d+)`).FindAllStringSubmatch(replies[0].body+replies[1].body, -1) {
		numbers[n[1]] = true
	}
	if len(numbers) != 4 {
		t.Errorf("4 createIssue mutations created %d distinct issues: %s %s", len(numbers), replies[0].body, replies[1].body)
	}
}

// TestGraphQLIdentityQueriesNeverShared: queries that read the caller
// (viewer, viewer* fields, isViewer, rateLimit, @me) are neither
// coalesced nor stored, wherever the field sits.
func TestGraphQLIdentityQueriesNeverShared(t *testing.T) {
	f := newFixture(t, []string{"bot"}, graphQLClients, nil)
	for _, q := range []string{
		`{"query":"{ viewer { login } }"}`,
		`{"query":"query { repository(owner: \"acme\", name: \"widgets\") { ...R } } fragment R on Repository { name viewerPermission }"}`,
		`{"query":"query { repository(owner: \"acme\", name: \"widgets\") { ... on Repository { viewerCanAdminister } } }"}`,
		`{"query":"{ rateLimit { remaining } }"}`,
		`{"query":"query($q: String!) { search(query: $q, type: ISSUE, first: 3) { issueCount } }","variables":{"q":"author:@me repo:acme/widgets"}}`,
		`{"query":"query($q: String!) { search(query: $q, type: ISSUE, first: 3) { issueCount } }","variables":{"q":"author:\u0040ME"}}`,
		`{"query":"{ search(query: \"assignee:\\u0040me\", type: ISSUE, first: 3) { issueCount } }"}`,
	} {
		replies := concurrently(t, f, "gq-fresh", q)
		for _, r := range replies {
			if r.status != 200 || r.header.Get(cache.Header) != cache.Bypass {
				t.Errorf("%s: %d %s %s", q, r.status, r.header.Get(cache.Header), r.body)
			}
		}
		before := f.gqlStats().Calls
		if r := f.do(t, "gq-fresh", "POST", "/graphql", q); r.header.Get(cache.Header) != cache.Bypass || f.gqlStats().Calls != before+1 {
			t.Errorf("%s after two answers: %s, %d calls; want BYPASS and GitHub asked", q, r.header.Get(cache.Header), f.gqlStats().Calls-before)
		}
	}
}

// TestGraphQLErrorsNeverStored: an answer with errors (a repository that
// does not resolve, a bad field, every credential RATE_LIMITED) is not
// kept for the window: the next identical query asks GitHub again.
func TestGraphQLErrorsNeverStored(t *testing.T) {
	clk := fakeclock.New(time.Now())
	f := newFixture(t, []string{"bot"}, graphQLClients, func(o *Options) { o.Now = clk.Now })
	for _, q := range []string{
		`{"query":"{ repository(owner: \"acme\", name: \"nope\") { name } }"}`,
		`{"query":"{ repository(owner: \"acme\", name: \"widgets\") { noSuchField } }"}`,
	} {
		for i := range 2 {
			before := f.gqlStats().Calls
			r := f.do(t, "gq-fresh", "POST", "/graphql", q)
			if r.status != 200 || !strings.Contains(r.body, `"errors"`) || r.header.Get(cache.Header) != cache.Miss || f.gqlStats().Calls != before+1 {
				t.Errorf("%s #%d: %d %s %s, %d calls; want a MISS from GitHub with errors", q, i, r.status, r.header.Get(cache.Header), r.body, f.gqlStats().Calls-before)
			}
		}
	}
	// RATE_LIMITED: the only credential is out of points.
	q := issuesQuery("owner", "name", "states")
	f.sim.SetRemaining("bot", "graphql", 0)
	if r := f.do(t, "gq-fresh", "POST", "/graphql", q); r.status != http.StatusForbidden {
		t.Fatalf("out of points: %d %s", r.status, r.body)
	}
	if r := f.do(t, "gq-fresh", "POST", "/graphql", q); r.status != http.StatusForbidden || r.header.Get(cache.Header) == cache.Hit {
		t.Fatalf("still out of points: %d %s %s", r.status, r.header.Get(cache.Header), r.body)
	}
	// Points back, and the proxy's clock past the bench.
	f.sim.ResetLimits()
	clk.Advance(2 * time.Hour)
	before := f.gqlStats().Calls
	if r := f.do(t, "gq-fresh", "POST", "/graphql", q); r.status != 200 || r.header.Get(cache.Header) != cache.Miss || f.gqlStats().Calls != before+1 {
		t.Errorf("after points came back: %d %s; want a MISS from GitHub", r.status, r.header.Get(cache.Header))
	}
}

// TestGraphQLBodies: bodies without one canonical meaning are refused as
// before (400, 413) or, when only the variables are ambiguous (a
// duplicate key deep inside), forwarded but never shared.
func TestGraphQLBodies(t *testing.T) {
	f := newFixture(t, []string{"bot"}, graphQLClients, nil)
	for _, tt := range []struct {
		name, body string
		status     int
	}{
		{"not json", `{"query": "{ viewer { login } }"`, http.StatusBadRequest},
		{"duplicate top-level key", `{"query":"{ a }","query":"{ b }"}`, http.StatusBadRequest},
		{"batch", `[{"query":"{ a }"}]`, http.StatusBadRequest},
		{"too large", `{"query":"` + strings.Repeat(" ", maxGraphQLBody) + `{ a }"}`, http.StatusRequestEntityTooLarge},
	} {
		before := f.gqlStats().Calls
		r := f.do(t, "gq-fresh", "POST", "/graphql", tt.body)
		if r.status != tt.status || f.gqlStats().Calls != before || !strings.Contains(r.body, "documentation_url") {
			t.Errorf("%s: %d %s, %d calls; want %d and none", tt.name, r.status, r.body, f.gqlStats().Calls-before, tt.status)
		}
	}
	dup := `{"query":"query($owner: String!) { repository(owner: $owner, name: \"widgets\") { name } }","variables":{"owner":"octo","owner":"acme"}}`
	for range 2 {
		before := f.gqlStats().Calls
		r := f.do(t, "gq-fresh", "POST", "/graphql", dup)
		if r.status != 200 || r.header.Get(cache.Header) != cache.Bypass || f.gqlStats().Calls != before+1 {
			t.Errorf("duplicate variable: %d %s, %d calls; want BYPASS to GitHub", r.status, r.header.Get(cache.Header), f.gqlStats().Calls-before)
		}
	}
}

func TestIdentityQuery(t *testing.T) {
	for _, tt := range []struct {
		query     string
		want      bool
		variables string // JSON; empty: none
	}{
		{query: `query($f: IssueFilters) { repository(owner: "a", name: "b") { issues(filterBy: $f) { totalCount } } }`,
			variables: `{"f": {"viewerSubscribed": true}}`, want: true},
		{query: `query($f: IssueFilters) { repository(owner: "a", name: "b") { issues(filterBy: $f) { totalCount } } }`,
			variables: `{"f": {"states": ["OPEN"]}}`, want: false},
		{query: `query($a: [X]) { node(id: "1") { id } }`, variables: `{"a": [{"deep": {"ViewerCanAdmin": true}}]}`, want: true},
		{`{ viewer { login } }`, true, ""},
		{`query { repository(owner: "a", name: "b") { name } }`, false, ""},
		{`query { repository(owner: "a", name: "b") { viewerHasStarred } }`, true, ""},
		{`query { repository(owner: "a", name: "b") { viewers } }`, true, ""}, // loose on purpose
		{`query { user(login: "a") { isFollowingViewer } }`, true, ""},
		{`query { user(login: "a") { isSponsoringViewer } }`, true, ""},
		{`query { organization(login: "a") { ViewerIsAMember: name } }`, false, ""}, // an alias is not a field
		{`query { user(login: "a") { starredRepositories(ownedByViewer: true) { totalCount } } }`, true, ""},
		{`query { marketplaceListings(viewerCanAdmin: true, first: 5) { totalCount } }`, true, ""},
		{`query { user(login: "a") { repositories(affiliations: [COLLABORATOR], first: 5) { totalCount } } }`, true, ""},
		{`query { user(login: "a") { repositories(ownerAffiliations: [OWNER], first: 5) { totalCount } } }`, true, ""},
		{`query($a: [RepositoryAffiliation]) { organization(login: "a") { repositories(affiliations: $a) { totalCount } } }`, true, ""},
		{`query { repository(owner: "a", name: "b") { issues(filterBy: {viewerSubscribed: true}) { totalCount } } }`, true, ""},
		{`query { user(login: "a") { repositories(first: 5, privacy: PUBLIC) { totalCount } } }`, false, ""},
		{`query { repository(owner: "a", name: "b") { issues(filterBy: {states: [OPEN]}) { totalCount } } }`, false, ""},
		{`fragment F on User { login isViewer } query { user(login: "a") { ...F } }`, true, ""},
		{`query { user(login: "a") { isViewer } }`, true, ""},
		{`query { a: repository(owner: "a", name: "b") { name } } fragment F on User { viewerCanFollow }`, true, ""},
		{`query { search(query: "is:open author:@ME", type: ISSUE) { issueCount } }`, true, ""},
		{`query($q: String = "involves:@me") { search(query: $q, type: ISSUE) { issueCount } }`, true, ""},
		{`query { search(query: """mentions:@me""", type: ISSUE) { issueCount } }`, true, ""},
		{`query { repository(owner: "a", name: "b") @include(if: true) { issues(filterBy: {createdBy: "@me"}) { totalCount } } }`, true, ""},
		{`query { repository(owner: "a", name: "b") { name } rateLimit { cost } }`, true, ""},
	} {
		body := `{"query":` + strconv.Quote(tt.query) + `}`
		if tt.variables != "" {
			body = `{"query":` + strconv.Quote(tt.query) + `,"variables":` + tt.variables + `}`
		}
		g, err := route.ParseGraphQL([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", tt.query, err)
		}
		key, err := cache.GraphQLKey(g.Body)
		if err != nil {
			t.Fatal(err)
		}
		if got := identityQuery(g, key); got != tt.want {
			t.Errorf("%s: identity %v, want %v", tt.query, got, tt.want)
		}
		if _, shared := graphQLPolicy(g, clientsGrant30s); shared == tt.want {
			t.Errorf("%s: shared %v, want %v", tt.query, shared, !tt.want)
		}
	}
}

var clientsGrant30s = clients.Grant{MaxAge: 30 * time.Second}

// TestGraphQLPreconditionsNeverShared: as for REST, a query with If-Match,
// If-Unmodified-Since, Range or If-Range goes to GitHub with the header,
// as BYPASS: never answered from the store within max_age, never merged
// with the same query without the header (whose answer may be a 412 or a
// part for one of them), never stored.
func TestGraphQLPreconditionsNeverShared(t *testing.T) {
	f := newFixture(t, []string{"bot"}, graphQLClients, nil)
	q := issuesQuery("owner", "name", "states")
	if r := f.do(t, "gq-fresh", "POST", "/graphql", q); r.header.Get(cache.Header) != cache.Miss {
		t.Fatalf("first: %d %s", r.status, r.header.Get(cache.Header))
	}
	for _, h := range [][2]string{
		{"If-Match", `"abc"`},
		{"If-Unmodified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"},
		{"Range", "bytes=0-9"},
		{"If-Range", `"abc"`},
	} {
		before := f.gqlStats().Calls
		r := f.do(t, "gq-fresh", "POST", "/graphql", q, h[0], h[1])
		if r.header.Get(cache.Header) != cache.Bypass || f.gqlStats().Calls != before+1 {
			t.Errorf("%s within max_age: %d %s, %d calls; want BYPASS and GitHub asked", h[0], r.status, r.header.Get(cache.Header), f.gqlStats().Calls-before)
		}
		replies := concurrently(t, f, "gq", q, h[0], h[1])
		if m := replies[0].header.Get(cache.Header); m != cache.Bypass {
			t.Errorf("%s in flight: %s, want BYPASS", h[0], m)
		}
	}
	// Nothing the preconditioned requests got replaced the stored answer.
	before := f.gqlStats().Calls
	if r := f.do(t, "gq-fresh", "POST", "/graphql", q); r.header.Get(cache.Header) != cache.Hit || f.gqlStats().Calls != before {
		t.Errorf("plain query after them: %s, %d calls; want a HIT", r.header.Get(cache.Header), f.gqlStats().Calls-before)
	}
}
