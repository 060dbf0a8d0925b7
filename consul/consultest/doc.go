// Package consultest is an in-process server for the part of Consul's HTTP
// API that glb uses, with Consul's documented semantics, so that code
// written against github.com/hashicorp/consul/api can be tested without a
// Consul binary (none can be installed on glb's build machines).
//
// What it serves (one agent that is also the only server, node
// "consultest", datacenter "dc1"):
//
//   - KV: GET/PUT/DELETE /v1/kv/<key> with ?recurse, ?keys, ?separator,
//     ?raw, ?cas and ?flags; values base64 in JSON; 404 for a missing key;
//     512 KiB value limit.
//   - Transactions: PUT /v1/txn with KV operations (set, cas, get,
//     get-or-empty, get-tree, check-index, check-not-exists, delete,
//     delete-cas, delete-tree), all or nothing, 409 with Errors on rollback,
//     at most 128 operations.
//   - Blocking queries on every read endpoint: ?index and ?wait (default
//     5m, at most 10m, plus up to wait/16 of jitter). A query returns when
//     the index of its result grows past ?index, or at the timeout; like
//     Consul it may return early with the same data (an idempotent write
//     bumps the index). X-Consul-Index is never 0 and never goes down,
//     except after Wipe, which simulates a restore from an old snapshot.
//   - Agent: service register/deregister, /v1/agent/services,
//     /v1/agent/service/<id>, /v1/agent/checks, TTL updates
//     (/v1/agent/check/pass|warn|fail|update/<id>). Checks start critical
//     unless the registration gives a Status. HTTP checks are real GETs run
//     on their interval (2xx passing, 429 warning, anything else critical),
//     TCP checks are real connects, TTL checks go critical when not
//     refreshed in time, and DeregisterCriticalServiceAfter is honoured.
//   - Health and catalog: /v1/health/service/<name> (?passing, ?tag),
//     /v1/catalog/service/<name>, /v1/catalog/services, /v1/status/leader
//     and /v1/status/peers.
//
// Stop and Start take the server down and bring it back on the same
// address with its data (a Consul server keeps its data across restarts),
// so tests can check how clients ride out an outage.
//
// Left out: sessions and locks, ACLs, namespaces, filters (?filter),
// prepared queries, Connect, hash-based blocking on agent endpoints.
// Requests for them get a 400 that says so.
package consultest
