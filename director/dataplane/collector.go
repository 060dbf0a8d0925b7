package dataplane

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/glb-project/glb/bpf"
)

// endLabels names every enum glb_end value of bpf/include/director.h, as
// the reason label of glb_director_end_total. TestEndLabels fails when it
// drifts from the C enum.
var endLabels = map[bpf.DirectorGlbEnd]string{
	bpf.DirectorGlbEndEND_TX:                "tx",
	bpf.DirectorGlbEndEND_PASS_NOT_IP:       "pass_not_ip",
	bpf.DirectorGlbEndEND_PASS_BAD_IP:       "pass_bad_ip",
	bpf.DirectorGlbEndEND_PASS_NOT_VIP:      "pass_not_vip",
	bpf.DirectorGlbEndEND_PASS_NO_BIND:      "pass_no_bind",
	bpf.DirectorGlbEndEND_PASS_NOT_LB:       "pass_not_load_balanced",
	bpf.DirectorGlbEndEND_DROP_MALFORMED:    "drop_malformed",
	bpf.DirectorGlbEndEND_DROP_FRAGMENT:     "drop_fragment",
	bpf.DirectorGlbEndEND_DROP_NO_TABLE:     "drop_no_table",
	bpf.DirectorGlbEndEND_DROP_NO_HOPS:      "drop_no_hops",
	bpf.DirectorGlbEndEND_DROP_FWD_DISABLED: "drop_forwarding_disabled",
	bpf.DirectorGlbEndEND_DROP_NO_ROUTE:     "drop_no_route",
	bpf.DirectorGlbEndEND_DROP_NO_NEIGH:     "drop_no_neighbor",
	bpf.DirectorGlbEndEND_DROP_OTHER_IFACE:  "drop_other_interface",
	bpf.DirectorGlbEndEND_DROP_TOO_BIG:      "drop_too_big",
	bpf.DirectorGlbEndEND_DROP_ADJUST:       "drop_adjust_failed",
}

// Verdict is the XDP action a reason implies.
type Verdict string

// Verdicts, as the verdict label of glb_director_packets_total.
const (
	VerdictTX   Verdict = "tx"
	VerdictPass Verdict = "pass"
	VerdictDrop Verdict = "drop"
)

// verdictOf mirrors finish() in bpf/director.c.
func verdictOf(e bpf.DirectorGlbEnd) Verdict {
	switch {
	case e == bpf.DirectorGlbEndEND_TX:
		return VerdictTX
	case e < bpf.DirectorGlbEndEND_DROP_MALFORMED:
		return VerdictPass
	}
	return VerdictDrop
}

// Ends returns the packet count of every reason, summed over CPUs, by
// reason label.
func (d *Dataplane) Ends() (map[string]uint64, error) {
	out := make(map[string]uint64, len(endLabels))
	vals := make([]uint64, d.ncpu)
	for e, label := range endLabels {
		if err := d.objs.GlbEnds.Lookup(uint32(e), &vals); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", label, err)
		}
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		out[label] = sum
	}
	return out, nil
}

// BindStats are a bind's counters, summed over CPUs.
type BindStats struct {
	BindInfo
	Packets, Bytes, Dropped uint64
}

// BindStats returns the counters of every installed bind.
func (d *Dataplane) BindStats() ([]BindStats, error) {
	d.mu.Lock()
	binds := make([]BindInfo, 0, len(d.state.binds))
	for _, bi := range d.state.binds {
		binds = append(binds, bi)
	}
	d.mu.Unlock()
	out := make([]BindStats, 0, len(binds))
	vals := make([]bpf.DirectorBindStats, d.ncpu)
	for _, bi := range binds {
		if err := d.objs.GlbBindStats.Lookup(bi.slot, &vals); err != nil {
			return nil, fmt.Errorf("read counters of bind %s: %w", bi.Bind, err)
		}
		s := BindStats{BindInfo: bi}
		for _, v := range vals {
			s.Packets += v.Packets
			s.Bytes += v.Bytes
			s.Dropped += v.Dropped
		}
		out = append(out, s)
	}
	return out, nil
}

// Collector exports the director's kernel counters, read at scrape time.
type Collector struct {
	d      *Dataplane
	errors atomic.Uint64

	packets, ends                  *prometheus.Desc
	bindPackets, bindBytes, bindDr *prometheus.Desc
	tableGen, tableHops            *prometheus.Desc
	collectErrs                    *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector for d. Register it on the caller's
// registry.
func NewCollector(d *Dataplane) *Collector {
	bind := []string{"table", "bind"}
	return &Collector{
		d:           d,
		packets:     prometheus.NewDesc("glb_director_packets_total", "Packets the XDP director handled, by verdict (tx: sent in GUE, pass: to the host stack, drop).", []string{"verdict"}, nil),
		ends:        prometheus.NewDesc("glb_director_end_total", "Packets the XDP director handled, by the reason its program returned.", []string{"reason"}, nil),
		bindPackets: prometheus.NewDesc("glb_director_bind_packets_total", "Packets sent in GUE, per bind.", bind, nil),
		bindBytes:   prometheus.NewDesc("glb_director_bind_bytes_total", "Bytes of client IP packets sent in GUE, per bind.", bind, nil),
		bindDr:      prometheus.NewDesc("glb_director_bind_dropped_total", "Packets that matched a bind but were dropped (no usable hop, unroutable fragment, FIB failure), per bind.", bind, nil),
		tableGen:    prometheus.NewDesc("glb_director_table_generation", "Times a table's rows, key or fields were swapped into the kernel since the daemon started.", []string{"table"}, nil),
		tableHops:   prometheus.NewDesc("glb_director_table_hops", "Hops per row of a table as installed; 0 means no usable backend and its packets are dropped.", []string{"table"}, nil),
		collectErrs: prometheus.NewDesc("glb_director_collection_errors_total", "Errors reading the director's BPF maps at scrape time.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.ends, c.bindPackets, c.bindBytes, c.bindDr, c.tableGen, c.tableHops, c.collectErrs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if ends, err := c.d.Ends(); err != nil {
		c.errors.Add(1)
	} else {
		byVerdict := map[Verdict]uint64{VerdictTX: 0, VerdictPass: 0, VerdictDrop: 0}
		for e, label := range endLabels {
			byVerdict[verdictOf(e)] += ends[label]
			ch <- prometheus.MustNewConstMetric(c.ends, prometheus.CounterValue, float64(ends[label]), label)
		}
		for v, n := range byVerdict {
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(n), string(v))
		}
	}
	if binds, err := c.d.BindStats(); err != nil {
		c.errors.Add(1)
	} else {
		for _, b := range binds {
			ch <- prometheus.MustNewConstMetric(c.bindPackets, prometheus.CounterValue, float64(b.Packets), b.Table, b.Bind)
			ch <- prometheus.MustNewConstMetric(c.bindBytes, prometheus.CounterValue, float64(b.Bytes), b.Table, b.Bind)
			ch <- prometheus.MustNewConstMetric(c.bindDr, prometheus.CounterValue, float64(b.Dropped), b.Table, b.Bind)
		}
	}
	for _, t := range c.d.Tables() {
		ch <- prometheus.MustNewConstMetric(c.tableGen, prometheus.GaugeValue, float64(t.Generation), t.Name)
		ch <- prometheus.MustNewConstMetric(c.tableHops, prometheus.GaugeValue, float64(t.Width), t.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.collectErrs, prometheus.CounterValue, float64(c.errors.Load()))
}
