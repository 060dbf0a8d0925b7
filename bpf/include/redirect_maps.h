/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* redirect_maps.h: every map of bpf/redirect.c. */
#ifndef GLB_REDIRECT_MAPS_H
#define GLB_REDIRECT_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "redirect_consts.h"

/* Per-CPU counters, indexed by enum outcome. The agent sums the
 * CPUs at scrape time. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OUTCOME_LEN);
	__type(key, __u32);
	__type(value, struct outcome_stat);
} redirect_stats SEC(".maps");

/* The outer IPv4 source prefixes GUE may come from (directors and other
 * proxy hosts), filled by the agent before it attaches the program. Used
 * only when cfg_trusted_only is set. The value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, REDIRECT_MAX_TRUSTED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct trusted_key);
	__type(value, __u8);
} redirect_trusted SEC(".maps");

#endif /* GLB_REDIRECT_MAPS_H */
