package stack

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// Owner returns the proxy host that holds the client's TCP connection
// from local port port to the VIP (established on VIP:443), or nil. It asks
// each proxy host's kernel with ss.
func (s *Stack) Owner(port int) *Proxy {
	owners := s.Owners()
	return owners[port]
}

// Owners maps the client ports of every connection established on
// VIP:443 to the proxy host that holds it.
func (s *Stack) Owners() map[int]*Proxy {
	m := map[int]*Proxy{}
	for _, p := range s.Proxies {
		out, err := p.NS.Command(bgCtx, "ss", "-tnH", "state", "established", "( sport = :443 )").Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			// ss prints a dual-stack listener's peers IPv4-mapped.
			local, err1 := netip.ParseAddrPort(f[2])
			peer, err2 := netip.ParseAddrPort(f[3])
			if err1 != nil || err2 != nil || local.Addr().Unmap() != VIP || peer.Addr().Unmap() != ClientIP {
				continue
			}
			m[int(peer.Port())] = p
		}
	}
	return m
}

// Proxy returns the proxy host with this name (proxy1…) or address.
func (s *Stack) Proxy(name string) *Proxy {
	for _, p := range s.Proxies {
		if p.Name == name || p.IP.String() == name {
			return p
		}
	}
	return nil
}

// SimStats is githubsim's /_sim/stats (the parts the tests read).
type SimStats struct {
	Total struct {
		Calls       int `json:"calls"`
		Counted     int `json:"counted"`
		NotModified int `json:"not_modified"`
		Git         int `json:"git"`
	} `json:"total"`
}

// Stats reads githubsim's counts: what reached "GitHub" and how much of it
// spent rate limit.
func (s *Stack) Stats() (SimStats, error) {
	var st SimStats
	code, b, err := s.Get(s.Router, SimURL()+"/_sim/stats")
	if err != nil {
		return st, err
	}
	if code != 200 {
		return st, fmt.Errorf("githubsim stats: status %d", code)
	}
	return st, json.Unmarshal(b, &st)
}

// RedirectCount is a glb-redirect outcome counter of p.
func (s *Stack) RedirectCount(p *Proxy, outcome string) (float64, error) {
	m, err := s.Metrics(s.Router, p.RedirectMetricsURL())
	if err != nil {
		return 0, err
	}
	return m[`glb_redirect_packets_total{outcome="`+outcome+`"}`], nil
}

// TablesMatch reports whether every director's kernel holds exactly the
// table `glbctl table rows` computes from the state (every host healthy).
func (s *Stack) TablesMatch() (bool, error) {
	want, err := s.ConfigRows()
	if err != nil {
		return false, err
	}
	for _, d := range s.Directors {
		got, err := d.KernelRows()
		if err != nil {
			return false, err
		}
		if len(got) != 1 || got[0] != want {
			return false, nil
		}
	}
	return true, nil
}
