package redirect

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/glb-project/glb/bpf"
	"github.com/prometheus/client_golang/prometheus"
)

// collector reads the program's per-CPU counters at scrape time.
type collector struct {
	stats   *ebpf.Map
	packets *prometheus.Desc
	bytes   *prometheus.Desc
	info    *prometheus.Desc
	errors  prometheus.Counter
	iface   string
	self    string
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(stats *ebpf.Map, iface string, self netip.Addr) *collector {
	return &collector{
		stats: stats,
		packets: prometheus.NewDesc("glb_redirect_packets_total",
			"Packets seen by the glb-redirect program, by outcome (GLB's glb_redirect_stats names).",
			[]string{"outcome"}, nil),
		bytes: prometheus.NewDesc("glb_redirect_bytes_total",
			"Bytes of those packets as received, Ethernet header included, by outcome.",
			[]string{"outcome"}, nil),
		info: prometheus.NewDesc("glb_redirect_info",
			"The uplink the program is attached to and the address it treats as this host's.",
			[]string{"iface", "self"}, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glb_redirect_collection_errors_total",
			Help: "Scrapes that failed to read the program's counters.",
		}),
		iface: iface,
		self:  self.String(),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.bytes
	ch <- c.info
	c.errors.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, c.iface, c.self)
	stats, err := readCounters(c.stats)
	if err != nil {
		c.errors.Inc()
	} else {
		for i, s := range stats {
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(s.Packets), outcomeLabels[i])
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.Bytes), outcomeLabels[i])
		}
	}
	c.errors.Collect(ch)
}

// readCounters sums the per-CPU slots of every outcome.
func readCounters(m *ebpf.Map) ([]bpf.RedirectOutcomeStat, error) {
	out := make([]bpf.RedirectOutcomeStat, len(outcomeLabels))
	var per []bpf.RedirectOutcomeStat
	for i := range out {
		if err := m.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", outcomeLabels[i], err)
		}
		for _, s := range per {
			out[i].Packets += s.Packets
			out[i].Bytes += s.Bytes
		}
	}
	return out, nil
}
