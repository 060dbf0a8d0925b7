// Package route says what a glb-proxy request asks for: the REST API, the
// GraphQL API, git smart HTTP or one of the proxy's own endpoints, and the
// one normalised path that every later step uses.
//
// Normalisation happens once, before authorisation, so that the path a
// scope is checked against, the path in the cache key and the path sent
// upstream are the same string. Anything that two HTTP stacks might read
// differently is refused rather than repaired:
//
//   - dot segments ("." and "..", also percent-encoded),
//   - encoded slashes and backslashes (%2F, %5C), NUL and control bytes,
//   - empty segments ("//", a trailing "/"), invalid percent-encoding and
//     invalid UTF-8,
//   - query strings that net/url cannot parse unambiguously, and the
//     deprecated access_token parameter (a token in a URL ends up in logs).
//
// The GHES prefix /api/v3 is stripped before anything else, so
// /api/v3/repos/a/b and /repos/a/b are the same request.
//
// GitHub compares owner and repository names case-insensitively and
// everything else (branch names, file paths) case-sensitively. Key is
// therefore the canonical path with only the owner and repository segments
// folded to lower case; scopes match against Key and the cache keys on it,
// while the upstream request keeps the client's spelling (Path). Folding
// nothing else means a scope on /repos/a/b/contents/docs cannot be used to
// read /repos/a/b/contents/DOCS, a different directory.
//
// GraphQL documents are classified as query or mutation by parsing them
// with gqlparser (see ParseGraphQL); the forwarded body is re-encoded from
// what was parsed, so upstream executes exactly what was classified.
package route
