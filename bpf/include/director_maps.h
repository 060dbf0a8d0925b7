/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * director_maps.h: every map of the XDP director. All are pinned by name
 * under the loader's bpffs directory, so a restarted glb-director reuses
 * them and its new program sees the tables the old one used.
 */
#ifndef GLB_DIRECTOR_MAPS_H
#define GLB_DIRECTOR_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "director.h"

/* VIP prefix -> its prefix id in glb_ports, and its portless binds. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GLB_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bind_key);
	__type(value, struct bind_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} glb_binds SEC(".maps");

/* (prefix id, protocol, port block) -> the bind that serves it. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GLB_MAX_PORT_RANGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port_key);
	__type(value, struct bind_ref);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} glb_ports SEC(".maps");

/* One table: GLB_NUM_ROWS rows, then the metadata. The loader creates a
 * fresh one for every change and swaps it in with one update of
 * glb_tables. */
struct glb_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GLB_TABLE_ENTRIES);
	__type(key, __u32);
	__type(value, struct table_row);
};

/* Table slot -> table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, GLB_MAX_TABLES);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct glb_table);
} glb_tables SEC(".maps");

/* enum glb_end -> packets, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, END_LEN);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} glb_ends SEC(".maps");

/* bind slot -> counters, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GLB_MAX_BINDS);
	__type(key, __u32);
	__type(value, struct bind_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} glb_bind_stats SEC(".maps");

#endif /* GLB_DIRECTOR_MAPS_H */
