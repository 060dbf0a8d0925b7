package dataplane

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/glb-project/glb/internal/nstest"
)

// mtuConfig has tables of 1, 2 and 4 hops (GUE overheads 36, 40 and 48
// bytes), all on proxy hosts of the director's own subnet.
const mtuConfig = `{"tables": [
 {"name": "one", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5", "hops": 1,
  "binds": [{"ip": "10.100.20.1", "proto": "tcp", "port": 80}, {"ip": "fd00:20::1", "proto": "tcp", "port": 80}],
  "backends": [{"ip": "192.0.2.21", "state": "active"}]},
 {"name": "two", "hash_key": "101112131415161718191a1b1c1d1e1f", "seed": "0123456789abcdef0123456789abcdef", "hops": 2,
  "binds": [{"ip": "10.100.20.2", "proto": "tcp", "port": 80}, {"ip": "fd00:20::2", "proto": "tcp", "port": 80}],
  "backends": [{"ip": "192.0.2.21", "state": "active"}, {"ip": "192.0.2.22", "state": "active"},
               {"ip": "192.0.2.23", "state": "active"}, {"ip": "192.0.2.24", "state": "active"}]},
 {"name": "four", "hash_key": "202122232425262728292a2b2c2d2e2f", "seed": "33333333333333334444444444444444", "hops": 4,
  "binds": [{"ip": "10.100.20.4", "proto": "tcp", "port": 80}, {"ip": "fd00:20::4", "proto": "tcp", "port": 80}],
  "backends": [{"ip": "192.0.2.21", "state": "active"}, {"ip": "192.0.2.22", "state": "active"},
               {"ip": "192.0.2.23", "state": "active"}, {"ip": "192.0.2.24", "state": "active"}]}
]}`

// mtuBackendMAC is the neighbour entry of each proxy host in FIB mode.
func mtuBackendMAC(hop netip.Addr) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0, 0, 0, 0, hop.As4()[3]}
}

