package server

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/glb-project/glb/proxy/route"
)

func TestRebase(t *testing.T) {
	const up, base = "https://ghe.example.com/api/v3", "https://glb.example.com/api/v3"
	for _, tt := range []struct{ in, want string }{
		{"https://ghe.example.com/api/v3/repos/a/b?page=2", "https://glb.example.com/api/v3/repos/a/b?page=2"},
		{"https://ghe.example.com/api/v3", "https://glb.example.com/api/v3"},
		{"https://ghe.example.com/api/v3?page=2", "https://glb.example.com/api/v3?page=2"},
		{"https://ghe.example.com/api/v3#x", "https://glb.example.com/api/v3#x"},
		{"https://ghe.example.com/api/v3x/repos", "https://ghe.example.com/api/v3x/repos"},
		{"https://ghe.example.com/api/v3.evil/repos", "https://ghe.example.com/api/v3.evil/repos"},
		{"https://ghe.example.com/api/v30", "https://ghe.example.com/api/v30"},
		{"https://ghe.example.com/api/v", "https://ghe.example.com/api/v"},
		{"https://ghe.example.com/repos/a/b", "https://ghe.example.com/repos/a/b"},
		{"https://evil.example.com/api/v3/repos", "https://evil.example.com/api/v3/repos"},
		{"", ""},
	} {
		if got := rebase(tt.in, up, base); got != tt.want {
			t.Errorf("rebase(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// A host-only upstream: another port or a longer host name is not it.
	for _, tt := range []struct{ in, want string }{
		{"http://127.0.0.1:8080/repos?page=2", "https://glb/repos?page=2"},
		{"http://127.0.0.1:8080", "https://glb"},
		{"http://127.0.0.1:80801/repos", "http://127.0.0.1:80801/repos"},
		{"http://127.0.0.1:8080.evil.example/repos", "http://127.0.0.1:8080.evil.example/repos"},
		{"http://127.0.0.1:8080@evil.example/repos", "http://127.0.0.1:8080@evil.example/repos"},
	} {
		if got := rebase(tt.in, "http://127.0.0.1:8080", "https://glb"); got != tt.want {
			t.Errorf("rebase(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRebaseLinks(t *testing.T) {
	const up, base = "https://api.github.com", "https://glb"
	for _, tt := range []struct{ in, want string }{
		{`<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last"`,
			`<https://glb/repositories/1/issues?page=2>; rel="next", <https://glb/repositories/1/issues?page=5>; rel="last"`},
		{`<https://api.github.com.evil.example/x?page=2>; rel="next", <https://api.github.com/x?page=3>; rel="last"`,
			`<https://api.github.com.evil.example/x?page=2>; rel="next", <https://glb/x?page=3>; rel="last"`},
		{`<https://api.github.com>; rel="root"`, `<https://glb>; rel="root"`},
		{`<https://docs.github.com/rest>; rel="help"`, `<https://docs.github.com/rest>; rel="help"`},
		{`<https://api.github.com/x; rel="broken"`, `<https://api.github.com/x; rel="broken"`},
		{`<<https://api.github.com/x>; rel="next"`, `<<https://glb/x>; rel="next"`},
		{`>>https://api.github.com/x>`, `>>https://api.github.com/x>`},
		{`no links here`, `no links here`},
		{``, ``},
	} {
		if got := rebaseLinks(tt.in, up, base); got != tt.want {
			t.Errorf("rebaseLinks(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// TestRewriteNeedsABoundary runs the handler against a GHES-like upstream
// (REST base /api/v3) that answers with Link and Location headers: URLs
// under the base point back at the proxy, URLs that only begin like it
// are left as they are.
func TestRewriteNeedsABoundary(t *testing.T) {
	var upURL string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Link", "<"+upURL+"/api/v3/repos/acme/widgets/issues?page=2>; rel=\"next\"")
		w.Header().Add("Link", "<"+upURL+"/api/v3x/repos/acme/widgets/issues?page=9>; rel=\"last\"")
		switch r.URL.Path {
		case "/api/v3/repos/acme/widgets/issues":
			w.Header().Set("Location", upURL+"/api/v3/repos/acme/widgets/issues/7")
		case "/api/v3/repos/acme/widgets":
			w.Header().Set("Location", upURL+"/api/v3-other/repos/acme/widgets")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("[]"))
	}))
	t.Cleanup(up.Close)
	upURL = up.URL
	f := newFixtureWith(t, []string{"bot"}, matrixClients, fixtureOptions{rest: up.URL + "/api/v3"})

	r := f.do(t, "reader", "GET", "/api/v3/repos/acme/widgets/issues", "")
	links := strings.Join(r.header.Values("Link"), ", ")
	if !strings.Contains(links, "<"+f.ts.URL+"/api/v3/repos/acme/widgets/issues?page=2>") ||
		!strings.Contains(links, "<"+up.URL+"/api/v3x/repos/acme/widgets/issues?page=9>") {
		t.Errorf("Link %q", links)
	}
	if loc := r.header.Get("Location"); loc != f.ts.URL+"/api/v3/repos/acme/widgets/issues/7" {
		t.Errorf("Location %q", loc)
	}
	r = f.do(t, "reader", "GET", "/repos/acme/widgets", "")
	if loc := r.header.Get("Location"); loc != up.URL+"/api/v3-other/repos/acme/widgets" {
		t.Errorf("Location outside the upstream base rewritten: %q", loc)
	}
}

// FuzzRebaseLinks: whatever GitHub sends in Link, rebasing onto the
// upstream itself changes nothing, and after rebasing onto the proxy no
// <URL> under the upstream base is left.
func FuzzRebaseLinks(f *testing.F) {
	const up, base = "https://api.github.com/api/v3", "https://glb"
	f.Add(`<https://api.github.com/api/v3/repositories/1/issues?page=2>; rel="next", <https://api.github.com/api/v3/x?page=5>; rel="last"`)
	f.Add(`<https://api.github.com/api/v3x/y>; rel="next"`)
	f.Add(`<<https://api.github.com/api/v3>>`)
	f.Add(`>, <https://api.github.com/api/v3?a=<b>`)
	left := regexp.MustCompile(`<` + regexp.QuoteMeta(up) + `([/?#][^<>]*)?>`)
	f.Fuzz(func(t *testing.T, v string) {
		if got := rebaseLinks(v, up, up); got != v {
			t.Fatalf("rebasing onto itself changed %q into %q", v, got)
		}
		if out := rebaseLinks(v, up, base); left.MatchString(out) {
			t.Fatalf("%q left a URL under the upstream in %q", v, out)
		}
	})
}

func TestIdentityDependent(t *testing.T) {
	cases := []struct {
		path, query string
		want        bool
	}{
		{"/user", "", true},
		{"/user/repos", "", true},
		{"/issues", "", true},
		{"/orgs/acme/issues", "filter=assigned", true},
		{"/orgs/acme", "", false},
		{"/orgs/acme/repos", "", false},
		{"/repos/acme/widgets/issues", "", false},
		{"/repos/acme/widgets/issues", "assignee=@me", true},
		{"/search/issues", "q=is:open+author:@me", true},
		{"/search/issues", "q=is:open+author:%40ME", true},
		{"/search/issues", "q=repo:acme/widgets", false},
		{"/repos/acme/widgets/codespaces", "", true},
		{"/repos/acme/widgets/codespaces/devcontainers", "", true},
		{"/repos/acme/widgets/subscription", "", true},
		{"/repos/acme/widgets/pulls", "", false},
		{"/gists", "", true},
		{"/gists/starred", "", true},
		{"/gists/abc", "", false},
		{"/rate_limit", "", true},
	}
	for _, tc := range cases {
		rt, err := route.Parse("GET", tc.path, tc.query)
		if err != nil {
			t.Fatalf("%s?%s: %v", tc.path, tc.query, err)
		}
		if got := identityDependent(rt.KeySegments, rt.Query); got != tc.want {
			t.Errorf("%s?%s: %v, want %v", tc.path, tc.query, got, tc.want)
		}
	}
}
