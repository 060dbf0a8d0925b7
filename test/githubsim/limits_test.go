package githubsim

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestConditionalRequests(t *testing.T) {
	clock := newClock()
	s, ts := newSim(t, withClock(clock))
	const path = "/repos/acme/widgets/issues?per_page=5"
	first := get(t, ts, path, tokBot)
	tag, lm := first.header.Get("ETag"), first.header.Get("Last-Modified")
	if !strings.HasPrefix(tag, `W/"`) || !strings.HasSuffix(tag, `"`) {
		t.Fatalf("ETag %q is not weak", tag)
	}
	if lm == "" {
		t.Fatal("no Last-Modified")
	}
	tests := []struct {
		name     string
		token    string
		header   string
		status   int
		notModOK bool
	}{
		{"same token, same ETag", tokBot, "If-None-Match: " + tag, 304, true},
		{"strong form of the weak ETag", tokBot, "If-None-Match: " + strings.TrimPrefix(tag, "W/"), 304, true},
		{"one of a list", tokBot, `If-None-Match: "nope", ` + tag, 304, true},
		{"star", tokBot, "If-None-Match: *", 304, true},
		{"another token's ETag does not match", tokCI, "If-None-Match: " + tag, 200, false},
		{"a stale ETag", tokBot, `If-None-Match: W/"0000"`, 200, false},
		{"If-Modified-Since at Last-Modified", tokBot, "If-Modified-Since: " + lm, 304, true},
		{"If-Modified-Since before Last-Modified", tokBot, "If-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT", 200, false},
		{"If-None-Match wins over If-Modified-Since", tokBot, "If-None-Match: W/\"0000\"", 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.ResetStats()
			before := get(t, ts, "/rate_limit", tt.token).obj(t)
			r := get(t, ts, path, tt.token, tt.header)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d", r.status, tt.status)
			}
			after := get(t, ts, "/rate_limit", tt.token).obj(t)
			spent := dig(after, "resources", "core", "used").(float64) - dig(before, "resources", "core", "used").(float64)
			st := s.Stats().Labels[map[string]string{tokBot: "bot", tokCI: "ci"}[tt.token]]
			if tt.notModOK {
				if spent != 0 || st.Counted != 0 || st.NotModified != 1 {
					t.Errorf("a 304 spent %v, stats %+v", spent, st)
				}
				if len(r.body) != 0 {
					t.Errorf("304 with a body: %q", r.body)
				}
				for _, h := range []string{"X-RateLimit-Remaining", "X-RateLimit-Limit", "X-RateLimit-Used", "X-RateLimit-Reset", "X-GitHub-Request-Id", "ETag", "Link"} {
					if r.header.Get(h) == "" {
						t.Errorf("304 without %s", h)
					}
				}
				if r.header.Get("X-GitHub-Request-Id") == first.header.Get("X-GitHub-Request-Id") {
					t.Error("304 reuses the request id")
				}
			} else if spent != 1 || st.Counted != 1 || st.NotModified != 0 {
				t.Errorf("a 200 spent %v, stats %+v", spent, st)
			}
		})
	}

	// A change is seen: the ETag moves and the old one no longer matches.
	clock.Advance(time.Minute)
	s.CreateIssue("acme", "widgets", "A change", "")
	r := get(t, ts, path, tokBot, "If-None-Match: "+tag)
	if r.status != 200 || r.header.Get("ETag") == tag {
		t.Errorf("after a change: %d, ETag %q", r.status, r.header.Get("ETag"))
	}
	if r := get(t, ts, path, tokBot, "If-Modified-Since: "+lm); r.status != 200 {
		t.Errorf("If-Modified-Since after a change: %d", r.status)
	}
}

