// Package daemon is the body of glb-director: it joins the forwarding
// config (the state) and the health of the backends into built tables, and
// keeps the XDP data plane equal to them.
//
//	State (consul.Store: file or Consul) ──┐
//	                                       ├─► table.Build per table ─► Plane.Apply
//	Health (healthcheck.Checker) ──────────┘
//
// The daemon applies the config the state's watch read, so a change is
// never lost to a second read that fails. Reload (SIGHUP) re-reads through
// the same watch and its checks. A config that fails to load, validate or
// pass the store's guard is logged and counted, and the running tables
// stay as they are. A health change rebuilds the tables from the last good
// config at once. An apply the kernel refuses is counted and retried with
// backoff. After a takeover of a running director's tables, the first
// apply waits for the first health results.
package daemon
