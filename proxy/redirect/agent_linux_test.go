package redirect

import (
	"bytes"
	"encoding/binary"
	"github.com/glb-project/glb/internal/syncbuf"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
)

// lan builds a switch namespace with a bridge and plugs hosts into it,
// each with up0 at the given address.
type lan struct {
	sw *nstest.NS
	n  int
}

func newLAN(tb testing.TB) *lan {
	sw := nstest.New(tb, "sw")
	sw.IP(tb, "link", "add", "br0", "type", "bridge")
	sw.IP(tb, "link", "set", "br0", "up")
	return &lan{sw: sw}
}

func (l *lan) host(tb testing.TB, tag string, addr netip.Addr) *nstest.NS {
	tb.Helper()
	ns := nstest.New(tb, tag)
	l.n++
	port := "s" + tag
	nstest.Veth(tb, ns, "up0", l.sw, port)
	l.sw.IP(tb, "link", "set", port, "master", "br0")
	ns.IP(tb, "addr", "add", addr.String()+"/24", "dev", "up0")
	return ns
}

func nsSysctl(tb testing.TB, ns *nstest.NS, key string) string {
	tb.Helper()
	var v string
	if err := ns.Do(tb, func() error {
		var err error
		v, err = readSysctl(key)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return v
}

func setNSSysctl(tb testing.TB, ns *nstest.NS, key, value string) {
	tb.Helper()
	if err := ns.Do(tb, func() error { return writeSysctl(key, value) }); err != nil {
		tb.Fatal(err)
	}
}

func loAddrs(tb testing.TB, ns *nstest.NS) map[netip.Addr]bool {
	tb.Helper()
	have := map[netip.Addr]bool{}
	if err := ns.Do(tb, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(lo, netlink.FAMILY_ALL)
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP)
			have[ip.Unmap()] = true
		}
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return have
}

func tcxPrograms(tb testing.TB, ns *nstest.NS, iface string) int {
	tb.Helper()
	var n int
	if err := ns.Do(tb, func() error {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		n = len(res.Programs)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return n
}

// startAgent starts an agent with cfg inside ns and closes it when the
// test ends (Close does nothing for an agent that already left or
// closed).
func startAgent(tb testing.TB, ns *nstest.NS, cfg Config) (*Agent, error) {
	tb.Helper()
	var a *Agent
	err := ns.Do(tb, func() error {
		var err error
		a, err = Start(cfg)
		return err
	})
	if a != nil {
		tb.Cleanup(func() { _ = ns.Do(tb, a.Close) })
	}
	return a, err
}

// TestAgent starts the agent on a proxy host of a small LAN, checks what
// it changed, sends it real GUE from a director namespace (one packet it
// must take, one it must pass to a second proxy host), and checks that
// Close undoes everything.
func TestAgent(t *testing.T) {
	var (
		p1IP      = netip.MustParseAddr("10.1.0.11")
		p2IP      = netip.MustParseAddr("10.1.0.12")
		dirIP     = netip.MustParseAddr("10.1.0.2")
		foreign   = netip.MustParseAddr("10.100.0.9")
		rpFilter  = "net/ipv4/conf/up0/rp_filter"
		arpIgnore = "net/ipv4/conf/all/arp_ignore"
		arpAnnce  = "net/ipv4/conf/all/arp_announce"
	)
	l := newLAN(t)
	p1 := l.host(t, "p1", p1IP)
	p2 := l.host(t, "p2", p2IP)
	dir := l.host(t, "dir", dirIP)
	setNSSysctl(t, dir, "net/ipv4/conf/all/rp_filter", "0")
	setNSSysctl(t, dir, "net/ipv4/conf/up0/rp_filter", "0")
	// The settings that break DSR, as a distribution might ship them.
	setNSSysctl(t, p1, rpFilter, "1")
	setNSSysctl(t, p1, arpIgnore, "0")
	setNSSysctl(t, p1, arpAnnce, "0")
	p1.IP(t, "addr", "add", foreign.String()+"/32", "dev", "lo")

	reg := prometheus.NewPedanticRegistry()
	var logs syncbuf.Buffer
	a, err := startAgent(t, p1, Config{Iface: "up0", VIPs: []netip.Addr{vip4, foreign, vip6}, Registerer: reg,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	closed := false
	closeAgent := func() {
		if closed {
			return
		}
		closed = true
		if err := p1.Do(t, a.Close); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	t.Cleanup(closeAgent)

	t.Run("it sets what DSR needs and says so", func(t *testing.T) {
		if a.Self() != p1IP {
			t.Errorf("self %s, want the uplink's %s", a.Self(), p1IP)
		}
		for key, want := range map[string]string{rpFilter: "2", arpIgnore: "1", arpAnnce: "2"} {
			if got := nsSysctl(t, p1, key); got != want {
				t.Errorf("%s = %s, want %s", key, got, want)
			}
		}
		for _, re := range []string{
			`msg="sysctl changed" key=net\.ipv4\.conf\.up0\.rp_filter old=1 new=2`,
			`msg="sysctl changed" key=net\.ipv4\.conf\.all\.arp_ignore old=0 new=1`,
			`msg="sysctl changed" key=net\.ipv4\.conf\.all\.arp_announce old=0 new=2`,
			`msg="VIP added" vip=10\.100\.0\.1/32 dev=lo`,
			`msg="VIP added" vip=fd00:100::1/128 dev=lo`,
			`msg="VIP already on lo; it stays there on exit" vip=10\.100\.0\.9`,
			`msg="program attached" iface=up0 hook=tcx/ingress self=10\.1\.0\.11`,
			`level=WARN msg="GUE is accepted from any source: .*set --gue-from to the directors' and proxy hosts' prefixes`,
		} {
			if !regexp.MustCompile(re).MatchString(logs.String()) {
				t.Errorf("log lacks %s:\n%s", re, logs.String())
			}
		}
		have := loAddrs(t, p1)
		for _, v := range []netip.Addr{vip4, vip6, foreign} {
			if !have[v] {
				t.Errorf("VIP %s not on lo", v)
			}
		}
		if n := tcxPrograms(t, p1, "up0"); n != 1 {
			t.Errorf("%d programs on tcx ingress of up0, want 1", n)
		}
	})

	t.Run("it takes a GUE health check and answers it directly", func(t *testing.T) {
		icmp := listenPacketIn(t, dir, "ip4:icmp", dirIP.String())
		sender := listenPacketIn(t, dir, "udp4", dirIP.String()+":0")
		echo := ipv4(dirIP, vip4, protoICMP, icmp4(8, 0, 0x4242_0001, []byte("glb health")), ipv4Opts{})
		payload := gueHdr{hops: []netip.Addr{p2IP}}.bytes(echo)
		if _, err := sender.WriteTo(payload, &net.UDPAddr{IP: p1IP.AsSlice(), Port: guePort}); err != nil {
			t.Fatal(err)
		}
		icmp.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := icmp.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no echo reply from the VIP: %v\ncounters: %v", err, counters(t, a))
			}
			if from.String() == vip4.String() && n >= 8 && buf[0] == 0 && binary.BigEndian.Uint32(buf[4:]) == 0x4242_0001 {
				break
			}
		}
	})

	t.Run("it unwraps IPv6 in GUE so that the IPv6 stack answers", func(t *testing.T) {
		dir6, p16 := netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("fd00:1::11")
		dir.IP(t, "addr", "add", dir6.String()+"/64", "dev", "up0", "nodad")
		p1.IP(t, "addr", "add", p16.String()+"/64", "dev", "up0", "nodad")
		icmp := listenPacketIn(t, dir, "ip6:ipv6-icmp", dir6.String())
		sender := listenPacketIn(t, dir, "udp4", dirIP.String()+":0")
		echo := ipv6(dir6, vip6, protoICMPv6, icmp6(dir6, vip6, 128, 0, 0x6666_0001, []byte("glb health v6")))
		if _, err := sender.WriteTo(gueHdr{}.bytes(echo), &net.UDPAddr{IP: p1IP.AsSlice(), Port: guePort}); err != nil {
			t.Fatal(err)
		}
		icmp.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := icmp.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no ICMPv6 echo reply from the VIP: %v\ncounters: %v", err, counters(t, a))
			}
			if from.(*net.IPAddr).IP.Equal(vip6.AsSlice()) && n >= 8 && buf[0] == 129 && binary.BigEndian.Uint32(buf[4:]) == 0x6666_0001 {
				break
			}
		}
	})

	t.Run("it passes an unknown flow to the next hop", func(t *testing.T) {
		next := listenPacketIn(t, p2, "udp4", p2IP.String()+":19523")
		sender := listenPacketIn(t, dir, "udp4", dirIP.String()+":0")
		inner := v4tcp(remote, vip4, 40001, 443, ackSeg)
		sent := gueHdr{hops: []netip.Addr{p2IP}}.bytes(inner)
		if _, err := sender.WriteTo(sent, &net.UDPAddr{IP: p1IP.AsSlice(), Port: guePort}); err != nil {
			t.Fatal(err)
		}
		next.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := next.ReadFrom(buf)
		if err != nil {
			t.Fatalf("nothing reached the next hop: %v\ncounters: %v", err, counters(t, a))
		}
		want := gueHdr{hops: []netip.Addr{p2IP}, nextHop: 1}.bytes(inner)
		if from.(*net.UDPAddr).IP.String() != p1IP.String() || !bytes.Equal(buf[:n], want) {
			t.Errorf("next hop got %x from %s, want %x from %s", buf[:n], from, want, p1IP)
		}
		c := counters(t, a)
		if c["forwarded_to_alternate"] != 1 || c["accepted_icmp"] != 2 {
			t.Errorf("counters %v, want one forwarded_to_alternate and two accepted_icmp", c)
		}
	})

	t.Run("it unwraps IPv6 TCP behind extension headers and in fragments, and the stack answers", func(t *testing.T) {
		dir6, p16 := netip.MustParseAddr("fd00:2::2"), netip.MustParseAddr("fd00:2::11")
		dir.IP(t, "addr", "add", dir6.String()+"/64", "dev", "up0", "nodad")
		p1.IP(t, "addr", "add", p16.String()+"/64", "dev", "up0", "nodad")
		var ln net.Listener
		if err := p1.Do(t, func() error {
			var err error
			ln, err = net.Listen("tcp", netip.AddrPortFrom(vip6, 8443).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		synAcks := listenPacketIn(t, dir, "ip6:tcp", dir6.String())
		sender := listenPacketIn(t, dir, "udp4", dirIP.String()+":0")
		before := counters(t, a)
		send := func(inner []byte) {
			t.Helper()
			if _, err := sender.WriteTo(gueHdr{hops: []netip.Addr{p2IP}}.bytes(inner), &net.UDPAddr{IP: p1IP.AsSlice(), Port: guePort}); err != nil {
				t.Fatal(err)
			}
		}
		// waitSynAck reads TCP segments reaching the director until the
		// SYN-ACK the VIP sends to port arrives.
		waitSynAck := func(port uint16) {
			t.Helper()
			synAcks.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1500)
			for {
				n, from, err := synAcks.ReadFrom(buf)
				if err != nil {
					t.Fatalf("no SYN-ACK from the VIP to port %d: %v\ncounters: %v", port, err, counters(t, a))
				}
				if from.(*net.IPAddr).IP.Equal(vip6.AsSlice()) && n >= 20 && binary.BigEndian.Uint16(buf[2:]) == port &&
					buf[13]&(tcpSYN|tcpACK) == tcpSYN|tcpACK {
					return
				}
			}
		}
		send(v6tcpExt(dir6, vip6, 41001, 8443, synSeg, hopByHop(), destOpts()))
		waitSynAck(41001)
		// A SYN with 16 bytes of data, in two fragments: the first carries
		// the TCP header and goes the TCP way, the second is taken as a
		// fragment, and the stack puts them together.
		first, rest := v6tcpFrags(dir6, vip6, 41002, 8443, tcpOpts{flags: tcpSYN, seq: 7, options: synSeg.options, payload: []byte("sixteen bytes!!!")}, 24, 0xf00d, hopByHop())
		send(first)
		send(rest)
		waitSynAck(41002)
		after := counters(t, a)
		if d := after["accepted_syn"] - before["accepted_syn"]; d != 2 {
			t.Errorf("accepted_syn rose by %d, want 2", d)
		}
		if d := after["accepted_fragment"] - before["accepted_fragment"]; d != 1 {
			t.Errorf("accepted_fragment rose by %d, want 1", d)
		}
	})

	t.Run("it exports its counters", func(t *testing.T) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, mf := range mfs {
			got[mf.GetName()] = len(mf.GetMetric())
		}
		want := map[string]int{"glb_redirect_packets_total": len(outcomeLabels), "glb_redirect_bytes_total": len(outcomeLabels),
			"glb_redirect_info": 1, "glb_redirect_collection_errors_total": 1}
		for name, n := range want {
			if got[name] != n {
				t.Errorf("%s has %d series, want %d", name, got[name], n)
			}
		}
	})

	t.Run("reconcile puts back a removed VIP and a reverted sysctl", func(t *testing.T) {
		p1.IP(t, "addr", "del", vip4.String()+"/32", "dev", "lo")
		setNSSysctl(t, p1, rpFilter, "1")
		if err := p1.Do(t, a.Reconcile); err != nil {
			t.Fatal(err)
		}
		if !loAddrs(t, p1)[vip4] {
			t.Error("VIP not back on lo")
		}
		if got := nsSysctl(t, p1, rpFilter); got != "2" {
			t.Errorf("rp_filter %s after reconcile, want 2", got)
		}
	})

	t.Run("close undoes everything", func(t *testing.T) {
		closeAgent()
		have := loAddrs(t, p1)
		if have[vip4] || have[vip6] {
			t.Errorf("VIPs left on lo: %v", have)
		}
		if !have[foreign] {
			t.Errorf("the VIP that was there before the agent is gone")
		}
		for key, want := range map[string]string{rpFilter: "1", arpIgnore: "0", arpAnnce: "0"} {
			if got := nsSysctl(t, p1, key); got != want {
				t.Errorf("%s = %s after close, want %s back", key, got, want)
			}
		}
		if n := tcxPrograms(t, p1, "up0"); n != 0 {
			t.Errorf("%d programs left on tcx ingress", n)
		}
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "glb_redirect_") {
				t.Errorf("metric %s still registered", mf.GetName())
			}
		}
		if !strings.Contains(logs.String(), `msg="sysctl restored" key=net.ipv4.conf.up0.rp_filter old=2 new=1`) {
			t.Errorf("log lacks the restore of rp_filter:\n%s", logs.String())
		}
		// Reconcile set rp_filter a second time; Close must still know
		// the one value from before the agent, and not take its own
		// second change for someone else's.
		if strings.Contains(logs.String(), "changed by someone else") {
			t.Errorf("a key the agent set twice is reported as changed by someone else:\n%s", logs.String())
		}
		if !strings.Contains(logs.String(), `msg="sysctl changed again" key=net.ipv4.conf.up0.rp_filter old=1 new=2`) {
			t.Errorf("log lacks the second change of rp_filter:\n%s", logs.String())
		}
	})
}

// TestAgentRPFilter starts the agent under every mix of rp_filter on
// "all" and the uplink. The kernel filters with the larger of the two, so
// the uplink's 0 does not help when "all" is 1: the agent must judge the
// effective value, set the uplink to 2 when that is 1, leave "all" alone
// (2 on the uplink wins over it) and restore what it changed.
func TestAgentRPFilter(t *testing.T) {
	ns := nstest.New(t, "rpf")
	nstest.Veth(t, ns, "up0", ns, "up0p")
	ns.IP(t, "addr", "add", "10.1.0.11/24", "dev", "up0")
	const all, up = "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/up0/rp_filter"
	for _, c := range []struct {
		all, up string
		wantUp  string // while the agent runs
	}{
		{"1", "0", "2"},
		{"1", "1", "2"},
		{"0", "1", "2"},
		{"2", "1", "1"}, // max is 2 already: loose
		{"0", "0", "0"},
		{"2", "0", "0"},
		{"1", "2", "2"},
		{"0", "2", "2"},
	} {
		t.Run("all="+c.all+",up0="+c.up, func(t *testing.T) {
			setNSSysctl(t, ns, all, c.all)
			setNSSysctl(t, ns, up, c.up)
			var logs syncbuf.Buffer
			a, err := startAgent(t, ns, Config{Iface: "up0", VIPs: []netip.Addr{vip4}, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			gotAll, gotUp := nsSysctl(t, ns, all), nsSysctl(t, ns, up)
			if gotAll != c.all || gotUp != c.wantUp {
				t.Errorf("while running: all=%s up0=%s, want all=%s up0=%s", gotAll, gotUp, c.all, c.wantUp)
			}
			if eff := max(gotAll, gotUp); eff != "0" && eff != "2" {
				t.Errorf("effective rp_filter %s on the uplink: strict filtering is on", eff)
			}
			changed := strings.Contains(logs.String(), `key=net.ipv4.conf.up0.rp_filter old=`+c.up+` new=2`)
			if changed != (c.wantUp != c.up) {
				t.Errorf("change of up0's rp_filter logged: %v, want %v:\n%s", changed, c.wantUp != c.up, logs.String())
			}
			// A reload in between must not confuse the restore.
			if err := ns.Do(t, a.Reconcile); err != nil {
				t.Fatal(err)
			}
			if err := ns.Do(t, a.Close); err != nil {
				t.Fatal(err)
			}
			if gotAll, gotUp := nsSysctl(t, ns, all), nsSysctl(t, ns, up); gotAll != c.all || gotUp != c.up {
				t.Errorf("after close: all=%s up0=%s, want all=%s up0=%s back", gotAll, gotUp, c.all, c.up)
			}
			if strings.Contains(logs.String(), "changed by someone else") {
				t.Errorf("false warning at close:\n%s", logs.String())
			}
		})
	}
}

// TestAgentSelfAddress checks how Start finds this host's address: a
// given one must be an address of this host (the uplink's, or another
// interface's such as lo); without one, an uplink with several
// IPv4 addresses gets a warning naming --self-ip.
func TestAgentSelfAddress(t *testing.T) {
	ns := nstest.New(t, "self")
	nstest.Veth(t, ns, "up0", ns, "up0p")
	ns.IP(t, "addr", "add", "10.1.0.11/24", "dev", "up0")
	start := func(self netip.Addr) (*Agent, string, error) {
		var logs syncbuf.Buffer
		a, err := startAgent(t, ns, Config{Iface: "up0", VIPs: []netip.Addr{vip4}, Self: self, GUEFrom: trustedForTests,
			Log: slog.New(slog.NewTextHandler(&logs, nil))})
		return a, logs.String(), err
	}

	_, _, err := start(netip.MustParseAddr("10.1.0.99"))
	if err == nil || !strings.Contains(err.Error(), "self address 10.1.0.99 is not an address of this host (uplink up0 has") || !strings.Contains(err.Error(), "ip addr add 10.1.0.99") {
		t.Errorf("a self address not on the host: %v", err)
	}
	if n := tcxPrograms(t, ns, "up0"); n != 0 {
		t.Errorf("%d programs left attached after a failed start", n)
	}

	// A routed loopback: the tables list an address on lo.
	ns.IP(t, "addr", "add", "10.9.0.1/32", "dev", "lo")
	a, logs, err := start(netip.MustParseAddr("10.9.0.1"))
	if err != nil {
		t.Fatalf("a self address on lo: %v", err)
	}
	if a.Self() != netip.MustParseAddr("10.9.0.1") || !strings.Contains(logs, "not on the uplink but on another interface") {
		t.Errorf("a self address on lo: self %s, log:\n%s", a.Self(), logs)
	}
	ns.Do(t, a.Close)

	ns.IP(t, "addr", "add", "10.1.0.21/24", "dev", "up0")
	a, logs, err = start(netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Self() != netip.MustParseAddr("10.1.0.11") {
		t.Errorf("self %s, want the first address 10.1.0.11", a.Self())
	}
	if !regexp.MustCompile(`level=WARN msg="the uplink has more than one IPv4 address; taking the first: set --self-ip .*addresses="\[10\.1\.0\.11 10\.1\.0\.21\]"`).MatchString(logs) {
		t.Errorf("no warning about several addresses:\n%s", logs)
	}
	if strings.Contains(logs, "accepted from any source") || !strings.Contains(logs, `msg="GUE accepted only from trusted sources" gue_from="[10.1.0.2/32 10.1.0.8/29]"`) {
		t.Errorf("with --gue-from, the log should name the trusted prefixes and not warn:\n%s", logs)
	}
	ns.Do(t, a.Close)

	a, logs, err = start(netip.MustParseAddr("10.1.0.21"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Self() != netip.MustParseAddr("10.1.0.21") || strings.Contains(logs, "more than one") {
		t.Errorf("a given self address: self %s, log:\n%s", a.Self(), logs)
	}
}

// listenPacketIn opens a packet socket inside ns, closed when the test
// ends.
func listenPacketIn(tb testing.TB, ns *nstest.NS, network, addr string) net.PacketConn {
	tb.Helper()
	var c net.PacketConn
	if err := ns.Do(tb, func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	}); err != nil {
		tb.Fatalf("listen on %s %s: %v", network, addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func counters(tb testing.TB, a *Agent) map[string]uint64 {
	c, err := a.Counters()
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range c {
		if v == 0 {
			delete(c, k)
		}
	}
	return c
}

func TestConfigValidate(t *testing.T) {
	v := netip.MustParseAddr
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no interface", Config{VIPs: []netip.Addr{v("10.0.0.1")}}, "no uplink"},
		{"lo as uplink", Config{Iface: "lo", VIPs: []netip.Addr{v("10.0.0.1")}}, "cannot be lo"},
		{"no VIP", Config{Iface: "eth0"}, "no VIP"},
		{"loopback VIP", Config{Iface: "eth0", VIPs: []netip.Addr{v("127.0.0.2")}}, "not a unicast service address"},
		{"mapped VIP", Config{Iface: "eth0", VIPs: []netip.Addr{v("::ffff:10.0.0.1")}}, "as IPv4"},
		{"duplicate VIP", Config{Iface: "eth0", VIPs: []netip.Addr{v("10.0.0.1"), v("10.0.0.1")}}, "twice"},
		{"IPv6 self", Config{Iface: "eth0", VIPs: []netip.Addr{v("10.0.0.1")}, Self: v("fd00::1")}, "not IPv4"},
		{"IPv6 GUE source", Config{Iface: "eth0", VIPs: []netip.Addr{v("10.0.0.1")}, GUEFrom: []netip.Prefix{netip.MustParsePrefix("fd00::/64")}}, "not an IPv4 prefix"},
		{"GUE source with host bits", Config{Iface: "eth0", VIPs: []netip.Addr{v("10.0.0.1")}, GUEFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/24")}}, "write 10.0.0.0/24"},
		{"GUE source twice", Config{Iface: "eth0", VIPs: []netip.Addr{v("10.0.0.1")}, GUEFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.0.0.0/24")}}, "given twice"},
		{"fine", Config{Iface: "eth0", VIPs: []netip.Addr{v("10.0.0.1"), v("fd00::1")}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.validate()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("validate() = %v, want %q", err, c.want)
			}
		})
	}
}
