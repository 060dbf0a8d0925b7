// Package healthcheck runs the director's health checks (DESIGN.md §6) and
// turns their results into the table.Health the forwarding table is built
// from.
//
// A Checker probes every backend that is not inactive, in every table it
// is given, with the checks its config names:
//
//   - HTTP: a GET of http_uri on the health port, healthy on 200;
//   - TCP: a connect to the port;
//   - GUE: an ICMP echo request to the backend, wrapped in GLB's GUE
//     header and sent to the backend's GUE port from a normal UDP socket.
//     Only a host that decapsulates GUE (glb-redirect) hands the echo to
//     its stack, and the stack answers it directly, unwrapped. The reply is
//     caught on one raw ICMP socket that every GUE check in flight shares,
//     and matched by echo id, sequence number, a random nonce and source.
//     So a passing GUE check proves the proxy host's decapsulation works
//     end to end, which an HTTP or TCP check cannot.
//
// A check that several tables share runs once. Each check is damped on its
// own: its first result is taken at once, and after that it changes state
// only after Rise (or Fall) equal results in a row. A backend is healthy
// when all its checks are. Every change of a backend's health is logged
// and sent at once, as a fresh table.Health snapshot, on the Changes
// channel, so the director rebuilds its table without delay; there is no
// hold-down timer beyond the damping.
//
// The checking host may itself be a backend, as on an all-in-one load
// balancer (GLB issue 139). A GUE packet to one's own address never
// reaches the uplink: the kernel loops it back over lo, where nothing
// decapsulates it, so GLB's check of itself always failed. Nor may such a
// check pass just because the local stack answers a ping of its own
// address. For a backend address that is local, the Checker therefore runs
// the GUE probe it would have sent through the tcx ingress programs
// attached to the interface that holds the address (BPF_PROG_TEST_RUN),
// and passes only if they hand back the inner echo request decapsulated,
// exactly. That tests the very program real GUE traffic to this host
// meets, with no packet on the wire.
package healthcheck
