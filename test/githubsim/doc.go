// Package githubsim simulates the parts of the GitHub API that glb's tests,
// benchmarks and demo need, because GitHub itself is not reachable here.
//
// A Server is an http.Handler whose zero value is ready to use:
//
//	var s githubsim.Server
//	s.AddToken("ghp_secret", "bot")
//	ts := httptest.NewServer(&s)
//	defer ts.Close()
//	defer s.Close()
//
// It serves, at / and at the GitHub Enterprise prefix /api/v3:
//
//   - a REST subset (users, repos, issues, comments, pulls, commits,
//     branches, contents, search, rate_limit, meta) with GitHub's JSON
//     shapes, Link pagination, weak ETags that vary with the credential,
//     Last-Modified, and 304s that cost no rate limit;
//   - primary rate limits per credential and resource (core, search,
//     code_search, graphql, ...) with the X-RateLimit-* headers, 403/429
//     when exhausted, and secondary limits with Retry-After;
//   - GraphQL at /graphql and /api/graphql: a real executor over a schema
//     subset (schema.graphql), with variables, fragments, aliases,
//     introspection and GitHub's point costs; RATE_LIMITED when spent;
//   - GitHub App auth: RS256 JWTs, installation tokens minted by
//     POST /app/installations/{id}/access_tokens;
//   - git smart HTTP (clone, fetch) over real bare repositories that it
//     writes from its data, served by `git http-backend`;
//   - a control surface under /_sim/ (stats, tokens, issues, pushes, limits,
//     a slow stream) so tests in other processes can drive it.
//
// Stats counts every upstream call per credential label, which of them
// spent rate limit, and the 304s, so tests can prove what a caching proxy
// saved. Tokens are never logged or reported: only their labels are.
package githubsim
