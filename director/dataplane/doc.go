// Package dataplane loads glb's XDP director (bpf/director.c) and keeps its
// maps equal to a set of built forwarding tables.
//
// Map layout (bpf/include/director.h):
//
//	glb_binds       LPM trie: VIP prefix -> every bind covering it
//	glb_tables      array of maps: table slot -> inner array map holding
//	                65,536 rows and, at index 65,536, the hash key, hash
//	                fields and row width
//	glb_ends        per-CPU counters, one per reason a packet ended
//	glb_bind_stats  per-CPU counters per bind slot
//
// A table changes by building a new inner map (batch updates) and storing
// it in glb_tables with one update, so a packet sees either the old key and
// rows or the new ones. The trie is updated one prefix at a time after the
// tables it points to are in place; slots it no longer points to are freed
// last.
//
// Maps and XDP links are pinned under a bpffs directory. A restarted
// daemon reuses the pinned maps and swaps its program into the pinned
// links with link.Update, so forwarding never stops. The daemon on top of
// this package lives in director/daemon.
package dataplane
