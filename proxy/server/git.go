package server

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/glb-project/glb/proxy/clients"
	"github.com/glb-project/glb/proxy/route"
)

// gitProxy streams git smart HTTP to the git upstream. Packs can be large
// and slow: nothing is buffered (FlushInterval -1 flushes every write),
// and no API timeout applies.
type gitProxy struct {
	p  *Proxy
	rp *httputil.ReverseProxy
}

type gitTarget struct {
	path, query, auth, rid string
}

type gitKey struct{}

func newGitProxy(p *Proxy) *gitProxy {
	g := &gitProxy{p: p}
	g.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(gitKey{}).(gitTarget)
			pr.SetURL(p.gitURL)
			base := strings.TrimRight(p.gitURL.Path, "/")
			unescaped, err := url.PathUnescape(t.path)
			if err != nil { // route produced it canonical; cannot happen
				unescaped = t.path
			}
			pr.Out.URL.Path = base + unescaped
			pr.Out.URL.RawPath = strings.TrimRight(p.gitURL.EscapedPath(), "/") + t.path
			pr.Out.URL.RawQuery = t.query
			// Only what git needs goes upstream; the client's token stays.
			in := pr.Out.Header
			out := http.Header{}
			for _, k := range []string{"Content-Type", "Content-Encoding", "Accept", "Accept-Encoding", "User-Agent", "Git-Protocol", "Content-Length"} {
				if vs := in.Values(k); len(vs) > 0 {
					out[k] = vs
				}
			}
			out.Set("Authorization", t.auth)
			out.Set(RequestIDHeader, t.rid)
			pr.Out.Header = out
		},
		Transport:     p.base,
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		ModifyResponse: func(resp *http.Response) error {
			// A challenge for the proxy's own credential means nothing to
			// the client.
			resp.Header.Del("WWW-Authenticate")
			resp.Header.Del("Set-Cookie")
			return nil
		},
	}
	g.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		x, _ := r.Context().Value(exchangeKey{}).(*exchange)
		if x == nil || r.Context().Err() != nil {
			return
		}
		x.log.Warn("git upstream failed", "err", err)
		x.writeError(http.StatusBadGateway, "glb-proxy: the git upstream could not be reached (request "+x.rid+")")
	}
	return g
}

type exchangeKey struct{}

func (x *exchange) gitRequest(rt route.Request, c *clients.Client) {
	if !c.AllowGit(rt.KeySegments, rt.Git.Push) {
		op := "fetch from"
		if rt.Git.Push {
			op = "push to"
		}
		x.reject("scope", http.StatusForbidden, "glb-proxy: client "+c.Name+" may not "+op+" "+x.path+": ask for a git scope in the client registry")
		return
	}
	name, tok, err := x.p.pool.Token(x.r.Context())
	if err != nil {
		x.reject("not_ready", http.StatusServiceUnavailable, "glb-proxy: no upstream credential is usable")
		return
	}
	x.choice.Used = name
	x.w.Header().Set("X-GLB-Cache", "BYPASS")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+tok))
	ctx := context.WithValue(x.r.Context(), gitKey{}, gitTarget{path: rt.Path, query: rt.Query, auth: auth, rid: x.rid})
	ctx = context.WithValue(ctx, exchangeKey{}, x)
	x.p.git.rp.ServeHTTP(x.w, x.r.WithContext(ctx))
}
