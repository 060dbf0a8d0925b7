package nstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/testenv"
	"github.com/vishvananda/netlink"
)

func TestVethPing(t *testing.T) {
	a, b := New(t, "a"), New(t, "b")
	Veth(t, a, "eth0", b, "eth0")
	a.IP(t, "addr", "add", "192.0.2.1/24", "dev", "eth0")
	b.IP(t, "addr", "add", "192.0.2.2/24", "dev", "eth0")
	out := a.Exec(t, "ping", "-c", "1", "-W", "2", "192.0.2.2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping across veth failed:\n%s", out)
	}
	// Do switches the thread into the namespace: eth0 exists there only.
	err := b.Do(t, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || !addrs[0].IP.Equal(net.ParseIP("192.0.2.2")) {
			t.Errorf("addresses in b: %v", addrs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStartStop(t *testing.T) {
	a := New(t, "p")
	p := a.Start(t, "sleep", "60")
	p.Stop()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("process did not stop")
	}
}

func TestNameFitsInterface(t *testing.T) {
	if n := Name("a-very-long-tag-indeed"); len(n) > 15 {
		t.Fatalf("Name = %q, longer than 15 bytes", n)
	}
}

// TestReapKilledRun plays a run that was killed before its cleanups: its
// claim file names a dead pid, and its namespace, root-namespace link and
// bpffs pin are still there. The next run removes exactly those.
func TestReapKilledRun(t *testing.T) {
	testenv.RequireRoot(t)
	claim(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	prefix := "g" + fmt.Sprintf("%04x", dead.Process.Pid&0xffff)
	if prefix == runPrefix {
		t.Skip("the fake prefix equals this run's")
	}
	nsName, linkName, other := prefix+"1ns", prefix+"2ln", prefix+"peer"
	pin := filepath.Join("/sys/fs/bpf", prefix+"3pin")
	run(t, "ip", "netns", "add", nsName)
	// A veth pair: one end made by Name, the other not (kept, until its
	// peer goes; a veth pair is deleted as one).
	run(t, "ip", "link", "add", linkName, "type", "veth", "peer", "name", other)
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", nsName).Run()
		_ = exec.Command("ip", "link", "del", linkName).Run()
		_ = exec.Command("ip", "link", "del", other).Run()
		_ = os.RemoveAll(pin)
	})
	if err := os.MkdirAll(pin, 0o700); err != nil {
		t.Fatal(err)
	}
	claimFile := filepath.Join(claimDir, prefix)
	if err := os.WriteFile(claimFile, []byte(fmt.Sprintln(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(claimDir, "g"+strings.Repeat("f", 4))
	if err := os.WriteFile(live, []byte(fmt.Sprintln(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(live) })

	reapDead(t)

	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), nsName) {
		t.Errorf("namespace %s survived the reap", nsName)
	}
	if exec.Command("ip", "link", "show", linkName).Run() == nil {
		t.Errorf("link %s survived the reap", linkName)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("pin %s survived the reap: %v", pin, err)
	}
	if _, err := os.Stat(claimFile); !os.IsNotExist(err) {
		t.Errorf("the dead run's claim file survived: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live run's claim file was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(claimDir, runPrefix)); err != nil {
		t.Errorf("this run's claim file is missing: %v", err)
	}
}

func TestOwned(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"g1a2b1ns", true},
		{"g1a2b12glb", true},
		{"g1a2b", false},     // the prefix alone is not a Name
		{"g1a2bpeer", false}, // no counter
		{"g1a2c1ns", false},  // another run
		{"glb", false},
	} {
		if got := owned(tc.name, "g1a2b"); got != tc.want {
			t.Errorf("owned(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, p := range []string{"g1a2b", "gffff"} {
		if !validPrefix(p) {
			t.Errorf("validPrefix(%q) = false", p)
		}
	}
	for _, p := range []string{"glb00", "g1a2", "g1a2b3", "x1a2b", "gABCD"} {
		if validPrefix(p) {
			t.Errorf("validPrefix(%q) = true", p)
		}
	}
}
