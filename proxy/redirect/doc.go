// Package redirect is the proxy-host side of glb's L4: it loads
// bpf/redirect.c on the uplink with tcx, puts the VIPs on lo, sets the
// sysctls that direct server return and decapsulation need, and exports
// the program's per-CPU counters to Prometheus. Close undoes all of it;
// Leave exits and leaves it in place, pinned, for the next agent, which
// adopts the pinned tcx link with one atomic program swap (no packet
// finds the uplink without a program) and the state file of what the
// earlier agents changed.
//
// The program unwraps the GUE packets glb-director sends. A packet that
// belongs to this host (a SYN, a packet of a local socket, a valid SYN
// cookie, or the last hop) goes up the stack as if it had arrived
// directly; any other packet gets a second chance on the next hop listed
// in its GUE header. DESIGN.md §5 and docs/redirect.md say more.
package redirect
