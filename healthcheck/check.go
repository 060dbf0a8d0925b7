package healthcheck

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/glb-project/glb/director/table"
)

// Kind is the type of a check.
type Kind uint8

// Check kinds, in the order Status lists them.
const (
	HTTP Kind = iota + 1 // GET http_uri on the health port, healthy on 200
	TCP                  // connect to the port
	GUE                  // ICMP echo wrapped in GUE, answered unwrapped
)

func (k Kind) String() string {
	switch k {
	case HTTP:
		return "http"
	case TCP:
		return "tcp"
	case GUE:
		return "gue"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Check is one distinct check of one backend. A check that several tables
// name for the same backend runs once.
type Check struct {
	Backend netip.Addr
	Kind    Kind
	Port    uint16
	URI     string // HTTP only
}

func (c Check) String() string {
	hp := netip.AddrPortFrom(c.Backend, c.Port)
	if c.Kind == HTTP {
		return fmt.Sprintf("http://%s%s", hp, c.URI)
	}
	return fmt.Sprintf("%s %s", c.Kind, hp)
}

func (c Check) compare(o Check) int {
	return cmp.Or(c.Backend.Compare(o.Backend), cmp.Compare(c.Kind, o.Kind),
		cmp.Compare(c.Port, o.Port), cmp.Compare(c.URI, o.URI))
}

// Status is the state of one check.
type Status struct {
	Check
	// Known is false until the first result.
	Known bool
	// Healthy is the damped state.
	Healthy bool
	// Streak counts the last results in a row that disagree with Healthy:
	// the state flips when it reaches the rise or fall count.
	Streak int
	// LastPassed and Reason describe the last result; Reason says why it
	// failed and is empty when it passed.
	LastPassed bool
	Reason     string
	// LastCheck is when the last result came in, by the Checker's clock.
	LastCheck time.Time
	// Results counts the results taken since the check started.
	Results uint64
}

// Checked lists, in address order, the backends of cfg that get at least
// one check: those whose health the checker will report.
func Checked(cfg *table.Config) []netip.Addr {
	var out []netip.Addr
	for _, c := range checksOf(cfg) {
		if !slices.Contains(out, c.Backend) {
			out = append(out, c.Backend)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// checksOf returns the distinct checks of every backend that is not
// inactive, sorted.
func checksOf(cfg *table.Config) []Check {
	seen := map[Check]bool{}
	var out []Check
	add := func(c Check) {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	if cfg == nil {
		return nil
	}
	for _, t := range cfg.Tables {
		for _, b := range t.Backends {
			if b.State == table.Inactive || !b.IP.IsValid() {
				continue
			}
			hc := b.Healthchecks
			if p, ok := port(hc.HTTP); ok {
				uri := hc.HTTPURI
				if uri == "" {
					uri = "/"
				}
				add(Check{Backend: b.IP, Kind: HTTP, Port: p, URI: uri})
			}
			if p, ok := port(hc.TCP); ok {
				add(Check{Backend: b.IP, Kind: TCP, Port: p})
			}
			if p, ok := port(hc.GUE); ok {
				add(Check{Backend: b.IP, Kind: GUE, Port: p})
			}
		}
	}
	slices.SortFunc(out, Check.compare)
	return out
}

// port converts a configured port; zero (and anything out of range, which
// table validation rejects) means the check is off.
func port(p int) (uint16, bool) {
	if p <= 0 || p > 65535 {
		return 0, false
	}
	return uint16(p), true
}
