// Package secondchance tests glb's L4 end to end with real TCP: a client
// reaches a VIP through glb-director (XDP) and two proxy hosts running
// glb-redirect (tcx), in network namespaces on one bridged LAN, with a
// plain TCP echo server on the VIP in each proxy namespace.
//
// 100 long-lived connections, each from its own client address so they
// hash onto many rows, keep echoing numbered messages: 50 opened while p1
// is alone in the table, 50 after p2 is added. The table then changes
// under them (p2 added, p1 drained, the change reversed with p2 draining)
// and second chance must keep every connection alive with its data intact,
// which the glb_redirect counters show as forwarded packets. Last, p2 dies
// without warning: only its own connections may break.
//
// The package holds only tests; they need root (see internal/testenv).
package secondchance
