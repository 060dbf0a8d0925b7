package route

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, method, path, query string
		wantKind                  Kind
		wantPath, wantKey         string
		wantQuery                 string
		wantPrefixed              bool
		wantTemplate              string
	}{
		{name: "api root", method: "GET", path: "/", wantKind: REST, wantPath: "/", wantKey: "/", wantTemplate: "/"},
		{name: "ghes prefix is stripped", method: "GET", path: "/api/v3/repos/acme/widgets", wantKind: REST, wantPath: "/repos/acme/widgets", wantKey: "/repos/acme/widgets", wantPrefixed: true, wantTemplate: "/repos/{owner}/{repo}"},
		{name: "ghes root", method: "GET", path: "/api/v3", wantKind: REST, wantPath: "/", wantKey: "/", wantPrefixed: true, wantTemplate: "/"},
		{name: "ghes root with a slash", method: "GET", path: "/api/v3/", wantKind: REST, wantPath: "/", wantKey: "/", wantPrefixed: true, wantTemplate: "/"},
		{name: "owner and repo fold, the rest keeps case", method: "GET", path: "/repos/ACME/Widgets/contents/Docs/README.md", wantKind: REST, wantPath: "/repos/ACME/Widgets/contents/Docs/README.md", wantKey: "/repos/acme/widgets/contents/Docs/README.md", wantTemplate: "/repos/{owner}/{repo}/contents/{name}/{name}"},
		{name: "users fold one name", method: "GET", path: "/users/OctoCat/repos", wantKind: REST, wantPath: "/users/OctoCat/repos", wantKey: "/users/octocat/repos", wantTemplate: "/users/{user}/repos"},
		{name: "top-level word is not folded", method: "GET", path: "/REPOS/acme/widgets", wantKind: REST, wantPath: "/REPOS/acme/widgets", wantKey: "/REPOS/acme/widgets", wantTemplate: "/{other}"},
		{name: "harmless encoding is canonicalised", method: "GET", path: "/repos/acme/w%69dgets/issues", wantKind: REST, wantPath: "/repos/acme/widgets/issues", wantKey: "/repos/acme/widgets/issues", wantTemplate: "/repos/{owner}/{repo}/issues"},
		{name: "space in a file name stays encoded", method: "GET", path: "/repos/a/b/contents/my%20file", wantKind: REST, wantPath: "/repos/a/b/contents/my%20file", wantKey: "/repos/a/b/contents/my%20file", wantTemplate: "/repos/{owner}/{repo}/contents/{name}"},
		{name: "query is sorted", method: "GET", path: "/repos/a/b/issues", query: "state=open&per_page=100&labels=x,y", wantKind: REST, wantPath: "/repos/a/b/issues", wantKey: "/repos/a/b/issues", wantQuery: "labels=x%2Cy&per_page=100&state=open", wantTemplate: "/repos/{owner}/{repo}/issues"},
		{name: "issue number template", method: "GET", path: "/repos/a/b/issues/42/comments", wantKind: REST, wantPath: "/repos/a/b/issues/42/comments", wantKey: "/repos/a/b/issues/42/comments", wantTemplate: "/repos/{owner}/{repo}/issues/{number}/comments"},
		{name: "graphql", method: "POST", path: "/graphql", wantKind: GraphQL, wantPath: "/graphql", wantKey: "/graphql", wantTemplate: "/graphql"},
		{name: "ghes graphql", method: "POST", path: "/api/graphql", wantKind: GraphQL, wantPath: "/graphql", wantKey: "/graphql", wantPrefixed: true, wantTemplate: "/graphql"},
		{name: "graphql under the rest prefix is still graphql", method: "POST", path: "/api/v3/GraphQL", wantKind: GraphQL, wantPath: "/graphql", wantKey: "/graphql", wantPrefixed: true, wantTemplate: "/graphql"},
		{name: "health", method: "GET", path: "/_glb/health", wantKind: Internal, wantPath: "/_glb/health", wantKey: "/_glb/health", wantTemplate: "/_glb/health"},
		{name: "metrics", method: "GET", path: "/metrics", wantKind: Internal, wantPath: "/metrics", wantKey: "/metrics", wantTemplate: "/metrics"},
		{name: "git info refs", method: "GET", path: "/Acme/Widgets.git/info/refs", query: "service=git-upload-pack", wantKind: Git, wantPath: "/Acme/Widgets.git/info/refs", wantKey: "/acme/widgets", wantQuery: "service=git-upload-pack", wantTemplate: "/{owner}/{repo}.git/info/refs"},
		{name: "git upload pack", method: "POST", path: "/acme/widgets.git/git-upload-pack", wantKind: Git, wantPath: "/acme/widgets.git/git-upload-pack", wantKey: "/acme/widgets", wantTemplate: "/{owner}/{repo}.git/git-upload-pack"},
		{name: "unknown word is a bounded template", method: "GET", path: "/repos/a/b/zzz-made-up/1/2/3/4/5/6", wantKind: REST, wantPath: "/repos/a/b/zzz-made-up/1/2/3/4/5/6", wantKey: "/repos/a/b/zzz-made-up/1/2/3/4/5/6", wantTemplate: "/repos/{owner}/{repo}/{name}/{number}/{number}/{number}/{number}/..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(tt.method, tt.path, tt.query)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if r.Kind != tt.wantKind || r.Path != tt.wantPath || r.Key != tt.wantKey || r.Query != tt.wantQuery || r.Prefixed != tt.wantPrefixed || r.Template != tt.wantTemplate {
				t.Errorf("got kind=%v path=%q key=%q query=%q prefixed=%v template=%q\nwant kind=%v path=%q key=%q query=%q prefixed=%v template=%q",
					r.Kind, r.Path, r.Key, r.Query, r.Prefixed, r.Template,
					tt.wantKind, tt.wantPath, tt.wantKey, tt.wantQuery, tt.wantPrefixed, tt.wantTemplate)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct{ name, method, path, query string }{
		{"dot segment", "GET", "/repos/a/b/../c", ""},
		{"single dot", "GET", "/repos/./a/b", ""},
		{"encoded dot dot", "GET", "/repos/a/b/%2e%2e/c", ""},
		{"encoded dot dot upper", "GET", "/repos/a/b/%2E%2E", ""},
		{"half encoded dot dot", "GET", "/repos/a/b/.%2e/x", ""},
		{"encoded slash", "GET", "/repos/a%2Fb/c", ""},
		{"encoded slash lower", "GET", "/repos/a/b/branches/feature%2fx", ""},
		{"encoded backslash", "GET", "/repos/a/b%5C..", ""},
		{"double slash", "GET", "/repos//a/b", ""},
		{"trailing slash", "GET", "/repos/a/b/", ""},
		{"prefix then double slash", "GET", "/api/v3//repos/a/b", ""},
		{"nul", "GET", "/repos/a/b%00", ""},
		{"newline", "GET", "/repos/a/b%0a", ""},
		{"bad escape", "GET", "/repos/a/b%zz", ""},
		{"not utf-8", "GET", "/repos/a/b%ff", ""},
		{"relative", "GET", "repos/a/b", ""},
		{"semicolon query", "GET", "/repos/a/b", "a=1;b=2"},
		{"access token in query", "GET", "/user", "access_token=glbp_x"},
		{"access token any case", "GET", "/user", "Access_Token=x"},
		{"under graphql", "POST", "/graphql/x", ""},
		{"git dumb protocol", "GET", "/a/b.git/objects/info/packs", ""},
		{"git info refs without service", "GET", "/a/b.git/info/refs", ""},
		{"git upload pack by GET", "GET", "/a/b.git/git-upload-pack", ""},
		{"too many segments", "GET", "/" + strings.Repeat("a/", 100) + "a", ""},
		{"ghes prefix twice", "GET", "/api/v3/api/v3", ""},
		{"ghes prefix before the ghes graphql path", "POST", "/api/v3/api/graphql", ""},
		{"own endpoint under the ghes prefix", "GET", "/api/v3/metrics", ""},
		{"health under the ghes prefix", "GET", "/api/v3/_glb/health", ""},
		{"git under the ghes prefix", "GET", "/api/v3/acme/widgets.git/info/refs", "service=git-upload-pack"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(tt.method, tt.path, tt.query)
			if err == nil {
				t.Fatalf("Parse accepted %q?%q as %+v", tt.path, tt.query, r)
			}
			if !errors.Is(err, ErrBadPath) {
				t.Errorf("error %v does not wrap ErrBadPath", err)
			}
		})
	}
}

