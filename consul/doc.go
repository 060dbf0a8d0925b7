// Package consul holds glb's operational state and everything that talks
// to Consul.
//
// A Store is where the forwarding-table state lives (DESIGN.md §7): a JSON
// file (FileStore, the embedded default) or a Consul KV prefix (KVStore,
// "consul://HOST:8500/PREFIX"). Both give the same *table.Config, the same
// Update with optimistic concurrency, and the same Watch, which delivers
// only real changes and keeps the last good state, marked stale, when the
// source cannot be read:
//
//	st, err := consul.Open(consul.Resolve(flagState, os.Getenv(consul.EnvState)), consul.Options{Log: log, Registerer: reg})
//	cfg, err := st.Load(ctx)                        // fail fast at start
//	go st.Watch(ctx, func(c *table.Config) { ... }) // then follow changes
//
// WatchEvents is Watch for a consumer that must also know when a read
// fails and what a Refresh (SIGHUP) found, as glb-director's daemon does.
// Every request to Consul has a client-side deadline, so a Consul that
// stops answering is marked stale like one that is down.
//
// In Consul, a table's settings and backends live at PREFIX/tables/<name>
// and each host's admin state at PREFIX/hosts/<ip>
// ({"state","reason","by","at"}), which overrides the table's baseline.
// Writes are one transaction of check-and-set operations that also bumps
// PREFIX/serial, so concurrent writers take turns and a rule checked
// against what was read (one host at a time per table) still holds when
// the write lands.
//
// Change applies the host state machine and the one-at-a-time rule of
// DESIGN.md §4; glbctl and ChatOps use it inside Store.Update.
//
// Service registers a glb-proxy instance with its local Consul agent
// (service "glb-proxy", Meta.cluster, Meta.table, an HTTP check on
// /_glb/health) and deregisters it on exit. KVStore.WatchClients follows
// glb-proxy's client registry at PREFIX/proxy/clients, and
// KVStore.ReplaceClients writes it with check-and-set.
//
// Only github.com/hashicorp/consul/api talks to Consul; tests run it
// against consultest, an in-process server with Consul's semantics.
package consul
