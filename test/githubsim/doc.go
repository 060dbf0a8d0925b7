// Package githubsim simulates the parts of the GitHub API that glb's tests,
// benchmarks and demo need, because GitHub itself is not reachable here.
//
// A Server is an http.Handler whose zero value is ready to use:
//
//	var s githubsim.Server
//	s.AddToken("ghp_secret", "bot")
//	ts := httptest.NewServer(&s)
//	defer ts.Close()
//	defer s.Close() // removes the temporary git repositories
//
// It serves, at / and at the GitHub Enterprise prefix /api/v3:
//
//   - a REST subset (users, orgs, repos, issues, comments, labels, pulls,
//     commits, branches, contents, readme, search, rate_limit, meta, App
//     endpoints) with GitHub's JSON shapes, Link pagination, weak ETags
//     that vary with the credential and the Accept header, Last-Modified,
//     and 304s that cost no rate limit;
//   - primary rate limits per credential label and resource (core, search,
//     code_search, graphql, ...; GitHub's defaults unless Limits says
//     otherwise) with the X-RateLimit-* headers, 403 (or LimitStatus) when
//     exhausted, secondary limits with Retry-After, and 60 requests an
//     hour per client IP without credentials;
//   - GraphQL at /graphql and /api/graphql: a real executor over a subset
//     of GitHub's schema (schema.graphql) with variables, aliases,
//     fragments, directives and introspection, GitHub's pagination rules
//     and point costs, and a 200 with a RATE_LIMITED error when the
//     points are spent. `gh issue list/view/create`, `gh pr list/view`,
//     `gh search` and `gh api graphql` work against it;
//   - GitHub App auth: RS256 JWTs checked as GitHub does (exp at most ten
//     minutes ahead), installation tokens (ghs_…, one hour) minted by
//     POST /app/installations/{id}/access_tokens;
//   - git smart HTTP (clone, fetch, push) at /<owner>/<repo>.git over real
//     bare repositories written from the server's own objects, served by
//     `git http-backend`, with Basic auth (the token as password; pushes
//     need one). Pushed commits show in REST and GraphQL.
//
// The seed data is deterministic: acme/widgets (public, 40 issues, 3 pull
// requests, 4 branches), acme/gadgets (private) and octo/hello (public).
// CreateIssue, PushCommit and PushFiles change it; every change shows in
// REST, GraphQL and git alike.
//
// Stats counts every call per credential label, which of them spent rate
// limit, the 304s, the GraphQL points and the installation tokens minted,
// so tests can prove what a caching proxy saved. Tokens are never logged
// or reported: only their labels are.
//
// # Control surface
//
// The same operations are JSON endpoints under /_sim/, which need no
// credentials and cost no rate limit, for tests in other processes:
//
//	GET  /_sim/health
//	GET  /_sim/stats                                          → Stats
//	POST /_sim/reset-stats
//	POST /_sim/reset-limits
//	POST /_sim/tokens     {"token","label"} or {"tokens":[{"token","label"}]}
//	POST /_sim/apps       {"app_id","key_pem","installations":[...]}
//	POST /_sim/issues     {"owner","repo","title","body"}     → {"number"}
//	POST /_sim/push       {"owner","repo","branch","message","files":{path:content}} → {"sha"}
//	POST /_sim/repos      {"owner","name","private"}
//	POST /_sim/remaining  {"label","resource","remaining"}
//	POST /_sim/limit      {"label","resource","limit"}
//	POST /_sim/secondary  {"label","retry_after":"30s"} or {"label","retry_after_seconds":30}
//	POST /_sim/fail       {"path":"/repos/acme/widgets","status":502,"count":1}
//	GET  /_sim/stream?chunks=N&interval=100ms&size=BYTES      (a line per interval, flushed)
package githubsim