func TestGitPush(t *testing.T) {
	for _, tt := range []struct {
		method, path, query string
		push                bool
	}{
		{"GET", "/a/b.git/info/refs", "service=git-upload-pack", false},
		{"GET", "/a/b.git/info/refs", "service=git-receive-pack", true},
		{"POST", "/a/b.git/git-upload-pack", "", false},
		{"POST", "/a/b.git/git-receive-pack", "", true},
	} {
		r, err := Parse(tt.method, tt.path, tt.query)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		if r.Git.Push != tt.push {
			t.Errorf("%s %s?%s: push=%v, want %v", tt.method, tt.path, tt.query, r.Git.Push, tt.push)
		}
	}
}

// FuzzParse checks the normaliser's invariants on arbitrary input: it
// never panics; what it accepts has no dot segment and no empty segment;
// the canonical path parses to itself; and Key differs from Path only in
// the case of owner and repository names.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/", "/repos/a/b", "/api/v3/repos/A/B/issues", "/repos/a/b/%2e%2e", "/a/b.git/info/refs",
		"/graphql", "/repos/a%2Fb", "/x//y", "/repos/a/b/contents/x%20y", "/users/X", "/_glb/health", "/api/graphql"} {
		f.Add("GET", s, "")
		f.Add("POST", s, "service=git-upload-pack&b=2&a=1")
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		r, err := Parse(method, path, query)
		if err != nil {
			return
		}
		if r.Path != "/" {
			for _, s := range strings.Split(r.Path[1:], "/") {
				d, err := url.PathUnescape(s)
				if err != nil || d == "" || d == "." || d == ".." || strings.ContainsAny(d, "/\\\x00") {
					t.Fatalf("accepted path %q has a bad segment %q", r.Path, s)
				}
			}
		}
		if r.Kind == REST || r.Kind == Internal {
			again, err := Parse(method, r.Path, r.Query)
			if err != nil {
				t.Fatalf("canonical %q?%q does not parse: %v", r.Path, r.Query, err)
			}
			if again.Path != r.Path || again.Key != r.Key || again.Query != r.Query || again.Kind != r.Kind {
				t.Fatalf("not idempotent: %+v then %+v", r, again)
			}
			if !strings.EqualFold(r.Path, r.Key) {
				t.Fatalf("key %q is not a case fold of path %q", r.Key, r.Path)
			}
		}
		if len(r.KeySegments) > 0 && r.Kind == REST && len(r.KeySegments) != len(r.Segments) {
			t.Fatalf("key has %d segments, path %d", len(r.KeySegments), len(r.Segments))
		}
	})
}
