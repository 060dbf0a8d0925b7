// Package clients is glb-proxy's client registry: who may use the proxy,
// with which token, for what.
//
// The registry is YAML, kept in git (GitOps) and reloaded live:
//
//	version: 1
//	clients:
//	  - name: deploy-bot
//	    token_sha256: "<hex>"            # or a list, to rotate without downtime
//	    scopes:
//	      - {methods: [GET, HEAD], path: "/repos/acme/*/**", max_age: 60s}
//	      - {graphql: query}             # query | mutation | any
//	      - {git: fetch, path: "/acme/*"} # fetch | push | any
//
// max_age on a REST scope lets the cache serve a stored answer that
// young without revalidating; on a graphql query (or any) scope it lets
// identical queries be answered from the cache within the window
// (mutations never are, so max_age on a mutation scope is an error).
//
// The proxy never holds a client token in clear: it hashes the presented
// token with SHA-256 and compares the digest with every registered digest
// in constant time (subtle.ConstantTimeCompare, no early exit). Tokens look
// like glbp_<30 base62 characters><6 character CRC-32 checksum>, so a
// mistyped or foreign token (a GitHub PAT pasted by mistake) is refused
// before any lookup; NewToken mints one.
//
// A Registry holds the current Set and is swapped atomically by Replace.
// File feeds it from a file (File.Check when polled, File.Load on SIGHUP);
// any other source, such as a Consul KV watch on
// PREFIX/proxy/clients, only needs to call Parse and Replace with the
// bytes it receives.
//
// Scopes are anchored globs over the normalised path of package route:
// "*" matches exactly one segment, a "*" inside a segment matches any run
// of characters within it, and a final "**" matches any rest, including
// nothing. Scope paths are compared with route.Request.Key, in which owner
// and repository names are lower case, so they must be written in lower
// case there.
package clients
