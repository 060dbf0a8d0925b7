package redirect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/glb-project/glb/bpf"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/vishvananda/netlink"
)

// The addresses of the program test namespace. The proxy host is self on
// up0; peer is a neighbour with a permanent ARP entry; unresolved has a
// route but no neighbour entry; the VIPs and a "local client" sit on lo;
// remote clients are routed into a veth whose far end drops everything.
var (
	selfIP       = netip.MustParseAddr("10.1.0.11")
	peerIP       = netip.MustParseAddr("10.1.0.12")
	unresolvedIP = netip.MustParseAddr("10.1.0.13")
	directorIP   = netip.MustParseAddr("10.1.0.2")
	unroutedIP   = netip.MustParseAddr("203.0.113.9")

	vip4        = netip.MustParseAddr("10.100.0.1")
	vip6        = netip.MustParseAddr("fd00:100::1")
	localClient = netip.MustParseAddr("10.200.0.1")
	localClnt6  = netip.MustParseAddr("fd00:200::1")
	remoteClnt  = netip.MustParseAddr("198.51.100.7")
	remoteClnt6 = netip.MustParseAddr("2001:db8:51::7")

	// The test program trusts GUE from the director and from the proxy
	// hosts' block 10.1.0.8/29 (self, peer and unresolved), and from no
	// one else: untrustedIP is on the link but outside both.
	trustedForTests = []netip.Prefix{netip.PrefixFrom(directorIP, 32), netip.MustParsePrefix("10.1.0.8/29")}
	untrustedIP     = netip.MustParseAddr("10.1.0.66")

	selfMAC   = mustMAC("02:00:00:00:00:11")
	peerMAC   = mustMAC("02:00:00:00:00:12")
	dirMAC    = mustMAC("02:00:00:00:00:02")
	clientMAC = mustMAC("02:00:00:00:00:77")
)

// progEnv is bpf/redirect.c loaded with self = selfIP, and a namespace to
// run it in.
type progEnv struct {
	ns      *nstest.NS
	objs    *bpf.RedirectObjects
	ifindex int // up0 inside ns
}

// skbContext is the head of struct __sk_buff, up to ifindex: the part
// BPF_PROG_TEST_RUN lets a caller set. The device named by ifindex becomes
// skb->dev, so FIB and socket lookups happen as on that interface.
type skbContext struct {
	Len, PktType, Mark, QueueMapping, Protocol uint32
	VlanPresent, VlanTCI, VlanProto, Priority  uint32
	IngressIfindex, Ifindex                    uint32
}

func newProgEnv(tb testing.TB) *progEnv {
	tb.Helper()
	ns := nstest.New(tb, "prog")
	nstest.Veth(tb, ns, "up0", ns, "up0p")
	ns.IP(tb, "link", "set", "up0", "address", selfMAC.String())
	ns.IP(tb, "addr", "add", selfIP.String()+"/24", "dev", "up0")
	ns.IP(tb, "neigh", "replace", peerIP.String(), "lladdr", peerMAC.String(), "dev", "up0", "nud", "permanent")
	for _, a := range []netip.Addr{vip4, localClient} {
		ns.IP(tb, "addr", "add", a.String()+"/32", "dev", "lo")
	}
	for _, a := range []netip.Addr{vip6, localClnt6} {
		ns.IP(tb, "addr", "add", a.String()+"/128", "dev", "lo", "nodad")
	}
	// Remote clients live behind cl0: permanent neighbour entries with a
	// MAC nobody has, so replies leave through cl0 (where a test can
	// capture them) and die on cl0p. The kernel here has no dummy device.
	nstest.Veth(tb, ns, "cl0", ns, "cl0p")
	ns.IP(tb, "route", "add", "198.51.100.0/24", "dev", "cl0")
	ns.IP(tb, "-6", "route", "add", "2001:db8:51::/64", "dev", "cl0")
	ns.IP(tb, "neigh", "replace", remoteClnt.String(), "lladdr", clientMAC.String(), "dev", "cl0", "nud", "permanent")
	ns.IP(tb, "neigh", "replace", remoteClnt6.String(), "lladdr", clientMAC.String(), "dev", "cl0", "nud", "permanent")

	e := &progEnv{ns: ns}
	if err := ns.Do(tb, func() error {
		l, err := netlink.LinkByName("up0")
		if err != nil {
			return err
		}
		e.ifindex = l.Attrs().Index
		return nil
	}); err != nil {
		tb.Fatalf("find up0: %v", err)
	}
	objs, err := loadObjects(selfIP, trustedForTests)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() { objs.Close() })
	e.objs = objs
	return e
}

// isTrusted says whether the test program trusts GUE from src.
func isTrusted(src netip.Addr) bool {
	for _, p := range trustedForTests {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// patchOuter rewrites the outer IPv4 total length and UDP length of a
// frame built with correct ones, and fixes the IPv4 header checksum, so
// only the lengths lie.
func patchOuter(frame []byte, totLen, udpLen int) []byte {
	f := bytes.Clone(frame)
	if totLen >= 0 {
		binary.BigEndian.PutUint16(f[16:], uint16(totLen))
	}
	if udpLen >= 0 {
		binary.BigEndian.PutUint16(f[38:], uint16(udpLen))
	}
	binary.BigEndian.PutUint16(f[24:], 0)
	binary.BigEndian.PutUint16(f[24:], checksum(f[14:34]))
	return f
}

// sysctl sets a sysctl inside the namespace, e.g. "net/ipv4/tcp_syncookies".
func (e *progEnv) sysctl(tb testing.TB, key, value string) {
	tb.Helper()
	if err := e.ns.Do(tb, func() error {
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
	}); err != nil {
		tb.Fatalf("sysctl %s=%s: %v", key, value, err)
	}
}

// run passes one frame through the program as if it arrived on up0, and
// returns the verdict, the frame as the program left it, and the one
// outcome counter the packet moved.
func (e *progEnv) run(tb testing.TB, frame []byte) (uint32, []byte, string) {
	tb.Helper()
	before := e.counters(tb)
	opts := &ebpf.RunOptions{
		Data:    frame,
		DataOut: make([]byte, len(frame)+512),
		Context: skbContext{IngressIfindex: uint32(e.ifindex), Ifindex: uint32(e.ifindex)},
	}
	var ret uint32
	if err := e.ns.Do(tb, func() error {
		var err error
		ret, err = e.objs.GlbRedirect.Run(opts)
		return err
	}); err != nil {
		tb.Fatalf("run program: %v", err)
	}
	after := e.counters(tb)
	var moved []string
	for i := range after {
		if d := after[i].Packets - before[i].Packets; d != 0 {
			moved = append(moved, fmt.Sprintf("%s+%d", outcomeLabels[i], d))
			if d != 1 || after[i].Bytes-before[i].Bytes != uint64(len(frame)) {
				tb.Errorf("counter %s moved by %d packets, %d bytes; want 1, %d", outcomeLabels[i], d, after[i].Bytes-before[i].Bytes, len(frame))
			}
		}
	}
	if len(moved) != 1 {
		tb.Fatalf("want exactly one outcome counted, got %v", moved)
	}
	return ret, opts.DataOut, strings.TrimSuffix(moved[0], "+1")
}

// counters sums the per-CPU counters of every outcome.
func (e *progEnv) counters(tb testing.TB) []bpf.RedirectOutcomeStat {
	tb.Helper()
	c, err := readCounters(e.objs.RedirectStats)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
