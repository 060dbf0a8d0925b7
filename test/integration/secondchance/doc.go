// Package secondchance tests glb's L4 end to end with real TCP: a client
// reaches a VIP through glb-director (XDP) and two proxy hosts running
// glb-redirect (tcx), in network namespaces on one bridged LAN. While 100
// long-lived connections keep echoing data, the forwarding table changes
// under them (a host is added, one drained, the change reversed) and
// second chance must keep every connection alive; then a host dies and
// only its own connections may break.
//
// The package holds only tests; they need root (see internal/testenv).
package secondchance
