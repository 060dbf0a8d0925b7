// Package cache is glb-proxy's GitHub response cache: two layers of the
// proxy's http.RoundTripper stack and the stores behind them.
//
//	server (auth, scopes, client validators, Link rewriting)
//	   │ request with a Policy attached (cacheable GET/HEAD only)
//	   ▼
//	Coalesce ── identical requests in flight share one upstream answer
//	   │        (singleflight on the full key; buffered bodies)
//	   ▼
//	Layer ───── Store (Memory LRU, or Redis / Redis Cluster)
//	   │        HIT within the scope's max_age; otherwise revalidate with
//	   │        If-None-Match / If-Modified-Since and the credential that
//	   │        owns the ETag
//	   ▼
//	credentials.Pool ── picks and signs with an upstream credential
//	   ▼
//	http.Transport ── GitHub
//
// Policy. The cache revalidates every hit by default: GitHub answers a
// matching conditional request with a 304 that costs no rate limit, so
// revalidation is free and a client never sees stale data it did not ask
// for. A scope may opt into a freshness window (max_age), served with no
// upstream call, and into stale-if-error. Every response carries
// X-GLB-Cache: MISS (no entry), HIT (entry younger than max_age),
// REVALIDATED (a 304 refreshed the entry), CHANGED (the entry was
// replaced), COALESCED (shared another request's answer), STALE (upstream
// failed and the scope allows the old copy) or BYPASS (not cacheable, or
// the store is down).
//
// GraphQL. Queries (Policy.GraphQL, keyed by GraphQLKey: the canonical
// JSON body, at most MaxGraphQLKey bytes) are coalesced like GETs. GitHub sends no validators on
// /graphql, so a query is stored only when its scope has a max_age, only
// as a 200 with data and no errors, and only for max_age; mutations never
// get a Policy.
//
// What is stored: GET and HEAD answers with status 200 and an ETag or
// Last-Modified, up to a size cap, never with Set-Cookie or
// Cache-Control: no-store. Errors are never stored. A 304 merges its
// headers (Link, X-RateLimit-*, Date, X-GitHub-Request-Id, ...) into the
// stored response, whose body is kept.
//
// The key. SHA-256 over the upstream, the method, the normalised path
// (owner and repository in lower case; route.Request.Key), the canonical
// query, Accept, X-GitHub-Api-Version and Time-Zone (every value of a
// repeated header; GraphQL-Features too for GraphQL). It holds no token and
// no client identity: every client reaches GitHub through the same pool,
// and the scope check runs before the cache, so a client only ever reads
// entries for paths it may read. Responses that describe the caller's own
// identity (/user, /notifications, /installation, /rate_limit, ...) differ
// per credential, not per path: the server never gives them a Policy, so
// they bypass the cache rather than leak one credential's view.
//
// ETags. GitHub's ETags differ per token. The entry records which
// credential fetched it, and the revalidation asks the pool to use that
// credential (credentials.Choice), so the 304 is possible at all.
//
// Stores. Memory is an LRU with a byte cap, the default for one replica.
// Redis keeps an entry in two keys, metadata and body, that share a hash
// tag ({…}) and so one Redis Cluster slot: a 304 rewrites the small
// metadata and only touches the body's TTL, and both are read with one
// MGET. The metadata carries the body's SHA-256, so a body from another
// write is detected and treated as a miss. When the store fails the
// layers pass requests through (BYPASS) and count the error; after a
// failure the store is left alone for a short, growing backoff, then
// tried again, so caching resumes by itself when Redis returns.
package cache
