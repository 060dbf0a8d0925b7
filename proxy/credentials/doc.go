// Package credentials is glb-proxy's pool of upstream GitHub credentials:
// personal access tokens and GitHub App installations. A Pool is the
// innermost http.RoundTripper of the proxy's stack; it signs each upstream
// request with the credential best placed to answer it and learns from
// every answer.
//
// Choosing. State is kept per (credential, X-RateLimit-Resource):
// remaining, limit and reset, read from every response. A request goes to
// the credential named by the request's Choice.Prefer (the one whose ETag
// the cache holds: GitHub's ETags differ per token, so only that credential
// can answer the revalidation with a free 304), else to the one with the
// most remaining for the request's resource; ties go to Apps, then to the
// order of the configuration.
//
// Benching. A credential is benched for a resource until its reset when
// GitHub answers 403 or 429 with X-RateLimit-Remaining: 0, or a GraphQL 200
// carries a RATE_LIMITED error; for all resources for Retry-After (or a
// minute) after a secondary limit; for five minutes after a 401 (a revoked
// PAT). A credential known to have nothing left is skipped without asking.
//
// Retrying. A request moves to the next credential only when that is safe:
// when GitHub provably did not execute it (a rate-limit refusal, a 401, a
// RATE_LIMITED GraphQL answer, a connection that was never made), or when
// it is idempotent (GET, HEAD, OPTIONS). When every credential is benched
// the client gets GitHub's own refusal at once, with Retry-After: the
// status (403 or 429) and words GitHub used when it benched them, or a
// 403 when there was no refusal to go by.
//
// Apps. Installation tokens are minted with an RS256 JWT
// (POST /app/installations/{id}/access_tokens) and used until five minutes
// before they expire. With Redis, replicas share them: one replica takes a
// lock (SET NX PX) and mints, the others wait for the token to appear. The
// shared copy is sealed with AES-GCM under a key derived from the App's
// private key, so Redis alone does not hold a usable token. Without Redis,
// or while it is down, each replica mints its own.
//
// No token ever appears in a log line, a metric label or an error: only
// credential names do.
package credentials
