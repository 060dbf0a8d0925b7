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

#endif /* GLB_REDIRECT_MAPS_H */
