package route

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Kind is the family of a request.
type Kind int

const (
	// REST is the GitHub REST API.
	REST Kind = iota
	// GraphQL is the GitHub GraphQL API (POST only).
	GraphQL
	// Git is git smart HTTP: info/refs, git-upload-pack, git-receive-pack.
	Git
	// Internal is one of glb-proxy's own endpoints (health, ready, metrics).
	Internal
)

func (k Kind) String() string {
	switch k {
	case REST:
		return "rest"
	case GraphQL:
		return "graphql"
	case Git:
		return "git"
	case Internal:
		return "internal"
	}
	return "unknown"
}

// Limits on what a request path may be; GitHub's own paths are far shorter.
const (
	maxPathBytes = 4096
	maxSegments  = 64
)

// ErrBadPath is wrapped by every normalisation failure; the server answers
// it with a 400.
var ErrBadPath = errors.New("ambiguous or malformed path")

// Request is a normalised request target.
type Request struct {
	Kind Kind
	// Prefixed is true when the client used the GHES prefix (/api/v3 or
	// /api/graphql); links pointing back at the proxy keep it.
	Prefixed bool
	// Segments are the decoded path segments after the prefix. For Git
	// they are owner, repository (without .git) and the git endpoint.
	Segments []string
	// Path is the canonical, escaped path after the prefix, in the
	// client's spelling: what is sent upstream. "/" for the API root.
	Path string
	// Key is Path with owner and repository names in lower case: what
	// scopes match and what the cache keys on. For Git it is
	// "/owner/repo".
	Key string
	// KeySegments are the decoded segments of Key, for scope matching.
	KeySegments []string
	// Query is the canonical encoded query (keys sorted).
	Query string
	// Template is a bounded route template for metric labels.
	Template string
	// Git describes a git request; nil for other kinds.
	Git *GitRequest
}

// GitRequest is a git smart HTTP request.
type GitRequest struct {
	Owner, Repo string // as the client spelled them
	// Endpoint is the path under the repository: "info/refs",
	// "git-upload-pack" or "git-receive-pack".
	Endpoint string
	// Push is true for receive-pack (info/refs?service=git-receive-pack
	// or POST git-receive-pack): a write.
	Push bool
}

// Internal endpoint paths.
const (
	HealthPath  = "/_glb/health"
	ReadyPath   = "/_glb/ready"
	MetricsPath = "/metrics"
)

// Parse normalises a request target. escapedPath is the path as sent
// (url.URL.EscapedPath), rawQuery the query (url.URL.RawQuery).
func Parse(method, escapedPath, rawQuery string) (Request, error) {
	if escapedPath == "/api/v3/" {
		// The GHES API root, as clients with a base URL ending in a
		// slash request it; the one trailing slash accepted.
		escapedPath = "/api/v3"
	}
	segs, err := splitPath(escapedPath)
	if err != nil {
		return Request{}, err
	}
	q, err := canonicalQuery(rawQuery)
	if err != nil {
		return Request{}, err
	}
	r := Request{Query: q}

	switch {
	case len(segs) == 2 && segs[0] == "_glb" && (segs[1] == "health" || segs[1] == "ready"),
		len(segs) == 1 && segs[0] == "metrics":
		r.Kind = Internal
		r.Segments = segs
		r.Path = joinPath(segs)
		r.Key = r.Path
		r.KeySegments = segs
		r.Template = r.Path
		return r, nil
	case len(segs) == 2 && segs[0] == "api" && segs[1] == "graphql":
		r.Kind = GraphQL
		r.Prefixed = true
		r.Segments = []string{"graphql"}
	case len(segs) >= 2 && segs[0] == "api" && segs[1] == "v3":
		r.Prefixed = true
		segs = segs[2:]
		if err := checkUnderPrefix(segs); err != nil {
			return Request{}, err
		}
		r.Segments = segs
		r.Kind = REST
	case len(segs) >= 2 && hasGitSuffix(segs[1]):
		return parseGit(method, segs, r)
	default:
		r.Segments = segs
		r.Kind = REST
	}
	// Anything whose first segment is "graphql" is GraphQL, however it
	// was reached: forwarding /api/v3/graphql to a REST base of
	// https://api.github.com would otherwise execute GraphQL unclassified.
	if len(r.Segments) > 0 && strings.EqualFold(r.Segments[0], "graphql") {
		if len(r.Segments) != 1 {
			return Request{}, fmt.Errorf("%w: nothing lives under /graphql", ErrBadPath)
		}
		r.Kind = GraphQL
		r.Segments = []string{"graphql"}
	}
	r.Path = joinPath(r.Segments)
	r.KeySegments = foldNames(r.Segments)
	r.Key = joinPath(r.KeySegments)
	if r.Kind == GraphQL {
		r.Template = "/graphql"
	} else {
		r.Template = Template(r.Segments)
	}
	return r, nil
}

