// Command glb-redirect is glb's agent on a proxy host. It attaches
// bpf/redirect.c to the uplink's tcx ingress hook, so GUE packets from
// glb-director are unwrapped (or given a second chance on the next host),
// puts the VIPs on lo, sets the sysctls direct server return needs, and
// serves the program's counters on /metrics. SIGTERM undoes all of it;
// SIGHUP puts back VIPs and sysctls someone else removed. See --help and
// docs/redirect.md.
package main
