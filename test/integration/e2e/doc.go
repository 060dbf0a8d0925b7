// Package e2e tests glb as a whole: the topology of package stack (client,
// ECMP router, two glb-directors, three proxy hosts with glb-redirect and
// glb-proxy, githubsim and Redis upstream), driven by curl, git and gh as
// a CI job would, through drains, fills and a proxy that dies. It also
// holds the end-to-end benchmark (DESIGN.md §11): requests per second and
// latency through the VIP beside the same load sent straight to one proxy.
//
// Everything needs root; without it the tests skip (and fail in CI, where
// GLB_REQUIRE_ROOT_TESTS=1).
package e2e
