package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGraphQLKey(t *testing.T) {
	base := `{"query":"query($a: Int) { x(a: $a) }","variables":{"a":1,"b":{"c":[1,"x"],"d":null}}}`
	for _, tt := range []struct {
		name, body string
		same       bool   // the same key as base
		err        string // refused, with this in the error
	}{
		{"itself", base, true, ""},
		{"keys reordered at every level", `{"variables":{"b":{"d":null,"c":[1,"x"]},"a":1},"query":"query($a: Int) { x(a: $a) }"}`, true, ""},
		{"whitespace", " {\n\"query\" : \"query($a: Int) { x(a: $a) }\",\t\"variables\":{ \"a\" : 1 , \"b\":{\"c\":[ 1 , \"x\" ],\"d\":null}}} ", true, ""},
		{"escapes decoded", `{"query":"query($a: Int) { x(a: $a) }","variables":{"\u0061":1,"b":{"c":[1,"\u0078"],"d":null}}}`, true, ""},
		{"another number spelling", `{"query":"query($a: Int) { x(a: $a) }","variables":{"a":1.0,"b":{"c":[1,"x"],"d":null}}}`, false, ""},
		{"array order matters", `{"query":"query($a: Int) { x(a: $a) }","variables":{"a":1,"b":{"c":["x",1],"d":null}}}`, false, ""},
		{"another document", `{"query":"query($a: Int) { x(a: $a) y }","variables":{"a":1,"b":{"c":[1,"x"],"d":null}}}`, false, ""},
		{"duplicate key deep inside", `{"query":"q","variables":{"b":{"c":1,"c":2}}}`, false, "duplicate key"},
		{"duplicate top-level key", `{"query":"q","query":"q"}`, false, "duplicate key"},
		{"bad JSON", `{"query":"q",}`, false, "not JSON"},
		{"truncated", `{"query":"q","variables":{"a":[1,2`, false, "not JSON"},
		{"trailing data", `{"query":"q"} {}`, false, "trailing"},
		{"too deep", `{"query":"q","variables":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`, false, "deeper"},
		{"invalid UTF-8", "{\"query\":\"q\xff\"}", false, "UTF-8"},
		{"lone surrogate", `{"query":"q\ud800"}`, false, "UTF-8"},
		{"empty", ``, false, "not JSON"},
		{"longer than the cap", `{"query":"` + strings.Repeat("x", MaxGraphQLKey) + `"}`, false, "longer than"},
		{"long only in whitespace", `{"query":"query($a: Int) { x(a: $a) }",` + strings.Repeat(" ", 2*MaxGraphQLKey) + `"variables":{"a":1,"b":{"c":[1,"x"],"d":null}}}`, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want, err := GraphQLKey([]byte(base))
			if err != nil {
				t.Fatal(err)
			}
			got, err := GraphQLKey([]byte(tt.body))
			if tt.err != "" {
				if !errors.Is(err, ErrNotCanonical) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("key %q, err %v; want an error saying %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == want) != tt.same {
				t.Errorf("key %s\nbase %s\nsame: %v, want %v", got, want, got == want, tt.same)
			}
			if !strings.HasPrefix(got, "graphql {") {
				t.Errorf("key %q can collide with a REST key", got)
			}
		})
	}
}

// TestGraphQLKeyForm: strings keep their characters (no HTML escaping,
// which would make a body of "<" six times longer) and only the escapes
// JSON requires; a key just under the cap is kept.
func TestGraphQLKeyForm(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{`{"query":"{ a(q: \"<b>&\") }"}`, `graphql {"query":"{ a(q: \"<b>&\") }"}`},
		{`{"b":"\u00e9\u2028\/","a":"\u0001\t\\"}`, "graphql {\"a\":\"\\u0001\\t\\\\\",\"b\":\"é\u2028/\"}"},
		{`{"z":{"y":1,"x":[{"b":2,"a":1}]},"a":0}`, `graphql {"a":0,"z":{"x":[{"a":1,"b":2}],"y":1}}`},
		{`{"query":"` + strings.Repeat("<", MaxGraphQLKey-20) + `"}`, `graphql {"query":"` + strings.Repeat("<", MaxGraphQLKey-20) + `"}`},
	} {
		got, err := GraphQLKey([]byte(tt.body))
		if err != nil || got != tt.want {
			t.Errorf("GraphQLKey(%.60q) = %.80q, %v; want %.80q", tt.body, got, err, tt.want)
		}
	}
}