// TestNotModifiedCarriesFreshLink shows that a 304 brings the current Link
// header: the body of page 1 does not change when an issue is added at the
// end of an oldest-first list, but the number of pages does.
func TestNotModifiedCarriesFreshLink(t *testing.T) {
	s, ts := newSim(t)
	const path = "/repos/octo/hello/issues?state=all&direction=asc&per_page=2"
	r := get(t, ts, path, tokBot)
	if !strings.Contains(r.header.Get("Link"), "page=2") {
		t.Fatalf("Link = %q", r.header.Get("Link"))
	}
	s.CreateIssue("octo", "hello", "five", "")
	s.CreateIssue("octo", "hello", "six", "")
	r2 := get(t, ts, path, tokBot, "If-None-Match: "+r.header.Get("ETag"))
	if r2.status != 304 {
		t.Fatalf("status %d", r2.status)
	}
	if !strings.Contains(r2.header.Get("Link"), `page=3&per_page=2&state=all>; rel="last"`) {
		t.Errorf("304 Link = %q, want the new last page", r2.header.Get("Link"))
	}
}

func TestPrimaryLimits(t *testing.T) {
	clock := newClock()
	s, ts := newSim(t, withClock(clock), func(s *Server) {
		s.Limits = map[string]Limit{"core": {N: 3}, "search": {N: 2}}
	})
	spend := func(path, token string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if r := get(t, ts, path, token); r.status != 200 {
				t.Fatalf("call %d to %s: %d %s", i, path, r.status, r.body)
			}
		}
	}
	spend("/repos/acme/widgets", tokBot, 3)
	r := get(t, ts, "/repos/acme/widgets", tokBot)
	if r.status != 403 {
		t.Fatalf("exhausted core: %d", r.status)
	}
	if r.header.Get("X-RateLimit-Remaining") != "0" || r.header.Get("X-RateLimit-Resource") != "core" || r.header.Get("X-RateLimit-Limit") != "3" {
		t.Errorf("headers %v", r.header)
	}
	reset, _ := strconv.ParseInt(r.header.Get("X-RateLimit-Reset"), 10, 64)
	if want := clock.Now().Add(time.Hour).Unix(); reset != want {
		t.Errorf("reset %d, want %d", reset, want)
	}
	msg := dig(r.json(t), "message").(string)
	if !strings.HasPrefix(msg, "API rate limit exceeded for user ID ") || !strings.Contains(msg, r.header.Get("X-GitHub-Request-Id")) {
		t.Errorf("message %q", msg)
	}
	if !strings.HasPrefix(dig(r.json(t), "documentation_url").(string), "https://docs.github.com/rest/overview/rate-limits") {
		t.Errorf("documentation_url %v", dig(r.json(t), "documentation_url"))
	}
	// A conditional request for an exhausted credential is refused too.
	if r := get(t, ts, "/repos/acme/widgets", tokBot, `If-None-Match: *`); r.status != 403 {
		t.Errorf("conditional when exhausted: %d", r.status)
	}
	// Other resources and other tokens are unaffected; /rate_limit is free.
	spend("/search/issues?q=repo:acme/widgets", tokBot, 2)
	spend("/repos/acme/widgets", tokCI, 3)
	spend("/rate_limit", tokBot, 5)
	if r := get(t, ts, "/search/repositories?q=widgets", tokBot); r.status != 403 || r.header.Get("X-RateLimit-Resource") != "search" {
		t.Errorf("exhausted search: %d %v", r.status, r.header.Get("X-RateLimit-Resource"))
	}
	st := s.Stats().Labels["bot"]
	if st.Resources["core"].Counted != 3 || st.Resources["core"].Limited != 2 || st.Resources["search"].Counted != 2 ||
		st.Resources["search"].Limited != 1 || st.Counted != 5 {
		t.Errorf("stats %+v", st)
	}
	// The search window is a minute, core's an hour.
	clock.Advance(time.Minute)
	spend("/search/issues?q=widgets", tokBot, 1)
	if r := get(t, ts, "/repos/acme/widgets", tokBot); r.status != 403 {
		t.Errorf("core after a minute: %d", r.status)
	}
	clock.Advance(time.Hour)
	spend("/repos/acme/widgets", tokBot, 1)
	if r := get(t, ts, "/repos/acme/widgets", tokBot); r.header.Get("X-RateLimit-Remaining") != "1" {
		t.Errorf("remaining in a new window %q", r.header.Get("X-RateLimit-Remaining"))
	}
}

