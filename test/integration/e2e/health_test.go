package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/test/integration/stack"
)

// TestHealth stops glb-proxy on one proxy host: both directors' health
// checks take it out of their rows within three check intervals, clients
// keep working on the other hosts, and when glb-proxy starts again its
// rows come back.
func TestHealth(t *testing.T) {
	requirements(t, "ss")
	const interval = 500 * time.Millisecond
	s := startStack(t, func(c *stack.Config) { c.HealthInterval = interval })
	ks := keepers(t, s, 12, 50*time.Millisecond)
	owners := ownersOf(t, s, ks)
	victim := s.Proxies[2]
	var survivors []*keeper
	for k, p := range owners {
		if p != victim {
			survivors = append(survivors, k)
		}
	}

	healthy := func(d *stack.Director) float64 {
		m, err := s.Metrics(s.Router, d.MetricsURL())
		if err != nil {
			t.Fatal(err)
		}
		return m[fmt.Sprintf(`glb_healthcheck_backend_healthy{backend=%q}`, victim.IP)]
	}
	primary := func(d *stack.Director) (n int) {
		rows, err := d.KernelRows()
		if err != nil || len(rows) != 1 {
			t.Fatalf("%s's rows: %v (%d tables)", d.Name, err, len(rows))
		}
		return countPrimary(rows[0], victim.IP.String())
	}
	for _, d := range s.Directors {
		if n := primary(d); n < 65536/5 {
			t.Fatalf("%s: %s is primary in only %d rows before the test", d.Name, victim.Name, n)
		}
	}

	stopped := time.Now()
	s.StopProxyServer(victim)
	// Three failed probes take the host out: at most 3 intervals plus a
	// timeout after the stop. The deadline leaves room for a loaded
	// machine; the time it took is logged.
	for _, d := range s.Directors {
		nstest.WaitFor(t, 3*interval+interval/2+10*time.Second, d.Name+" to take "+victim.Name+" out of its rows", func() bool {
			return healthy(d) == 0 && primary(d) == 0
		})
		t.Logf("%s took %s out of its rows %v after glb-proxy stopped (3 intervals = %v)", d.Name, victim.Name,
			time.Since(stopped).Round(time.Millisecond), 3*interval)
	}
	progress(t, "connections on the other hosts while one is down", survivors, 5)
	hosts := newConnections(t, s, 15)
	t.Logf("15 new connections with %s down reached %v", victim.Name, hosts)
	if hosts[victim.Name] != 0 {
		t.Errorf("%d new connections reached %s, whose glb-proxy is stopped", hosts[victim.Name], victim.Name)
	}

	s.StartProxyServer(victim)
	for _, d := range s.Directors {
		var h float64
		var n int
		nstest.WaitFor(t, 3*interval+10*time.Second, d.Name+" to put "+victim.Name+" back", func() bool {
			h, n = healthy(d), primary(d)
			if h == 1 && n > 65536/5 {
				return true
			}
			return false
		})
		t.Logf("%s: %s healthy %v, primary in %d rows", d.Name, victim.Name, h, n)
	}
	waitTables(t, s, "after the host came back")
	hosts = newConnections(t, s, 24)
	t.Logf("24 new connections with %s back reached %v", victim.Name, hosts)
	if hosts[victim.Name] == 0 {
		t.Errorf("no new connection reached %s after it came back", victim.Name)
	}
	progress(t, "connections on the other hosts after it came back", survivors, 5)
}

// countPrimary counts the rows (glbctl table rows format) whose first hop
// is ip.
func countPrimary(rows, ip string) int {
	n := 0
	for i := 0; i < len(rows); {
		j := i
		for j < len(rows) && rows[j] != '\n' {
			j++
		}
		line := rows[i:j]
		if tab := indexByte(line, '\t'); tab >= 0 {
			hops := line[tab+1:]
			if len(hops) >= len(ip) && hops[:len(ip)] == ip && (len(hops) == len(ip) || hops[len(ip)] == ',') {
				n++
			}
		}
		i = j + 1
	}
	return n
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
