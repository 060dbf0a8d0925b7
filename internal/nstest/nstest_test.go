package nstest

import (
	"net"
	"strings"
	"testing"
	"time"

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
