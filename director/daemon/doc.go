// Package daemon is the body of glb-director: it joins the forwarding
// config (the state) and the health of the backends into built tables, and
// keeps the XDP data plane equal to them.
//
//	State (file, later Consul) ──┐
//	                             ├─► table.Build per table ─► dataplane.Apply
//	Health (later: checks) ──────┘
//
// A new config is applied when the State signals a change or on Reload
// (SIGHUP). A config that fails to load or validate is logged and counted,
// and the running tables stay as they are. A health change rebuilds the
// tables from the last good config at once.
package daemon
