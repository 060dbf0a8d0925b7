// Package table builds glb's rendezvous forwarding table and computes the
// flow hash that indexes it. It never touches the kernel: the director
// copies the result into a BPF map, and glbctl prints and diffs it.
//
// The config is a superset of glb-director's forwarding_table.json. Each of
// the 65,536 rows starts from GLB's rendezvous order: a per-row seed, then a
// SipHash of every backend that is not inactive, sorted ascending. Any two
// backends keep their relative order in every row whatever else is in the
// table, so adding, removing or draining one host moves only the rows that
// host is in. The row's hop list is then:
//
//  1. the primary: the first healthy active or filling host in the order
//     (else the first healthy draining host, else the first host);
//  2. when the primary is filling, the first healthy active host ranked
//     behind it: it was the row's primary until the fill began and holds
//     the row's flows;
//  3. the hosts ranked ahead of the primary (draining, then unhealthy):
//     they were the row's primary while they served, so they hold its
//     existing flows and stay reachable by second chance;
//  4. the rest of the order, partitioned into healthy active/filling,
//     healthy draining and unhealthy hosts;
//
// truncated to the table's hops. With two hops this is GLB's rule (a
// draining or unhealthy primary swaps with its secondary), except that an
// unhealthy or draining secondary is skipped and a row whose two GLB
// candidates are both down still gets a healthy primary (GLB issue 77).
package table
