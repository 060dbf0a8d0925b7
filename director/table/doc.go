// Package table builds glb's rendezvous forwarding table and computes the
// flow hash that indexes it. It never touches the kernel: the director
// copies the result into a BPF map, and glbctl prints and diffs it.
//
// The config is a superset of glb-director's forwarding_table.json. Rows are
// computed as GLB computes them (DESIGN.md §4): a per-row seed, a SipHash of
// every usable backend under it, an ascending sort, then a stable partition
// into healthy active/filling, healthy draining and unhealthy hosts,
// truncated to the table's hop count. Any two backends keep their relative
// order in every row whatever else is in the table, so adding, removing or
// draining one host moves only the rows that host is in.
package table
