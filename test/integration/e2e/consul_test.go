package e2e

import (
	"context"
	"strings"
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
// the last state and catch up when it returns.
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
}
