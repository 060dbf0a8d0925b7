// Package stack builds glb's whole topology (DESIGN.md §10) in network
// namespaces, from the real binaries, for the end-to-end tests and for
// `make demo`:
//
//	client ── router ──ECMP──► dir1, dir2 (glb-director, XDP)
//	  10.0.0.2  │ br0 10.1.0.1/24        │ GUE
//	            │                        ▼
//	            ├── proxy1..3 (glb-redirect on eth0, VIP on lo, glb-proxy on :443 and :8080)
//	            │     replies go straight back to the client (DSR)
//	            └── upstream 10.2.0.2 (githubsim :8080, redis-server :6379, Consul :8500)
//
// The router holds one bridge that joins the directors and the proxy hosts
// (they share a LAN, as GLB's design wants), and routes the VIP prefix
// over both directors with an ECMP multipath route hashed on ports, so
// different client connections spread over them.
//
// Start takes an nstest.TB: a *testing.T gives per-run unique names; a
// program (the demo) passes its own TB and fixed names people can type.
// Everything Start creates is removed by the TB's cleanups, in reverse
// order, even when a step fails.
package stack