func TestLimitStatus429AndSetRemaining(t *testing.T) {
	s, ts := newSim(t, func(s *Server) { s.LimitStatus = http.StatusTooManyRequests })
	s.SetRemaining("bot", "core", 1)
	if r := get(t, ts, "/repos/acme/widgets", tokBot); r.status != 200 || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("last call: %d remaining %q", r.status, r.header.Get("X-RateLimit-Remaining"))
	}
	if r := get(t, ts, "/repos/acme/widgets", tokBot); r.status != 429 {
		t.Errorf("exhausted: %d", r.status)
	}
	s.SetRemaining("bot", "core", 10)
	if r := get(t, ts, "/repos/acme/widgets", tokBot); r.status != 200 || r.header.Get("X-RateLimit-Remaining") != "9" {
		t.Errorf("after SetRemaining: %d %q", r.status, r.header.Get("X-RateLimit-Remaining"))
	}
	s.SetLimit("ci", "core", 15000)
	if r := get(t, ts, "/repos/acme/widgets", tokCI); r.header.Get("X-RateLimit-Limit") != "15000" {
		t.Errorf("SetLimit: %q", r.header.Get("X-RateLimit-Limit"))
	}
}

func TestSecondaryLimit(t *testing.T) {
	clock := newClock()
	s, ts := newSim(t, withClock(clock))
	s.TriggerSecondaryLimit("bot", 90*time.Second)
	r := get(t, ts, "/repos/acme/widgets", tokBot)
	if r.status != 403 || r.header.Get("Retry-After") != "90" {
		t.Fatalf("status %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	if r.header.Get("X-RateLimit-Remaining") == "0" {
		t.Error("a secondary limit reports the primary as exhausted")
	}
	if !strings.HasPrefix(dig(r.json(t), "message").(string), "You have exceeded a secondary rate limit") ||
		!strings.HasSuffix(dig(r.json(t), "documentation_url").(string), "secondary-rate-limits") {
		t.Errorf("body %s", r.body)
	}
	if r := get(t, ts, "/repos/acme/widgets", tokCI); r.status != 200 {
		t.Errorf("another token: %d", r.status)
	}
	clock.Advance(89*time.Second + 500*time.Millisecond)
	if r := get(t, ts, "/graphql", tokBot); r.status == 200 {
		t.Error("GET /graphql answered 200")
	}
	if r := gql(t, ts, tokBot, "{viewer{login}}", nil); r.status != 403 || r.header.Get("Retry-After") != "1" {
		t.Errorf("graphql under a secondary limit: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	clock.Advance(time.Second)
	if r := get(t, ts, "/repos/acme/widgets", tokBot); r.status != 200 {
		t.Errorf("after Retry-After: %d", r.status)
	}
	if st := s.Stats().Labels["bot"]; st.Limited != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestConcurrencySecondaryLimit(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	_, ts := newSim(t, func(s *Server) {
		s.MaxConcurrent = 2
		s.Hold = func(*http.Request) { arrived <- struct{}{}; <-release }
	})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := get(t, ts, "/repos/acme/widgets", tokBot); r.status != 200 {
				t.Errorf("held call: %d", r.status)
			}
		}()
	}
	<-arrived
	<-arrived
	r := get(t, ts, "/repos/acme/widgets", tokBot)
	if r.status != 403 || r.header.Get("Retry-After") == "" {
		t.Errorf("third concurrent call: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	close(release) // the hook no longer blocks
	wg.Wait()
	if r := get(t, ts, "/repos/acme/widgets", tokBot); r.status != 200 {
		t.Errorf("after the others finished: %d", r.status)
	}
}

func TestAnonymousLimitPerIP(t *testing.T) {
	s, ts := newSim(t, func(s *Server) { s.AnonymousLimits = map[string]Limit{"core": {N: 2}} })
	for i := 0; i < 2; i++ {
		if r := get(t, ts, "/repos/acme/widgets", ""); r.status != 200 || r.header.Get("X-RateLimit-Limit") != "2" {
			t.Fatalf("anonymous call %d: %d", i, r.status)
		}
	}
	r := get(t, ts, "/repos/acme/widgets", "")
	if r.status != 403 || !strings.Contains(dig(r.json(t), "message").(string), "API rate limit exceeded for 127.0.0.1.") {
		t.Errorf("exhausted anonymous: %d %s", r.status, r.body)
	}
	s.SetRemaining("anonymous:127.0.0.1", "core", 1)
	if r := get(t, ts, "/repos/acme/widgets", ""); r.status != 200 {
		t.Errorf("after SetRemaining: %d", r.status)
	}
	// The default anonymous limit is GitHub's 60 an hour.
	_, ts2 := newSim(t)
	if r := get(t, ts2, "/rate_limit", ""); dig(r.json(t), "resources", "core", "limit") != 60.0 || dig(r.json(t), "resources", "graphql", "limit") != 0.0 {
		t.Errorf("anonymous rate_limit %s", r.body)
	}
}

// TestConcurrentAccounting hammers one server from many goroutines (run
// with -race): every call is counted exactly once, 304s never.
func TestConcurrentAccounting(t *testing.T) {
	s, ts := newSim(t)
	tag := get(t, ts, "/repos/acme/widgets", tokBot).header.Get("ETag")
	s.ResetStats()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				switch i % 5 {
				case 0:
					get(t, ts, "/repos/acme/widgets", tokBot, "If-None-Match: "+tag)
				case 1:
					do(t, ts, "POST", "/repos/acme/widgets/issues/1/comments", tokCI, fmt.Sprintf(`{"body":"w%d i%d"}`, w, i))
				case 2:
					gql(t, ts, tokCI, `{repository(owner:"acme",name:"widgets"){issue(number:1){comments(last:5){totalCount}}}}`, nil)
				case 3:
					s.PushCommit("acme", "gadgets", "main", fmt.Sprintf("w%d i%d", w, i))
				default:
					get(t, ts, "/repos/acme/gadgets/commits?per_page=1", tokBot)
				}
			}
		}(w)
	}
	wg.Wait()
	st := s.Stats()
	bot, ci := st.Labels["bot"], st.Labels["ci"]
	n := workers * each / 5
	if bot.NotModified != n || bot.Counted != n || bot.Calls != 2*n {
		t.Errorf("bot %+v", bot)
	}
	if ci.Counted != 2*n || ci.Resources["graphql"].Counted != n || ci.Points != n {
		t.Errorf("ci %+v", ci)
	}
	comments := len(get(t, ts, "/repos/acme/widgets/issues/1/comments?per_page=100", tokBot).list(t))
	if comments != n+1 {
		t.Errorf("%d comments, want %d", comments, n+1)
	}
	rl := get(t, ts, "/rate_limit", tokBot).obj(t)
	// n counted commit lists, the first GET and the comment list.
	if used := dig(rl, "resources", "core", "used"); used != float64(n+2) {
		t.Errorf("core used %v, want %d", used, n+2)
	}
}

func TestFailNext(t *testing.T) {
	s, ts := newSim(t)
	s.FailNext("/repos/acme/widgets/issues", 502, 2)
	for i, want := range []int{502, 502, 200} {
		r := get(t, ts, "/api/v3/repos/acme/widgets/issues", tokBot)
		if r.status != want {
			t.Errorf("call %d: %d, want %d", i, r.status, want)
		}
		if want == 502 && (r.header.Get("ETag") != "" || dig(r.json(t), "message") != "Server Error") {
			t.Errorf("a failure with a validator or a strange body: %v %s", r.header, r.body)
		}
	}
	if r := get(t, ts, "/repos/acme/widgets", tokBot); r.status != 200 {
		t.Errorf("another path: %d", r.status)
	}
	s.FailNext("/graphql", 503, 1)
	if r := gql(t, ts, tokBot, "{viewer{login}}", nil); r.status != 503 {
		t.Errorf("graphql: %d", r.status)
	}
	if r := do(t, ts, "POST", "/_sim/fail", "", `{"path":"/rate_limit","status":500}`); r.status != 200 {
		t.Errorf("control: %d %s", r.status, r.body)
	}
	if r := get(t, ts, "/rate_limit", tokBot); r.status != 500 {
		t.Errorf("after /_sim/fail: %d", r.status)
	}
	st := s.Stats().Labels["bot"]
	if st.Failed != 4 || st.Counted != 2 || st.Resources["graphql"].Failed != 1 {
		t.Errorf("stats %+v", st)
	}
}
