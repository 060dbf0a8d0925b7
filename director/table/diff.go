package table

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
)

// Diff is the no-op preview of a table change: what moving from one built
// table to another does to the flows. Every row carries about 1/65,536 of
// the flows, so row counts are flow shares.
type Diff struct {
	Table string
	// Changed counts rows whose hop list changes.
	Changed int
	// SecondChance counts rows whose primary changes while the old primary
	// stays in the new hop list: their existing flows survive through
	// second chance.
	SecondChance int
	// Lost counts rows whose new hop list no longer holds the old primary:
	// existing flows there break.
	Lost  int
	Hosts []HostDiff // by address
}

// HostDiff is one backend's part in a Diff.
type HostDiff struct {
	IP                     netip.Addr
	From, To               State // zero when absent from that side
	PrimaryFrom            int   // rows it is primary for, before
	PrimaryTo              int   // and after
	Changed                int   // changed rows it is in, before or after
	SecondChance, Lost     int   // rows it was primary for that need second chance, or lose flows
	HealthyFrom, HealthyTo bool
}

// Compare previews the move from table a to table b. Either may be nil
// (a table being added or removed).
func Compare(a, b *Table) Diff {
	d := Diff{}
	hosts := map[netip.Addr]*HostDiff{}
	host := func(ip netip.Addr) *HostDiff {
		h := hosts[ip]
		if h == nil {
			h = &HostDiff{IP: ip}
			hosts[ip] = h
		}
		return h
	}
	for _, t := range []*Table{a, b} {
		if t == nil {
			continue
		}
		d.Table = t.Name
		for i, be := range t.Backends {
			h := host(be.IP)
			if t == a {
				h.From, h.HealthyFrom = be.State, t.Healthy[i]
			} else {
				h.To, h.HealthyTo = be.State, t.Healthy[i]
			}
		}
	}
	var ha, hb []netip.Addr
	for r := range NumRows {
		ha, hb = ha[:0], hb[:0]
		if a != nil && a.Width > 0 {
			for _, i := range a.Row(uint16(r)) {
				ha = append(ha, a.Backends[i].IP)
			}
			host(ha[0]).PrimaryFrom++
		}
		if b != nil && b.Width > 0 {
			for _, i := range b.Row(uint16(r)) {
				hb = append(hb, b.Backends[i].IP)
			}
			host(hb[0]).PrimaryTo++
		}
		if slices.Equal(ha, hb) {
			continue
		}
		d.Changed++
		for _, ip := range ha {
			host(ip).Changed++
		}
		for _, ip := range hb {
			if !slices.Contains(ha, ip) {
				host(ip).Changed++
			}
		}
		if len(ha) == 0 || len(hb) > 0 && hb[0] == ha[0] {
			continue
		}
		if slices.Contains(hb, ha[0]) {
			d.SecondChance++
			host(ha[0]).SecondChance++
		} else {
			d.Lost++
			host(ha[0]).Lost++
		}
	}
	for _, h := range hosts {
		d.Hosts = append(d.Hosts, *h)
	}
	slices.SortFunc(d.Hosts, func(x, y HostDiff) int { return x.IP.Compare(y.IP) })
	return d
}

// Write prints the diff as a short table: a summary line, then one line
// per host and a total.
func (d Diff) Write(w io.Writer) error {
	pct := func(n int) string { return fmt.Sprintf("%.1f%%", 100*float64(n)/NumRows) }
	if d.Changed == 0 {
		_, err := fmt.Fprintf(w, "table %s: no change (0 of %d rows move)\n", d.Table, NumRows)
		return err
	}
	fmt.Fprintf(w, "table %s: %d of %d rows change (%s); %d need second chance (%s), %d lose flows (%s)\n\n",
		d.Table, d.Changed, NumRows, pct(d.Changed), d.SecondChance, pct(d.SecondChance), d.Lost, pct(d.Lost))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tPRIMARY ROWS\tCHANGED\tSECOND CHANCE\tLOST")
	for _, h := range d.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%d → %d\t%d\t%d\t%d\n", h.IP, stateChange(h), h.PrimaryFrom, h.PrimaryTo, h.Changed, h.SecondChance, h.Lost)
	}
	fmt.Fprintf(tw, "TOTAL\t\t\t%d\t%d\t%d\n", d.Changed, d.SecondChance, d.Lost)
	return tw.Flush()
}

func stateChange(h HostDiff) string {
	name := func(s State, healthy bool) string {
		if s == 0 {
			return "absent"
		}
		if !healthy && s != Inactive {
			return s.String() + " (unhealthy)"
		}
		return s.String()
	}
	from, to := name(h.From, h.HealthyFrom), name(h.To, h.HealthyTo)
	if from == to {
		return from
	}
	return strings.Join([]string{from, to}, " → ")
}
