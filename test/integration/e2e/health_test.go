package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/glb-project/glb/healthcheck"
	"github.com/glb-project/glb/test/integration/stack"
)

// TestHealth stops glb-proxy on one proxy host: both directors' health
// checks take it out of their rows after three failed probes, clients keep
// working on the other hosts, and when glb-proxy starts again its rows come
// back after three passing probes. The proof counts probes, not time: when
// a director's rows change, its probe counter for the host says how many
// results it took.
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
	for _, d := range s.Directors {
		rows, err := primaryRows(d, victim)
		if err != nil {
			t.Fatal(err)
		}
		if rows < 65536/5 {
			t.Fatalf("%s: %s is primary in only %d rows before the test", d.Name, victim.Name, rows)
		}
	}

	// Stopping glb-proxy fails the HTTP check (the GUE check still
	// passes: glb-redirect runs on). Three failed probes in a row take the
	// host out; one more may have been in flight when the table changed.
	out := watchProbes(t, s, victim, "fail", victim.Name+" out of the rows", func(rows int) bool { return rows == 0 })
	s.StopProxyServer(victim)
	for d, c := range out() {
		t.Logf("%s took %s out of its rows: %v failed HTTP probes counted just before the poll that saw it, %v just after", d.Name, victim.Name, c.before, c.after)
		if c.after < healthcheck.DefaultFall {
			t.Errorf("%s took %s out after only %v failed probes: damping wants %d in a row", d.Name, victim.Name, c.after, healthcheck.DefaultFall)
		}
		if c.before > healthcheck.DefaultFall+1 {
			t.Errorf("%s took %s out only after %v failed probes: want at most %d (fall) + 1 in flight", d.Name, victim.Name, c.before, healthcheck.DefaultFall)
		}
		if h := healthy(d); h != 0 {
			t.Errorf("%s: %s is out of the rows but glb_healthcheck_backend_healthy is %v", d.Name, victim.Name, h)
		}
	}
	progress(t, "connections on the other hosts while one is down", survivors, 5)
	hosts := newConnections(t, s, 15)
	t.Logf("15 new connections with %s down reached %v", victim.Name, hosts)
	if hosts[victim.Name] != 0 {
		t.Errorf("%d new connections reached %s, whose glb-proxy is stopped", hosts[victim.Name], victim.Name)
	}

	back := watchProbes(t, s, victim, "pass", victim.Name+" back in the rows", func(rows int) bool { return rows > 0 })
	s.StartProxyServer(victim)
	for d, c := range back() {
		t.Logf("%s put %s back in its rows: %v passing HTTP probes counted just before the poll that saw it, %v just after", d.Name, victim.Name, c.before, c.after)
		if c.after < healthcheck.DefaultRise {
			t.Errorf("%s put %s back after only %v passing probes: damping wants %d in a row", d.Name, victim.Name, c.after, healthcheck.DefaultRise)
		}
		if c.before > healthcheck.DefaultRise+1 {
			t.Errorf("%s put %s back only after %v passing probes: want at most %d (rise) + 1 in flight", d.Name, victim.Name, c.before, healthcheck.DefaultRise)
		}
	}
	waitTables(t, s, "after the host came back")
	for _, d := range s.Directors {
		if h := healthy(d); h != 1 {
			t.Errorf("%s: %s is back in the rows but glb_healthcheck_backend_healthy is %v", d.Name, victim.Name, h)
		}
	}
	hosts = newConnections(t, s, 24)
	t.Logf("24 new connections with %s back reached %v", victim.Name, hosts)
	if hosts[victim.Name] == 0 {
		t.Errorf("no new connection reached %s after it came back", victim.Name)
	}
	progress(t, "connections on the other hosts after it came back", survivors, 5)
}

// primaryRows counts the rows of d's kernel table whose first hop is p.
func primaryRows(d *stack.Director, p *stack.Proxy) (int, error) {
	rows, err := d.KernelRows()
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 {
		return 0, fmt.Errorf("%s has %d tables, want 1", d.Name, len(rows))
	}
	return countPrimary(rows[0], p.IP.String()), nil
}

// probeCount is how many probe results of one kind a director had counted
// for a host since a watch began, around the poll that first saw its rows
// change. before was read just before those rows, and after the previous
// read of rows that had not changed yet: it is at most the count at the
// change plus the probes of a few milliseconds, so it bounds how many
// results the change took. after was read just after the rows: the change
// needed at least that many, so after must reach rise (fall).
type probeCount struct{ before, after float64 }

// watchProbes reads every director's count of HTTP probe results (result
// "pass" or "fail") for p, then polls, in the background, until cond holds
// on each director's number of rows with p as primary. Call it before the
// change, and the function it returns after: that waits and reports the
// counts since the start.
func watchProbes(t *testing.T, s *stack.Stack, p *stack.Proxy, result, what string, cond func(primaryRows int) bool) func() map[*stack.Director]probeCount {
	t.Helper()
	count := func(d *stack.Director) (float64, error) {
		m, err := s.Metrics(s.Router, d.MetricsURL())
		if err != nil {
			return 0, err
		}
		return stack.Sum(m, "glb_healthcheck_results_total", fmt.Sprintf("backend=%q", p.IP.String()),
			`check="http"`, fmt.Sprintf("result=%q", result)), nil
	}
	base := map[*stack.Director]float64{}
	for _, d := range s.Directors {
		n, err := count(d)
		if err != nil {
			t.Fatal(err)
		}
		base[d] = n
	}
	type answer struct {
		counts map[*stack.Director]probeCount
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		counts := map[*stack.Director]probeCount{}
		deadline := time.Now().Add(60 * time.Second)
		for len(counts) < len(s.Directors) {
			for _, d := range s.Directors {
				if _, ok := counts[d]; ok {
					continue
				}
				before, err := count(d)
				if err != nil {
					done <- answer{err: err}
					return
				}
				rows, err := primaryRows(d, p)
				if err != nil {
					done <- answer{err: err}
					return
				}
				if !cond(rows) {
					continue
				}
				after, err := count(d)
				if err != nil {
					done <- answer{err: err}
					return
				}
				counts[d] = probeCount{before: before - base[d], after: after - base[d]}
			}
			if time.Now().After(deadline) {
				done <- answer{err: fmt.Errorf("%s: not every director got there within 60s (done: %d)", what, len(counts))}
				return
			}
			time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
		}
		done <- answer{counts: counts}
	}()
	return func() map[*stack.Director]probeCount {
		t.Helper()
		a := <-done
		if a.err != nil {
			t.Fatal(a.err)
		}
		return a.counts
	}
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
