package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/glb-project/glb/test/integration/stack"
)

// TestDrainAndFill drains a proxy host with glbctl while long-lived
// connections run through the VIP: none breaks (the drained host's
// connections live on through second chance), new connections avoid the
// host, and fill and activate bring it back.
func TestDrainAndFill(t *testing.T) {
	requirements(t, "ss")
	s := startStack(t, nil)
	ks := keepers(t, s, 18, 50*time.Millisecond)
	owners := ownersOf(t, s, ks)
	count := map[string]int{}
	var victim *stack.Proxy
	for _, p := range owners {
		count[p.Name]++
		if victim == nil || count[p.Name] > count[victim.Name] {
			victim = p
		}
	}
	t.Logf("long-lived connections per host: %v; draining %s", count, victim.Name)
	var onVictim []*keeper
	for k, p := range owners {
		if p == victim {
			onVictim = append(onVictim, k)
		}
	}

	fwd := func() float64 {
		var n float64
		for _, p := range s.Proxies {
			c, err := s.RedirectCount(p, "forwarded_to_alternate")
			if err != nil {
				t.Fatal(err)
			}
			n += c
		}
		return n
	}
	fwdBefore := fwd()
	out := ctl(t, s, "drain", victim.Name, "--reason", "e2e: kernel upgrade")
	if !strings.Contains(out, "draining") {
		t.Errorf("glbctl drain said:\n%s", out)
	}
	waitTables(t, s, "drain")
	progress(t, "every long-lived connection after the drain", ks, 10)
	if n := fwd(); n <= fwdBefore {
		t.Errorf("no packet took second chance after the drain (forwarded_to_alternate %v → %v)", fwdBefore, n)
	}
	hosts := newConnections(t, s, 20)
	t.Logf("20 new connections with %s draining reached %v", victim.Name, hosts)
	if hosts[victim.Name] != 0 {
		t.Errorf("%d new connections reached the drained host %s", hosts[victim.Name], victim.Name)
	}
	if st := ctl(t, s, "status"); !strings.Contains(st, "draining") {
		t.Errorf("glbctl status does not show the drain:\n%s", st)
	}
	progress(t, "the drained host's own connections", onVictim, 5)

	ctl(t, s, "fill", victim.Name, "--reason", "e2e: upgraded")
	waitTables(t, s, "fill")
	progress(t, "every long-lived connection after the fill", ks, 10)
	hosts = newConnections(t, s, 24)
	t.Logf("24 new connections with %s filling reached %v", victim.Name, hosts)
	if hosts[victim.Name] == 0 {
		t.Errorf("no new connection reached %s once it was filling", victim.Name)
	}
	ctl(t, s, "activate", victim.Name, "--reason", "e2e: trusted again")
	waitTables(t, s, "activate")
	progress(t, "every long-lived connection after activate", ks, 5)
	// Last-resort packets are logged, not judged: the short connections
	// above close, and a late packet of a closed connection (the client's
	// RST to the server's close_notify) finds no socket anywhere. Whether
	// an open connection broke is what the keepers check.
	for _, p := range s.Proxies {
		c, err := s.RedirectCount(p, "accepted_last_resort")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %v last-resort packets", p.Name, c)
	}
	for _, k := range ks {
		if d := k.dials.Load(); d != 1 {
			t.Errorf("connection %d dialled %d times", k.id, d)
		}
	}
}