// checkUnderPrefix refuses what follows /api/v3 when, without the prefix,
// it reads as something other than a REST path: the prefix again, the GHES
// GraphQL path, git smart HTTP or the proxy's own endpoints. Such a request
// would be checked against the scopes as REST and then sent upstream as a
// canonical path that means something else there (/api/graphql on a GHES
// host is GraphQL, unclassified).
func checkUnderPrefix(segs []string) error {
	switch {
	case len(segs) >= 2 && segs[0] == "api" && (segs[1] == "v3" || segs[1] == "graphql"):
		return fmt.Errorf("%w: /api/v3 followed by /api/%s: give the prefix once", ErrBadPath, segs[1])
	case len(segs) == 2 && segs[0] == "_glb", len(segs) == 1 && segs[0] == "metrics":
		return fmt.Errorf("%w: glb-proxy's own endpoints are not under /api/v3", ErrBadPath)
	case len(segs) >= 2 && hasGitSuffix(segs[1]):
		return fmt.Errorf("%w: git smart HTTP is not under /api/v3: use /OWNER/REPO.git/...", ErrBadPath)
	}
	return nil
}

func hasGitSuffix(s string) bool {
	return len(s) > 4 && strings.EqualFold(s[len(s)-4:], ".git")
}

func parseGit(method string, segs []string, r Request) (Request, error) {
	owner, repo := segs[0], segs[1][:len(segs[1])-4]
	rest := strings.Join(segs[2:], "/")
	g := &GitRequest{Owner: owner, Repo: repo, Endpoint: rest}
	q, _ := url.ParseQuery(r.Query) // already canonical, cannot fail
	switch {
	case rest == "info/refs" && (method == "GET" || method == "HEAD"):
		switch q.Get("service") {
		case "git-upload-pack":
		case "git-receive-pack":
			g.Push = true
		default:
			return Request{}, fmt.Errorf("%w: only smart HTTP is served: info/refs needs ?service=git-upload-pack or git-receive-pack", ErrBadPath)
		}
	case rest == "git-upload-pack" && method == "POST":
	case rest == "git-receive-pack" && method == "POST":
		g.Push = true
	default:
		return Request{}, fmt.Errorf("%w: %s /%s is not a git smart HTTP endpoint", ErrBadPath, method, rest)
	}
	r.Kind = Git
	r.Git = g
	r.Segments = segs
	r.Path = joinPath(segs)
	r.KeySegments = []string{strings.ToLower(owner), strings.ToLower(repo)}
	r.Key = joinPath(r.KeySegments)
	r.Template = "/{owner}/{repo}.git/" + rest
	return r, nil
}

// splitPath splits an escaped path into decoded segments, refusing
// everything ambiguous. "/" gives no segments.
func splitPath(p string) ([]string, error) {
	if len(p) > maxPathBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadPath, maxPathBytes)
	}
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%w: does not start with /", ErrBadPath)
	}
	if p == "/" {
		return nil, nil
	}
	raw := strings.Split(p[1:], "/")
	if len(raw) > maxSegments {
		return nil, fmt.Errorf("%w: more than %d segments", ErrBadPath, maxSegments)
	}
	segs := make([]string, len(raw))
	for i, s := range raw {
		if s == "" {
			return nil, fmt.Errorf("%w: empty segment (// or a trailing /)", ErrBadPath)
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bad percent-encoding", ErrBadPath)
		}
		if d == "." || d == ".." {
			return nil, fmt.Errorf("%w: dot segment", ErrBadPath)
		}
		if !utf8.ValidString(d) {
			return nil, fmt.Errorf("%w: not UTF-8", ErrBadPath)
		}
		for _, c := range []byte(d) {
			switch {
			case c == '/' || c == '\\':
				return nil, fmt.Errorf("%w: encoded slash or backslash", ErrBadPath)
			case c < 0x20 || c == 0x7f:
				return nil, fmt.Errorf("%w: control character", ErrBadPath)
			}
		}
		segs[i] = d
	}
	return segs, nil
}

func canonicalQuery(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return "", fmt.Errorf("%w: query: %v", ErrBadPath, err)
	}
	for k := range v {
		if strings.EqualFold(k, "access_token") {
			return "", fmt.Errorf("%w: access_token in the query is not accepted: send the token in the Authorization header", ErrBadPath)
		}
		if !utf8.ValidString(k) {
			return "", fmt.Errorf("%w: query is not UTF-8", ErrBadPath)
		}
		for _, s := range v[k] {
			if !utf8.ValidString(s) {
				return "", fmt.Errorf("%w: query is not UTF-8", ErrBadPath)
			}
		}
	}
	return v.Encode(), nil
}

func joinPath(segs []string) string {
	if len(segs) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// foldNames returns segs with the owner and repository names (the only
// parts of a GitHub path that GitHub compares case-insensitively) in lower
// case.
func foldNames(segs []string) []string {
	n := NamePositions(segs)
	if n == 0 {
		return segs
	}
	out := append([]string(nil), segs...)
	for i := 1; i <= n && i < len(out); i++ {
		out[i] = strings.ToLower(out[i])
	}
	return out
}

// NamePositions tells how many segments after the first are owner or
// repository names that GitHub compares case-insensitively: 2 under
// /repos (owner, repo), 1 under /users and /orgs, else 0.
func NamePositions(segs []string) int {
	if len(segs) == 0 {
		return 0
	}
	switch segs[0] {
	case "repos":
		return 2
	case "users", "orgs":
		return 1
	}
	return 0
}
