package consul

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"time"

	"github.com/glb-project/glb/director/table"
)

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// validSource checks a health report's source, which becomes a file or key
// name.
func validSource(s string) error {
	if !sourceName.MatchString(s) {
		return fmt.Errorf("health report source %q: use the director's host name (letters, digits, '.', '_', '-')", s)
	}
	return nil
}

// DecodeHealthReport parses a stored health report, strictly.
func DecodeHealthReport(data []byte) (HealthReport, error) {
	var r HealthReport
	if err := strictDecode(data, &r); err != nil {
		return HealthReport{}, fmt.Errorf("decode health report: %w", err)
	}
	if err := validSource(r.Source); err != nil {
		return HealthReport{}, err
	}
	for ip := range r.Backends {
		if !ip.Is4() {
			return HealthReport{}, fmt.Errorf("decode health report: backend %s is not IPv4", ip)
		}
	}
	return r, nil
}

// LiveHealth merges health reports into one view for previews and status:
// a backend is unhealthy if any report newer than maxAge (zero: any age)
// says so. It returns nil when no report qualifies, so that table.Build
// falls back to the config's health.
func LiveHealth(reports []HealthReport, now time.Time, maxAge time.Duration) table.Health {
	var h table.Health
	for _, r := range reports {
		if maxAge > 0 && now.Sub(r.At) > maxAge {
			continue
		}
		if h == nil {
			h = table.Health{}
		}
		for ip, ok := range r.Backends {
			if prev, seen := h[ip]; !seen || prev {
				h[ip] = ok
			}
		}
	}
	return h
}

// Disagreements lists the backends whose health differs between fresh
// reports: directors that disagree build different tables.
func Disagreements(reports []HealthReport, now time.Time, maxAge time.Duration) []netip.Addr {
	seen := map[netip.Addr]map[bool]bool{}
	for _, r := range reports {
		if maxAge > 0 && now.Sub(r.At) > maxAge {
			continue
		}
		for ip, ok := range r.Backends {
			if seen[ip] == nil {
				seen[ip] = map[bool]bool{}
			}
			seen[ip][ok] = true
		}
	}
	var out []netip.Addr
	for ip, v := range seen {
		if len(v) > 1 {
			out = append(out, ip)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
