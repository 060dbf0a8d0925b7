// Package server is glb-proxy's HTTP front: it turns a configuration into
// listeners, authenticates clients, checks scopes and hands each request to
// the right upstream path.
//
//	client ─TLS─► Proxy.ServeHTTP
//	   route.Parse        one normalised path (400 on anything ambiguous)
//	   /_glb/health, /_glb/ready, /metrics
//	   clients.Registry   token → client (401), scope check (403)
//	   ├─ REST      cache.Coalesce → cache.Layer → credentials.Pool → GitHub
//	   │            client validators answered here (304), Link and
//	   │            Location rewritten to point back at the proxy
//	   ├─ GraphQL   classified by parsing, re-encoded; queries through
//	   │            cache.Coalesce → cache.Layer (max_age), mutations and
//	   │            identity queries straight → credentials.Pool
//	   └─ git       httputil.ReverseProxy (Rewrite + SetURL, streamed,
//	                FlushInterval -1) with a pool credential as Basic auth
//
// Upstream requests carry only an allow-list of the client's headers, the
// canonical path and query, a pool credential and X-GLB-Request-Id; the
// client's Authorization never leaves the proxy. Every response carries
// X-GLB-Request-Id and X-GLB-Cache. Errors have GitHub's shape,
// {"message", "documentation_url"}, so clients report them as they would
// GitHub's.
//
// Paths whose answer describes the caller's own identity (/user,
// /notifications, /installation, /app, /rate_limit, /issues, /gists, …)
// are never cached: their answer depends on which pool credential served
// them, not on the path (see package cache). GraphQL queries that read the
// caller (viewer, viewer* fields, isViewer, rateLimit, @me) are never
// shared for the same reason (graphQLPolicy).
//
// The client registry comes from a file (clients_file, polled) or from
// Consul KV (clients_consul: the key PREFIX/proxy/clients, followed with
// blocking queries); a bad value is logged and counted and the last good
// registry stays. Options.Register announces the proxy to a service
// catalog once it listens, and withdraws it on shutdown (glb-proxy wires
// Consul there).
package server
