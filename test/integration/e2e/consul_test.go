package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glb-project/glb/consul"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/test/integration/stack"
)

// TestConsulMode runs the stack with its state in Consul (the Consul test
// server, reached by the directors and glbctl over the network): the proxies
// register themselves, a glbctl drain over consul:// reaches both
// directors, and while Consul is down the directors keep forwarding with
// the last state and catch up when it returns. Then one director alone is
// cut off from Consul while a host is drained: once the cut heals, its
// table resyncs to be byte for byte the other director's.
func TestConsulMode(t *testing.T) {
	requirements(t, "ss")
	s := startStack(t, func(c *stack.Config) { c.Consul = true })
	if !strings.HasPrefix(s.State, "consul://") {
		t.Fatalf("state %q", s.State)
	}
	c, err := s.ConsulClient()
	if err != nil {
		t.Fatal(err)
	}
	// Every proxy host registered service glb-proxy with its own address.
	// (Its HTTP check runs in this process's namespace, which cannot reach
	// the proxy hosts, so only the registration is checked, not passing.)
	nstest.WaitFor(t, 20*time.Second, "three glb-proxy registrations in Consul", func() bool {
		ps, _, err := consul.Proxies(context.Background(), c, "glb-stack", false, 0)
		if err != nil || len(ps) != len(s.Proxies) {
			return false
		}
		for _, p := range ps {
			if s.Proxy(p.Address) == nil || p.Table != stack.TableName {
				t.Fatalf("registration %+v", p)
			}
		}
		return true
	})
	waitTables(t, s, "start")

	ks := keepers(t, s, 9, 50*time.Millisecond)
	ctl(t, s, "drain", "proxy1", "--reason", "e2e: consul drain")
	waitTables(t, s, "drain over Consul")
	hosts := newConnections(t, s, 12)
	if hosts["proxy1"] != 0 {
		t.Errorf("new connections reached the drained proxy1: %v", hosts)
	}
	progress(t, "long-lived connections after a drain over Consul", ks, 5)

	// Consul goes away: the directors keep their tables and traffic flows.
	s.StopConsul()
	for _, d := range s.Directors {
		nstest.WaitFor(t, 30*time.Second, d.Name+" to notice Consul is gone", func() bool {
			m, err := s.Metrics(s.Router, d.MetricsURL())
			return err == nil && stack.Sum(m, "glb_state_stale") > 0
		})
	}
	progress(t, "long-lived connections while Consul is down", ks, 5)
	if h := newConnections(t, s, 6); h["proxy1"] != 0 {
		t.Errorf("with Consul down, new connections reached the drained proxy1: %v", h)
	}
	if err := s.StartConsul(); err != nil {
		t.Fatal(err)
	}
	ctl(t, s, "activate", "proxy1", "--reason", "e2e: consul back")
	waitTables(t, s, "activate after Consul came back")
	progress(t, "long-lived connections after Consul came back", ks, 5)

	// One director is cut off from Consul while the other is not, and a
	// host is drained meanwhile: the cut-off director keeps its old table
	// until it can reach Consul again, then resyncs to exactly the
	// other's table.
	cut, other := s.Directors[0], s.Directors[1]
	victim := s.Proxies[1]
	heal := cutOff(t, cut.NS, stack.UpstreamIP.String(), stack.ConsulPort)
	nstest.WaitFor(t, 30*time.Second, cut.Name+" to notice it cannot reach Consul", func() bool {
		m, err := s.Metrics(s.Router, cut.MetricsURL())
		return err == nil && stack.Sum(m, "glb_state_stale") > 0
	})
	ctl(t, s, "drain", victim.Name, "--reason", "e2e: drain while a director is cut off")
	nstest.WaitFor(t, 30*time.Second, other.Name+" to drain "+victim.Name, func() bool {
		n, err := primaryRows(other, victim)
		return err == nil && n == 0
	})
	if n, err := primaryRows(cut, victim); err != nil || n == 0 {
		t.Fatalf("%s, cut off from Consul, applied the drain anyway (%s primary in %d rows, %v): the cut did not hold", cut.Name, victim.Name, n, err)
	}
	progress(t, "long-lived connections while the directors disagree", ks, 5)
	heal()
	var last string
	nstest.WaitFor(t, 60*time.Second, cut.Name+" to resync with "+other.Name+" after Consul came back for it", func() bool {
		m, err := s.Metrics(s.Router, cut.MetricsURL())
		if err != nil || stack.Sum(m, "glb_state_stale") != 0 {
			last = fmt.Sprintf("stale: %v %v", stack.Sum(m, "glb_state_stale"), err)
			return false
		}
		a, errA := cut.KernelRows()
		b, errB := other.KernelRows()
		if errA != nil || errB != nil || len(a) != 1 || len(b) != 1 {
			last = fmt.Sprintf("rows: %v, %v", errA, errB)
			return false
		}
		last = fmt.Sprintf("%s has %s primary in %d rows", cut.Name, victim.Name, countPrimary(a[0], victim.IP.String()))
		return a[0] == b[0]
	})
	t.Logf("resynced: %s", last)
	for _, d := range s.Directors {
		if n, err := primaryRows(d, victim); err != nil || n != 0 {
			t.Fatalf("%s: %s is primary in %d rows after the resync (%v), want 0: drained", d.Name, victim.Name, n, err)
		}
	}
	waitTables(t, s, "after the cut-off director resynced")
	progress(t, "long-lived connections after the resync", ks, 5)
	ctl(t, s, "activate", victim.Name, "--reason", "e2e: done")
	waitTables(t, s, "activate after the resync")
}

// cutOff stops ns from talking to addr (both ways, by policy routing rules
// that prohibit it) and aborts its TCP connections to addr:port, as a
// network partition would; no firewall tool is needed. It returns the
// function that heals the cut, which also runs at cleanup.
func cutOff(t *testing.T, ns *nstest.NS, addr string, port int) (heal func()) {
	t.Helper()
	ns.IP(t, "rule", "add", "to", addr+"/32", "prohibit", "pref", "90")
	ns.IP(t, "rule", "add", "from", addr+"/32", "prohibit", "pref", "91")
	var once sync.Once
	heal = func() {
		once.Do(func() {
			ns.IP(t, "rule", "del", "pref", "90")
			ns.IP(t, "rule", "del", "pref", "91")
		})
	}
	t.Cleanup(heal)
	// Connections open before the cut would otherwise hang until their
	// own timeouts; a partition that drops them is what we want to test.
	ns.Exec(t, "ss", "-K", "dst", addr, "dport", "=", fmt.Sprintf(":%d", port))
	return heal
}