// bigBodies are 4 MiB bodies (the GraphQL body limit) that used to cost
// tens of MiB: a string of '<', and objects nested 32 deep whose keys
// arrive in reverse order at every level.
func bigBodies() map[string][]byte {
	const size = 4 << 20
	nested := func(leaf string) []byte {
		var b strings.Builder
		for range maxJSONDepth {
			b.WriteString(`{"z":1,"a":`)
		}
		b.WriteString(leaf)
		b.WriteString(strings.Repeat("}", maxJSONDepth))
		return []byte(b.String())
	}
	pad := func(n int) string { return `"` + strings.Repeat("<", n) + `"` }
	var wide strings.Builder
	wide.WriteString("{")
	for i := 0; wide.Len() < size; i++ {
		fmt.Fprintf(&wide, `"k%07d":[1,{"b":2,"a":1}],`, 1<<22-i)
	}
	wide.WriteString(`"a":0}`)
	return map[string][]byte{
		"string of <":         []byte(`{"query":` + pad(size) + `}`),
		"deep, unsorted":      nested(pad(size)),
		"wide, unsorted":      []byte(wide.String()),
		"deep, under the cap": nested(pad(MaxGraphQLKey / 2)),
	}
}

// TestGraphQLKeyAllocationIsBounded: whatever the 4 MiB body, building
// its key allocates well under the body's size (the key is capped, and
// built in one buffer).
func TestGraphQLKeyAllocationIsBounded(t *testing.T) {
	for name, body := range bigBodies() {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		key, err := GraphQLKey(body)
		runtime.ReadMemStats(&after)
		if name == "deep, under the cap" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		} else if !errors.Is(err, ErrNotCanonical) || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("%s: key of %d bytes, err %v; want it refused as too long", name, len(key), err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16*MaxGraphQLKey {
			t.Errorf("%s: %d bytes allocated for a %d-byte body; want at most %d", name, alloc, len(body), 16*MaxGraphQLKey)
		}
	}
}

// BenchmarkGraphQLKey: the key of an ordinary query (what gh pr list
// sends) and of the 4 MiB bodies above; compare B/op with the body size.
func BenchmarkGraphQLKey(b *testing.B) {
	bodies := bigBodies()
	bodies["gh pr list"] = []byte(`{"query":"query PullRequestList($owner: String!, $repo: String!, $limit: Int!, $endCursor: String, $state: [PullRequestState!] = OPEN) { repository(owner: $owner, name: $repo) { pullRequests(states: $state, first: $limit, after: $endCursor, orderBy: {field: CREATED_AT, direction: DESC}) { totalCount nodes { number title state url headRefName isDraft author { login } } pageInfo { hasNextPage endCursor } } } }","variables":{"repo":"widgets","owner":"acme","limit":30,"state":["OPEN"]}}`)
	for name, body := range bodies {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				GraphQLKey(body)
			}
		})
	}
}

// FuzzGraphQLKey: no input panics; an accepted body's key is canonical
// JSON (valid, and its own canonical form), and never accepted with a
// duplicate key.
func FuzzGraphQLKey(f *testing.F) {
	for _, s := range []string{
		`{"query":"{ viewer { login } }"}`,
		`{"query":"query($o: String!) { repository(owner: $o, name: \"w\") { name } }","operationName":"","variables":{"o":"acme"}}`,
		`{"variables":{"b":[1,2,{"x":null}],"a":true},"query":"q"}`,
		`{"a":1,"a":2}`, `[1,[2,[3]]]`, `"\ud800"`, `1e400`, `{"a":{}}`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		key, err := GraphQLKey(body)
		if err != nil {
			return
		}
		canon := strings.TrimPrefix(key, "graphql ")
		if !json.Valid([]byte(canon)) {
			t.Fatalf("key of %q is not JSON: %s", body, canon)
		}
		again, err := GraphQLKey([]byte(canon))
		if err != nil || again != key {
			t.Fatalf("canonical form of %q is not stable: %s -> %s (%v)", body, key, again, err)
		}
		if !json.Valid(body) {
			t.Fatalf("invalid JSON %q accepted", body)
		}
	})
}

