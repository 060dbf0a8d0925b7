package main

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/glb-project/glb/consul/consultest"
	"github.com/glb-project/glb/director/dataplane"
	"github.com/glb-project/glb/director/table"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestConsulState runs glb-director on --state consul:// against the
// Consul API test server, with the state imported and changed by the real
// glbctl: the director forwards by the imported table, and a drain made
// with glbctl moves the flow to its next host without a restart.
func TestConsulState(t *testing.T) {
	tp := newTopology(t)
	glbctl := testenv.BuildBinary(t, "./cmd/glbctl")

	// The Consul server listens inside the director's namespace, where
	// glb-director and glbctl reach it on loopback.
	srv := &consultest.Server{}
	if err := tp.dir.Do(t, srv.Start); err != nil {
		t.Fatalf("start consultest: %v", err)
	}
	t.Cleanup(srv.Stop)
	state := "consul://" + srv.Addr() + "/glb"
	tp.dir.Exec(t, glbctl, "state", "import", tp.config, "--state", state)

	p := tp.startFrom(t, "--state", state)

	got := make(chan dataplane.GUE, 64)
	tp.capture(t, func(g dataplane.GUE) {
		select {
		case got <- g:
		default:
		}
	})
	// syn connects from a fixed client port and returns the GUE packet
	// the director made of the SYN.
	syn := func(port int) dataplane.GUE {
		t.Helper()
		for len(got) > 0 {
			<-got
		}
		err := tp.cli.Do(t, func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{10, 0, 0, 2}}); err != nil {
				return err
			}
			if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 443, Addr: [4]byte{10, 100, 0, 3}}); err != nil && err != unix.EINPROGRESS {
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case g := <-got:
			return g
		case <-time.After(10 * time.Second):
			t.Fatalf("no GUE packet captured\n%s", p.Output())
		}
		return dataplane.GUE{}
	}

	cfg, err := table.Parse([]byte(tableJSON(keyA)))
	if err != nil {
		t.Fatal(err)
	}
	spec := &cfg.Tables[0]
	flow := table.Flow{Src: netip.MustParseAddr(clientIP)}
	row := table.RowOf(table.Hash(spec.HashKey, spec.Fields(), flow))
	before := table.Build(spec, nil).Hops(row)
	if g := syn(31000); fmt.Sprint(g.Hops) != fmt.Sprint(before) {
		t.Fatalf("hops %v, want %v from the imported table", g.Hops, before)
	}

	// Drain the flow's primary in Consul with glbctl.
	out := tp.dir.Exec(t, glbctl, "drain", before[0].String(), "--reason", "consul test", "--by", "ci", "--state", state)
	if !strings.Contains(out, "0 lose flows") {
		t.Errorf("glbctl drain preview:\n%s", out)
	}
	spec.Backend(before[0]).State = table.Draining
	after := table.Build(spec, nil).Hops(row)
	if after[0] == before[0] {
		t.Fatalf("test setup: draining %s did not move row %d (%v)", before[0], row, after)
	}
	port := 31001
	nstest.WaitFor(t, 10*time.Second, "the drain to reach the director through Consul", func() bool {
		port++
		return fmt.Sprint(syn(port).Hops) == fmt.Sprint(after)
	})
	stale := `glb_state_stale{store="consul"}`
	if v := tp.scrape(t, stale); v != 0 {
		t.Errorf("glb_state_stale = %v, want 0", v)
	}

	// Consul goes away: the director keeps forwarding with its last
	// tables and says it is stale.
	srv.Stop()
	nstest.WaitFor(t, 30*time.Second, "glb_state_stale to be 1", func() bool { return tp.scrape(t, stale) == 1 })
	if g := syn(32000); fmt.Sprint(g.Hops) != fmt.Sprint(after) {
		t.Errorf("with Consul down: hops %v, want the last good %v", g.Hops, after)
	}
	if err := tp.dir.Do(t, srv.Start); err != nil {
		t.Fatalf("restart consultest: %v", err)
	}
	nstest.WaitFor(t, 60*time.Second, "glb_state_stale to clear", func() bool { return tp.scrape(t, stale) == 0 })
}