// TestMTU sends packets whose GUE form fits the egress MTU exactly, and
// packets one byte larger, through the director in both next-hop modes:
// with --gateway-mac (bpf_check_mtu on the interface) and in FIB mode (the
// route's MTU). A fitting packet is sent, byte for byte as the Go builder
// makes it; one byte more is dropped as drop_too_big, counted against its
// bind, and left untouched. The overhead is 36 + 4 x (hops - 1) bytes.
func TestMTU(t *testing.T) {
	const mtu = 1400
	ns := nstest.New(t, "mtu")
	peer := nstest.New(t, "mtp")
	nstest.Veth(t, ns, "d0", peer, "p0")
	ns.IP(t, "addr", "add", "192.0.2.10/24", "dev", "d0")
	ns.IP(t, "link", "set", "d0", "mtu", fmt.Sprint(mtu))
	ns.Exec(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/d0/forwarding")
	for i := 21; i <= 24; i++ {
		hop := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		ns.IP(t, "neigh", "add", hop.String(), "lladdr", mtuBackendMAC(hop).String(), "dev", "d0", "nud", "permanent")
	}
	var ifindex int
	var selfMAC net.HardwareAddr
	if err := ns.Do(t, func() error {
		iface, err := net.InterfaceByName("d0")
		if err != nil {
			return err
		}
		ifindex, selfMAC = iface.Index, iface.HardwareAddr
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b := buildConfig(t, mtuConfig, nil)
	src := netip.MustParseAddr("192.0.2.10")

	for _, mode := range []struct {
		name    string
		gateway net.HardwareAddr
		vlan    uint16 // FIB mode does not see 802.1Q sub-interfaces
	}{
		{"gateway", macGateway, 0x0064},
		{"fib", nil, 0},
	} {
		t.Run(mode.name, func(t *testing.T) {
			var d *Dataplane
			if err := ns.Do(t, func() error {
				var err error
				if d, err = Open(Config{SrcIP: src, GatewayMAC: mode.gateway}); err != nil {
					return err
				}
				_, err = d.Apply(b.tables)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })

			// run sends one frame in on d0 and checks the outcome.
			run := func(t *testing.T, tbl string, in []byte, vlan uint16, wantTX bool) {
				t.Helper()
				before, beforeBind := ends(t, d), bindDropped(t, d, tbl)
				var got uint32
				var out []byte
				if err := ns.Do(t, func() error {
					got, out = runPacket(t, d.Program(), in, &xdpMD{IngressIfindex: uint32(ifindex)})
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				after, afterBind := ends(t, d), bindDropped(t, d, tbl)
				if !wantTX {
					if got != xdpDrop || after["drop_too_big"] != before["drop_too_big"]+1 {
						t.Errorf("%d-byte IP packet: %s, drop_too_big %d -> %d; want XDP_DROP counted as drop_too_big",
							len(innerIP(in)), actionNames[got], before["drop_too_big"], after["drop_too_big"])
					}
					if afterBind != beforeBind+1 {
						t.Errorf("bind dropped counter %d -> %d, want +1", beforeBind, afterBind)
					}
					if !bytes.Equal(out[:len(in)], in) {
						t.Errorf("dropped packet changed:\n%s", diffHex(out[:len(in)], in))
					}
					return
				}
				if got != xdpTX || after["tx"] != before["tx"]+1 {
					t.Fatalf("%d-byte IP packet: %s (ends %v), want XDP_TX", len(innerIP(in)), actionNames[got], after)
				}
				want, hops := expectGUE(t, b, goldenCase{in: in, table: tbl, vlan: vlan})
				dmac, smac := mode.gateway, macSelf
				if mode.gateway == nil {
					dmac, smac = mtuBackendMAC(hops[0]), selfMAC
				}
				want = append(append(append([]byte{}, dmac...), smac...), want[12:]...)
				if !bytes.Equal(out, want) {
					t.Errorf("output differs (hops %v):\n%s", hops, diffHex(out, want))
				}
			}

			for _, tc := range []struct {
				table string
				vip4  string
				vip6  string
				hops  int
			}{
				{"one", "10.100.20.1", "fd00:20::1", 1},
				{"two", "10.100.20.2", "fd00:20::2", 2},
				{"four", "10.100.20.4", "fd00:20::4", 4},
			} {
				overhead := 36 + 4*(tc.hops-1)
				fit := mtu - overhead // the largest client IP packet that fits
				packets := func(ipLen int) map[string][]byte {
					return map[string][]byte{
						"ipv4": ip4{src: client4, dst: tc.vip4, proto: protoTCP}.packet(tcp(40000, 80, tcpACK, make([]byte, ipLen-40)...)),
						"ipv6": ip6{src: client6, dst: tc.vip6, proto: protoTCP}.packet(tcp(40000, 80, tcpACK, make([]byte, ipLen-60)...)),
					}
				}
				for _, fam := range []string{"ipv4", "ipv6"} {
					if n := len(packets(fit)[fam]); n+overhead != mtu {
						t.Fatalf("a %d-byte packet makes %d bytes of GUE, not the MTU", n, n+overhead)
					}
					t.Run(fmt.Sprintf("%s %d hops: %d bytes fit, %d do not", fam, tc.hops, fit, fit+1), func(t *testing.T) {
						run(t, tc.table, ether(packets(fit)[fam]), 0, true)
						run(t, tc.table, ether(packets(fit + 1)[fam]), 0, false)
						if mode.vlan != 0 {
							tag := func(ip []byte) []byte {
								et := uint16(etherIPv4)
								if fam == "ipv6" {
									et = etherIPv6
								}
								return frame{dst: macSelf, src: macClient, vlan: mode.vlan, etype: et, payload: ip}.bytes()
							}
							// The tag is not part of the MTU.
							run(t, tc.table, tag(packets(fit)[fam]), mode.vlan, true)
							run(t, tc.table, tag(packets(fit + 1)[fam]), mode.vlan, false)
						}
					})
				}
			}

			t.Run("an MTU change applies to the next packet", func(t *testing.T) {
				// One byte over with two hops (40 bytes of GUE).
				over := ether(ip4{src: client4, dst: "10.100.20.2", proto: protoTCP}.packet(tcp(40000, 80, tcpACK, make([]byte, mtu-40+1-40)...)))
				run(t, "two", over, 0, false)
				ns.IP(t, "link", "set", "d0", "mtu", fmt.Sprint(mtu+1))
				t.Cleanup(func() { ns.IP(t, "link", "set", "d0", "mtu", fmt.Sprint(mtu)) })
				run(t, "two", over, 0, true)
			})
		})
	}
}

// bindDropped sums the dropped counters of a table's binds.
func bindDropped(tb testing.TB, d *Dataplane, table string) uint64 {
	tb.Helper()
	stats, err := d.BindStats()
	if err != nil {
		tb.Fatal(err)
	}
	var n uint64
	for _, s := range stats {
		if s.Table == table {
			n += s.Dropped
		}
	}
	return n
}