func TestGraphQLStorable(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		hdr    http.Header
		body   string
		want   bool
	}{
		{"data", 200, nil, `{"data":{"repository":{"name":"w"}}}`, true},
		{"data with errors", 200, nil, `{"data":{"repository":null},"errors":[{"type":"NOT_FOUND"}]}`, false},
		{"empty errors still errors", 200, nil, `{"data":{"a":1},"errors":[]}`, false},
		{"rate limited", 200, nil, `{"errors":[{"type":"RATE_LIMITED","message":"API rate limit exceeded"}]}`, false},
		{"null data", 200, nil, `{"data":null}`, false},
		{"duplicate keys", 200, nil, `{"data":{"a":1},"data":{"a":2}}`, false},
		{"not JSON", 200, nil, `<html>`, false},
		{"trailing data", 200, nil, `{"data":{}} x`, false},
		{"error status", 502, nil, `{"data":{}}`, false},
		{"no-store", 200, http.Header{"Cache-Control": {"private, no-store"}}, `{"data":{}}`, false},
		{"set-cookie", 200, http.Header{"Set-Cookie": {"a=b"}}, `{"data":{}}`, false},
		{"an issue titled errors", 200, nil, `{"data":{"issue":{"title":"errors"}}}`, true},
	} {
		h := tt.hdr
		if h == nil {
			h = http.Header{}
		}
		if got := graphQLStorable(&http.Response{StatusCode: tt.status, Header: h}, []byte(tt.body)); got != tt.want {
			t.Errorf("%s: storable %v, want %v", tt.name, got, tt.want)
		}
	}
}

// A RATE_LIMITED answer that reaches the flight (the pool passes one on
// only when it could not read it) speaks for the credential that got it:
// followers ask on their own. Any other answer, errors included, is
// shared with the requests waiting for it.
func TestGraphQLFlightSharesAllButRateLimited(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		wantCalls  int32
	}{
		{"data", `{"data":{"a":1}}`, 1},
		{"query error", `{"data":null,"errors":[{"type":"NOT_FOUND"}]}`, 1},
		{"rate limited", `{"errors":[{"type":"RATE_LIMITED","message":"API rate limit exceeded"}]}`, 3},
		{"unreadable, mentions rate limited", `{"errors":[{"type":"RATE_LIMITED"`, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			release := make(chan struct{})
			joined := make(chan struct{}, 3)
			c := &Coalesce{Next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if calls.Add(1) == 1 {
					<-release
				}
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tt.body))}, nil
			})}
			c.joined = func() { joined <- struct{}{} }
			key, _ := GraphQLKey([]byte(`{"query":"{ a }"}`))
			var wg sync.WaitGroup
			modes := make([]string, 3)
			for i := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequestWithContext(WithPolicy(t.Context(), Policy{Key: key, GraphQL: true}), http.MethodPost,
						"http://github.invalid/graphql", strings.NewReader(`{"query":"{ a }"}`))
					resp, err := c.RoundTrip(req)
					if err != nil {
						t.Error(err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					if string(b) != tt.body {
						t.Errorf("body %s, want %s", b, tt.body)
					}
					modes[i] = resp.Header.Get(Header)
				}()
			}
			for range 3 {
				<-joined
			}
			close(release)
			wg.Wait()
			if n := calls.Load(); n != tt.wantCalls {
				t.Errorf("%d upstream calls for 3 identical queries, want %d (modes %v)", n, tt.wantCalls, modes)
			}
		})
	}
}
