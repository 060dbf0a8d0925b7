package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"

	"github.com/glb-project/glb/bpf"
	"github.com/glb-project/glb/director/table"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/syncbuf"
)

// TestEndLabels fails when the Go names of the program's end reasons
// drift from enum glb_end in bpf/include/director.h.
func TestEndLabels(t *testing.T) {
	if len(endLabels) != int(bpf.DirectorGlbEndEND_LEN) {
		t.Fatalf("endLabels has %d entries, enum glb_end has %d: update collector.go", len(endLabels), bpf.DirectorGlbEndEND_LEN)
	}
	seen := map[string]bool{}
	for e := range bpf.DirectorGlbEndEND_LEN {
		label, ok := endLabels[e]
		if !ok {
			t.Errorf("enum glb_end value %d has no label", e)
		}
		if seen[label] {
			t.Errorf("label %q used twice", label)
		}
		seen[label] = true
		if want := strings.SplitN(label, "_", 2)[0]; string(verdictOf(e)) != want {
			t.Errorf("reason %q has verdict %q", label, verdictOf(e))
		}
	}
}

// TestMapLimits fails when the limits Apply checks drift from the map
// sizes in bpf/include/director.h.
func TestMapLimits(t *testing.T) {
	spec, err := bpf.LoadDirector()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  uint32
		want int
	}{
		{bpf.DirectorMapGlbTables, spec.Maps[bpf.DirectorMapGlbTables].MaxEntries, MaxTables},
		{bpf.DirectorMapGlbTables + " inner", spec.Maps[bpf.DirectorMapGlbTables].InnerMap.MaxEntries, numRows + 1},
		{bpf.DirectorMapGlbBinds, spec.Maps[bpf.DirectorMapGlbBinds].MaxEntries, MaxPrefixes},
		{bpf.DirectorMapGlbBindStats, spec.Maps[bpf.DirectorMapGlbBindStats].MaxEntries, MaxBinds},
		{bpf.DirectorMapGlbPorts, spec.Maps[bpf.DirectorMapGlbPorts].MaxEntries, MaxPortRanges},
		{bpf.DirectorMapGlbEnds, spec.Maps[bpf.DirectorMapGlbEnds].MaxEntries, int(bpf.DirectorGlbEndEND_LEN)},
	} {
		if int(c.got) != c.want {
			t.Errorf("%s holds %d entries, the Go side assumes %d", c.name, c.got, c.want)
		}
	}
}

func TestModes(t *testing.T) {
	for _, s := range []string{"auto", "native", "generic"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("offload"); err == nil {
		t.Error("ParseMode accepted offload")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{},
		{SrcIP: netip.MustParseAddr("2001:db8::1")},
		{SrcIP: testSrcIP, GatewayMAC: net.HardwareAddr{1, 2, 3}},
	} {
		if _, err := Open(c); err == nil {
			t.Errorf("Open(%+v) succeeded", c)
		}
	}
}

func TestPlanTrieLimits(t *testing.T) {
	b := buildConfig(t, testConfig, nil)
	plan, n, err := planTrie(b.tables)
	if err != nil {
		t.Fatal(err)
	}
	if n != 13 {
		t.Errorf("%d binds planned, want 13", n)
	}
	// 10.100.5.1/32 is covered by its own bind and by 10.100.5.0/24's:
	// the longer prefix first.
	got := plan[netip.MustParsePrefix("10.100.5.1/32")]
	if len(got) != 2 || got[0].table != "split" || got[1].table != "split-b" {
		t.Errorf("10.100.5.1/32 entries: %+v", got)
	}

	// 4,096 single-address binds over 4,096 VIPs fit.
	var binds []string
	for i := range 4096 {
		binds = append(binds, fmt.Sprintf(`{"ip": "10.%d.%d.1", "proto": "tcp", "port": 443}`, i/256, i%256))
	}
	big := buildConfig(t, `{"tables": [{"name": "big", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
		"binds": [`+strings.Join(binds, ",")+`], "backends": [{"ip": "10.1.0.1", "state": "active"}]}]}`, nil)
	if _, n, err := planTrie(big.tables); err != nil || n != 4096 {
		t.Errorf("4096 binds: %d, %v", n, err)
	}

	// 4,096 single-port binds on one VIP fit: there is no per-prefix
	// limit, each port is one glb_ports block.
	binds = binds[:0]
	for i := range 4096 {
		binds = append(binds, fmt.Sprintf(`{"ip": "10.0.0.1", "proto": "tcp", "port": %d}`, 1000+i))
	}
	oneVIP := buildConfig(t, `{"tables": [{"name": "many", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
		"binds": [`+strings.Join(binds, ",")+`], "backends": [{"ip": "10.1.0.1", "state": "active"}]}]}`, nil)
	if plan, n, err := planTrie(oneVIP.tables); err != nil || n != 4096 || len(plan) != 1 {
		t.Errorf("4096 binds on one VIP: %d binds, %d prefixes, %v", n, len(plan), err)
	}

	// Wide ranges repeated under thousands of nested prefixes exceed the
	// port trie, and the error says so before anything is touched.
	binds = []string{`{"ip": "10.9.0.0/16", "proto": "tcp", "port_start": 1, "port_end": 65534}`,
		`{"ip": "10.9.0.0/16", "proto": "udp", "port_start": 1, "port_end": 65534}`}
	for i := range 8000 {
		binds = append(binds, fmt.Sprintf(`{"ip": "10.9.%d.%d", "proto": "tcp", "port": 0}`, i/250, 1+i%250))
	}
	huge := buildConfig(t, `{"tables": [{"name": "huge", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
		"binds": [`+strings.Join(binds, ",")+`], "backends": [{"ip": "10.1.0.1", "state": "active"}]}]}`, nil)
	if _, _, err := planTrie(huge.tables); err == nil || !strings.Contains(err.Error(), "port blocks") {
		t.Errorf("488,000 port blocks: %v", err)
	}

	// Overlapping binds (which Validate rejects) are refused here too.
	over := buildConfig(t, testConfig, nil)
	over.tables[0].Spec.Binds = append(over.tables[0].Spec.Binds, table.Bind{Prefix: netip.MustParsePrefix("10.100.0.3/32"), Proto: table.TCP, PortStart: 400, PortEnd: 500})
	if _, _, err := planTrie(over.tables); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlapping binds: %v", err)
	}
}

func TestPortBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(lo, hi uint16) {
		blocks := portBlocks(lo, hi)
		if len(blocks) > 30 {
			t.Errorf("%d-%d: %d blocks", lo, hi, len(blocks))
		}
		next := int(lo)
		for _, b := range blocks {
			size := 1 << (16 - b.bits)
			if int(b.start) != next || int(b.start)%size != 0 {
				t.Fatalf("%d-%d: block %+v after %d (blocks %+v)", lo, hi, b, next, blocks)
			}
			next += size
		}
		if next != int(hi)+1 {
			t.Errorf("%d-%d: blocks end at %d", lo, hi, next-1)
		}
	}
	for _, c := range [][2]uint16{{0, 65535}, {443, 443}, {1, 65534}, {0, 0}, {65535, 65535}, {1024, 2047}, {1000, 60000}} {
		check(c[0], c[1])
	}
	for range 10000 {
		a, b := uint16(r.Uint32()), uint16(r.Uint32())
		check(min(a, b), max(a, b))
	}
	if n := len(portBlocks(0, 65535)); n != 1 {
		t.Errorf("all ports: %d blocks, want 1", n)
	}
}

// TestManyBindsOneVIP installs 4,096 single-port binds and a port range on
// one VIP, spread over four tables, and checks every port reaches its
// bind's table (and counter), ports between binds pass, and an echo
// request takes the first bind.
func TestManyBindsOneVIP(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	binds := make([][]string, 4)
	for n := range 4096 {
		binds[n%4] = append(binds[n%4], fmt.Sprintf(`{"ip": "10.60.0.1", "proto": "tcp", "port": %d}`, 2000+2*n))
	}
	binds[3] = append(binds[3], `{"ip": "10.60.0.0/24", "proto": "udp", "port_start": 1000, "port_end": 60000}`)
	var tables []string
	for tb := range 4 {
		tables = append(tables, fmt.Sprintf(`{"name": "t%d", "hash_key": "000102030405060708090a0b0c0d0e%02x", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
			"binds": [%s], "backends": [{"ip": "10.200.%d.1", "state": "active"}], "hops": 1}`, tb, tb, strings.Join(binds[tb], ","), tb))
	}
	b := buildConfig(t, `{"tables": [`+strings.Join(tables, ",")+`]}`, nil)
	apply(t, d, b)
	owner := func(tb int) netip.Addr { return netip.AddrFrom4([4]byte{10, 200, byte(tb), 1}) }
	for n := range 4096 {
		port := uint16(2000 + 2*n)
		got, out := runPacket(t, d.Program(), v4(client4, "10.60.0.1", protoTCP, tcp(40000, port, tcpSYN)), nil)
		if got != xdpTX {
			t.Fatalf("port %d: %s", port, actionNames[got])
		}
		if hops := outerHops(t, out); hops[0] != owner(n%4) {
			t.Fatalf("port %d went to %v, want %v", port, hops, owner(n%4))
		}
		if got, _ := runPacket(t, d.Program(), v4(client4, "10.60.0.1", protoTCP, tcp(40000, port+1, tcpSYN)), nil); got != xdpPass {
			t.Fatalf("unbound port %d: %s, want XDP_PASS", port+1, actionNames[got])
		}
	}
	for _, port := range []uint16{1000, 1001, 4095, 4096, 32768, 59999, 60000} {
		got, out := runPacket(t, d.Program(), v4(client4, "10.60.0.1", protoUDP, udp(40000, port)), nil)
		if got != xdpTX || outerHops(t, out)[0] != owner(3) {
			t.Errorf("udp port %d in the range: %s", port, actionNames[got])
		}
	}
	for _, port := range []uint16{999, 60001, 65535} {
		if got, _ := runPacket(t, d.Program(), v4(client4, "10.60.0.1", protoUDP, udp(40000, port)), nil); got != xdpPass {
			t.Errorf("udp port %d outside the range: %s, want XDP_PASS", port, actionNames[got])
		}
	}
	got, out := runPacket(t, d.Program(), v4(client4, "10.60.0.1", protoICMP, icmp(8, 0, 1, nil)), nil)
	if got != xdpTX || outerHops(t, out)[0] != owner(0) {
		t.Errorf("echo: %s, want the first bind's table t0", actionNames[got])
	}
	// Every bind has its own counter.
	stats, err := d.BindStats()
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, s := range stats {
		if s.Packets > 0 {
			sent++
		}
	}
	if sent != 4096+1 {
		t.Errorf("%d binds counted packets, want 4097", sent)
	}
	// Dropping every other bind frees their blocks and their ports pass.
	for tb := range 4 {
		b.cfg.Tables[tb].Binds = b.cfg.Tables[tb].Binds[:len(b.cfg.Tables[tb].Binds)/2]
	}
	apply(t, d, buildTables(b.cfg, nil))
	n := 0
	it := d.objs.GlbPorts.Iterate()
	var pk bpf.DirectorPortKey
	var ref bpf.DirectorBindRef
	for it.Next(&pk, &ref) {
		n++
	}
	if want := 4*512 + 0; n != want {
		t.Errorf("%d port blocks after removing half the binds, want %d", n, want)
	}
}

// TestManyBinds installs 4,096 binds and checks packets reach each one's
// table: the LPM trie holds them without per-port expansion.
func TestManyBinds(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	var tables []string
	for tb := range 4 {
		var binds []string
		for i := range 1024 {
			n := tb*1024 + i
			binds = append(binds, fmt.Sprintf(`{"ip": "10.%d.%d.0/28", "proto": "tcp", "port_start": 1000, "port_end": 60000}`, 50+n/256, n%256))
		}
		tables = append(tables, fmt.Sprintf(`{"name": "t%d", "hash_key": "000102030405060708090a0b0c0d0e%02x", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
			"binds": [%s], "backends": [{"ip": "10.200.%d.1", "state": "active"}], "hops": 1}`, tb, tb, strings.Join(binds, ","), tb))
	}
	b := buildConfig(t, `{"tables": [`+strings.Join(tables, ",")+`]}`, nil)
	apply(t, d, b)
	for n := 0; n < 4096; n += 37 {
		vip := fmt.Sprintf("10.%d.%d.9", 50+n/256, n%256)
		got, out := runPacket(t, d.Program(), v4(client4, vip, protoTCP, tcp(40000, uint16(1000+n*13), tcpSYN)), nil)
		if got != xdpTX {
			t.Fatalf("bind %d: %s", n, actionNames[got])
		}
		if hops := outerHops(t, out); hops[0] != netip.AddrFrom4([4]byte{10, 200, byte(n / 1024), 1}) {
			t.Errorf("bind %d went to %v", n, hops)
		}
	}
}

// TestApplyChanges changes a config in the ways a reload does and checks
// the program follows, and that unchanged tables are not swapped.
func TestApplyChanges(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	b := buildConfig(t, testConfig, nil)
	res := apply(t, d, b)
	if len(res.Swapped) != len(b.tables) || !res.BindsChanged {
		t.Fatalf("first apply: %+v", res)
	}
	if res := apply(t, d, b); len(res.Swapped) != 0 || res.BindsChanged || len(res.Removed) != 0 {
		t.Errorf("same config again: %+v", res)
	}

	syn := v4(client4, "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN))
	_, out := runPacket(t, d.Program(), syn, nil)
	first := outerHops(t, out)[0]

	// Fail the primary: only table "two" is rebuilt and swapped.
	b2 := buildTables(b.cfg, table.Health{first: false})
	res = apply(t, d, b2)
	if len(res.Swapped) != 1 || res.Swapped[0] != "two" {
		t.Errorf("health change swapped %v, want [two]", res.Swapped)
	}
	_, out = runPacket(t, d.Program(), syn, nil)
	if hops := outerHops(t, out); hops[0] == first || hops[len(hops)-1] != first {
		t.Errorf("after failing %v the row is %v: want it last", first, hops)
	}

	// Remove table "two" and its binds: its VIPs pass, others still work.
	cfg3 := *b.cfg
	cfg3.Tables = append([]table.Spec{}, b.cfg.Tables[1:]...)
	res = apply(t, d, buildTables(&cfg3, nil))
	if len(res.Removed) != 1 || res.Removed[0] != "two" || !res.BindsChanged {
		t.Errorf("removing a table: %+v", res)
	}
	if got, _ := runPacket(t, d.Program(), syn, nil); got != xdpPass {
		t.Errorf("vip of a removed table: %s, want XDP_PASS", actionNames[got])
	}
	if got, _ := runPacket(t, d.Program(), v4(client4, "10.100.1.1", protoTCP, tcp(1, 80, tcpSYN)), nil); got != xdpTX {
		t.Errorf("vip of a kept table: %s", actionNames[got])
	}
	// Back to the full config: "two" gets a slot again.
	apply(t, d, b)
	if got, _ := runPacket(t, d.Program(), syn, nil); got != xdpTX {
		t.Errorf("re-added table: %s", actionNames[got])
	}
	for _, ti := range d.Tables() {
		if ti.Name == "two" && ti.Generation != 1 {
			t.Errorf("re-added table generation %d, want 1", ti.Generation)
		}
	}
}

// TestApplyRefusesOwnAddress: a bind that covers --src-ip would send the
// director's own SSH and BGP into GUE. Apply refuses it and the running
// tables stay, as a reload keeps them.
func TestApplyRefusesOwnAddress(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	good := buildConfig(t, testConfig, nil)
	apply(t, d, good)
	syn := v4(client4, "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN))
	_, before := runPacket(t, d.Program(), syn, nil)

	for _, bind := range []string{
		`{"ip": "192.0.2.10", "proto": "tcp", "port": 443}`,  // the address itself, other port
		`{"ip": "192.0.2.0/24", "proto": "udp", "port": 53}`, // a prefix around it
		`{"ip": "192.0.0.0/8", "proto": "tcp", "port_start": 1, "port_end": 65535}`,
	} {
		js := strings.Replace(testConfig, `"binds": [{"ip": "10.100.1.1", "proto": "tcp", "port": 80}]`,
			`"binds": [{"ip": "10.100.1.1", "proto": "tcp", "port": 80}, `+bind+`]`, 1)
		bad := buildConfig(t, js, nil)
		_, err := d.Apply(bad.tables)
		if err == nil {
			t.Fatalf("bind %s covering --src-ip %s applied", bind, testSrcIP)
		}
		for _, w := range []string{`table "three"`, "binds[1]", "192.0.2.10 (--src-ip)", "SSH, BGP", "narrow the bind"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	}
	// The old tables still forward, and the director's own address passes.
	if got, out := runPacket(t, d.Program(), syn, nil); got != xdpTX || !bytes.Equal(out, before) {
		t.Errorf("after refused applies: %s, output changed: %v", actionNames[got], !bytes.Equal(out, before))
	}
	if got, _ := runPacket(t, d.Program(), v4(client4, testSrcIP.String(), protoTCP, tcp(40000, 443, tcpSYN)), nil); got != xdpPass {
		t.Errorf("packet to --src-ip: %s, want XDP_PASS", actionNames[got])
	}
	if res := apply(t, d, good); len(res.Swapped) != 0 || res.BindsChanged {
		t.Errorf("refused applies changed the kernel state: %+v", res)
	}
}

// TestSwapIsAtomic swaps between two tables that differ in hash key and
// rows while packets run, and checks each packet matches one table or the
// other: never the new key with the old rows.
func TestSwapIsAtomic(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	a := buildConfig(t, testConfig, nil)
	bcfg, err := table.Parse([]byte(strings.Replace(testConfig, `"hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5"`,
		`"hash_key": "ffeeddccbbaa99887766554433221100", "seed": "5555aaaa5555aaaa5555aaaa5555aaaa"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	b := buildTables(bcfg, nil)
	apply(t, d, a)

	var pkts [][]byte
	want := map[int][2][]byte{}
	for i := range 64 {
		p := v4(netip.AddrFrom4([4]byte{198, 18, byte(i), byte(i * 3)}).String(), "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN))
		pkts = append(pkts, p)
		tc := goldenCase{in: p, table: "two"}
		wa, _ := expectGUE(t, a, tc)
		wb, _ := expectGUE(t, b, tc)
		if bytes.Equal(wa, wb) {
			continue
		}
		want[i] = [2][]byte{wa, wb}
	}
	if len(want) < 32 {
		t.Fatalf("only %d packets tell the tables apart", len(want))
	}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var swapErr error
	wg.Go(func() {
		defer cancel()
		for i := range 60 {
			cfg := a
			if i%2 == 0 {
				cfg = b
			}
			if _, err := d.Apply(cfg.tables); err != nil {
				swapErr = err
				return
			}
		}
	})
	runs, mixed := 0, 0
	for ctx.Err() == nil {
		for i, p := range pkts {
			w, ok := want[i]
			if !ok {
				continue
			}
			_, out := runPacket(t, d.Program(), p, nil)
			runs++
			if !bytes.Equal(out, w[0]) && !bytes.Equal(out, w[1]) {
				mixed++
			}
		}
	}
	wg.Wait()
	if swapErr != nil {
		t.Fatal(swapErr)
	}
	if mixed > 0 {
		t.Errorf("%d of %d packets matched neither table", mixed, runs)
	}
	t.Logf("%d packets during 60 swaps", runs)
}

// TestTakeOverPinnedMaps stops one dataplane without detaching and starts
// another on the same pins: the new program forwards with the old tables
// before its first Apply, and afterwards with its own.
func TestTakeOverPinnedMaps(t *testing.T) {
	dir := bpffsDir(t)
	b := buildConfig(t, testConfig, nil)
	syn := v4(client4, "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN))

	d1, err := Open(Config{PinPath: dir, SrcIP: testSrcIP, GatewayMAC: macGateway})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, d1, b)
	_, want := runPacket(t, d1.Program(), syn, nil)
	oldSlots := map[string]uint32{}
	for _, ti := range d1.Tables() {
		oldSlots[ti.Name] = ti.Slot
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"glb_binds", "glb_tables", "glb_ends", "glb_bind_stats"} {
		if !exists(filepath.Join(dir, m)) {
			t.Fatalf("map %s not pinned", m)
		}
	}

	d2 := openTest(t, Config{PinPath: dir, GatewayMAC: macGateway})
	if got, out := runPacket(t, d2.Program(), syn, nil); got != xdpTX || !bytes.Equal(out, want) {
		t.Fatalf("before the first apply: %s\n%s", actionNames[got], diffHex(out, want))
	}
	if e := ends(t, d2); e["tx"] != 2 {
		t.Errorf("counters not carried over: tx = %d, want 2", e["tx"])
	}
	apply(t, d2, b)
	if got, out := runPacket(t, d2.Program(), syn, nil); got != xdpTX || !bytes.Equal(out, want) {
		t.Fatalf("after the first apply: %s\n%s", actionNames[got], diffHex(out, want))
	}
	for _, ti := range d2.Tables() {
		if ti.Slot == oldSlots[ti.Name] {
			t.Errorf("table %s reused slot %d while the old trie pointed at it", ti.Name, ti.Slot)
		}
	}
	// The old slots are empty now.
	var id ebpf.MapID
	for name, slot := range oldSlots {
		if err := d2.objs.GlbTables.Lookup(slot, &id); !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Errorf("old slot %d of %s still filled (%v)", slot, name, err)
		}
	}
	if err := d2.Detach(); err != nil {
		t.Fatal(err)
	}
	if exists(dir) {
		t.Errorf("pin directory %s left after Detach", dir)
	}
}

// TestAttachTakeOver attaches to a veth, stops without detaching, and
// checks a new dataplane swaps its program into the pinned link, and that
// Detach removes it.
func TestAttachTakeOver(t *testing.T) {
	dir := bpffsDir(t)
	ns := nstest.New(t, "dp")
	peer := nstest.New(t, "pe")
	nstest.Veth(t, ns, "d0", peer, "p0")

	attached := func() (int, error) {
		var id int
		err := ns.Do(t, func() error {
			l, err := netlink.LinkByName("d0")
			if err != nil {
				return err
			}
			if x := l.Attrs().Xdp; x != nil && x.Attached {
				id = int(x.ProgId)
			}
			return nil
		})
		return id, err
	}
	progID := func(d *Dataplane) int {
		info, err := d.Program().Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		return int(id)
	}

	var d1 *Dataplane
	err := ns.Do(t, func() error {
		var err error
		if d1, err = Open(Config{PinPath: dir, SrcIP: testSrcIP}); err != nil {
			return err
		}
		return d1.Attach("d0", ModeAuto)
	})
	if err != nil {
		t.Fatal(err)
	}
	id1 := progID(d1)
	if got, err := attached(); err != nil || got != id1 {
		t.Fatalf("attached program %d (%v), want %d", got, err, id1)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := attached(); got != id1 {
		t.Fatalf("after Close the attached program is %d, want %d still", got, id1)
	}

	var d2 *Dataplane
	err = ns.Do(t, func() error {
		var err error
		if d2, err = Open(Config{PinPath: dir, SrcIP: testSrcIP}); err != nil {
			return err
		}
		return d2.Attach("d0", ModeAuto)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := attached(); got != progID(d2) || got == id1 {
		t.Fatalf("after takeover the attached program is %d, want %d", got, progID(d2))
	}
	if err := d2.Detach(); err != nil {
		t.Fatal(err)
	}
	if got, _ := attached(); got != 0 {
		t.Errorf("program %d still attached after Detach", got)
	}
}

// TestFIBNextHop runs the program in FIB mode inside a namespace: the
// next hop's MAC comes from the neighbour table, and every way the lookup
// can fail is counted and dropped.
func TestFIBNextHop(t *testing.T) {
	ns := nstest.New(t, "fib")
	peer := nstest.New(t, "fpe")
	nstest.Veth(t, ns, "d0", peer, "p0")
	ns.IP(t, "addr", "add", "192.0.2.10/24", "dev", "d0")
	ns.Exec(t, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/d0/forwarding")
	ns.IP(t, "link", "set", "d0", "mtu", "1400")
	ns.IP(t, "neigh", "add", "192.0.2.20", "lladdr", "02:00:00:00:00:20", "dev", "d0", "nud", "permanent")
	nstest.Veth(t, ns, "d1", peer, "p1")
	ns.IP(t, "addr", "add", "198.18.0.1/24", "dev", "d1")

	cfg := `{"tables": [` + strings.Join([]string{
		fibTable("ok", "10.100.10.1", "192.0.2.20"),
		fibTable("noneigh", "10.100.10.2", "192.0.2.21"),
		fibTable("noroute", "10.100.10.3", "10.9.9.9"),
		fibTable("other", "10.100.10.4", "198.18.0.5"),
	}, ",") + `]}`
	b := buildConfig(t, cfg, nil)

	var d *Dataplane
	var ifindex int
	var selfMAC net.HardwareAddr
	err := ns.Do(t, func() error {
		var err error
		if d, err = Open(Config{SrcIP: netip.MustParseAddr("192.0.2.10")}); err != nil {
			return err
		}
		iface, err := net.InterfaceByName("d0")
		if err != nil {
			return err
		}
		ifindex, selfMAC = iface.Index, iface.HardwareAddr
		_, err = d.Apply(b.tables)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	cases := []struct {
		vip    string
		size   int
		want   uint32
		reason string
	}{
		{"10.100.10.1", 0, xdpTX, "tx"},
		{"10.100.10.1", 1400 - 20 - 20 - 36 + 1, xdpDrop, "drop_too_big"},
		{"10.100.10.2", 0, xdpDrop, "drop_no_neighbor"},
		{"10.100.10.3", 0, xdpDrop, "drop_no_route"},
		{"10.100.10.4", 0, xdpDrop, "drop_other_interface"},
		{"10.100.10.1", 0, xdpDrop, "drop_forwarding_disabled"},
	}
	forwarding := func(on string) {
		ns.Exec(t, "sh", "-c", "echo "+on+" > /proc/sys/net/ipv4/conf/d0/forwarding")
	}
	for i, c := range cases {
		forwarding(map[bool]string{true: "0", false: "1"}[i == len(cases)-1])
		in := v4(client4, c.vip, protoTCP, tcp(40000, 80, tcpACK, make([]byte, c.size)...))
		var got uint32
		var out []byte
		before := ends(t, d)
		err := ns.Do(t, func() error {
			got, out = runPacket(t, d.Program(), in, &xdpMD{IngressIfindex: uint32(ifindex)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s (%d bytes): %s, want %s", c.vip, len(in), actionNames[got], actionNames[c.want])
		}
		if after := ends(t, d); after[c.reason] != before[c.reason]+1 {
			t.Errorf("%s: counter %s did not move: %v", c.vip, c.reason, after)
		}
		if c.want == xdpTX {
			want := gue(innerIP(in), 0, net.HardwareAddr{2, 0, 0, 0, 0, 0x20}, selfMAC, netip.MustParseAddr("192.0.2.10"),
				[]netip.Addr{netip.MustParseAddr("192.0.2.20")}, table.EncapSourcePort(hashOf(b, "ok", in), 40000))
			if !bytes.Equal(out, want) {
				t.Errorf("FIB mode output:\n%s", diffHex(out, want))
			}
		}
	}
}

func fibTable(name, vip, backend string) string {
	return fmt.Sprintf(`{"name": %q, "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5", "hops": 1,
		"binds": [{"ip": %q, "proto": "tcp", "port": 80}], "backends": [{"ip": %q, "state": "active"}]}`, name, vip, backend)
}

func hashOf(b built, name string, frame []byte) uint64 {
	t := b.byName[name]
	pkt, _ := table.FlowOf(innerIP(frame))
	return table.Hash(t.Spec.HashKey, t.Spec.Fields(), pkt.Flow)
}

// TestCollector checks the exported metrics with a pedantic registry.
func TestCollector(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	apply(t, d, buildConfig(t, testConfig, nil))
	for range 3 {
		runPacket(t, d.Program(), v4(client4, "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN)), nil)
	}
	runPacket(t, d.Program(), v4(client4, "10.100.3.1", protoTCP, tcp(40000, 80, tcpSYN)), nil)
	runPacket(t, d.Program(), v4(client4, "10.200.0.1", protoTCP, tcp(40000, 80, tcpSYN)), nil)

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(d)); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP glb_director_packets_total Packets the XDP director handled, by verdict (tx: sent in GUE, pass: to the host stack, drop).
# TYPE glb_director_packets_total counter
glb_director_packets_total{verdict="drop"} 1
glb_director_packets_total{verdict="pass"} 1
glb_director_packets_total{verdict="tx"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "glb_director_packets_total"); err != nil {
		t.Error(err)
	}
	got, err := testutil.GatherAndCount(reg, "glb_director_bind_packets_total")
	if err != nil || got != 13 {
		t.Errorf("%d bind series (%v), want 13", got, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			fmt.Fprintf(&text, "%s{%s} %v\n", mf.GetName(), strings.Join(labels, ","), v)
		}
	}
	for _, want := range []string{
		"glb_director_bind_packets_total{bind=tcp 10.100.0.0/29:443,table=two} 3",
		"glb_director_bind_dropped_total{bind=tcp 10.100.3.1/32:80,table=dead} 1",
		"glb_director_end_total{reason=drop_no_hops} 1",
		"glb_director_end_total{reason=pass_not_vip} 1",
		"glb_director_table_hops{table=dead} 0",
		"glb_director_table_hops{table=four} 4",
		"glb_director_table_generation{table=two} 1",
	} {
		if !strings.Contains(text.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, text.String())
		}
	}
}

// TestResolveNeighbors checks that hops routed out of an attached
// interface get a managed neighbour entry that the kernel resolves.
func TestResolveNeighbors(t *testing.T) {
	ns := nstest.New(t, "nb")
	peer := nstest.New(t, "np")
	nstest.Veth(t, ns, "d0", peer, "p0")
	ns.IP(t, "addr", "add", "10.0.0.1/24", "dev", "d0")
	peer.IP(t, "addr", "add", "10.0.0.2/24", "dev", "p0")
	peer.IP(t, "addr", "add", "10.0.0.11/24", "dev", "p0")
	ns.IP(t, "route", "add", "10.50.0.0/16", "via", "10.0.0.2")
	var d *Dataplane
	err := ns.Do(t, func() error {
		var err error
		if d, err = Open(Config{SrcIP: netip.MustParseAddr("10.0.0.1")}); err != nil {
			return err
		}
		if err := d.Attach("d0", ModeGeneric); err != nil {
			return err
		}
		return d.ResolveNeighbors([]netip.Addr{netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("10.50.1.1"), netip.MustParseAddr("192.0.2.1")})
	})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Errorf("want an error for the unroutable 192.0.2.1, got %v", err)
	}
	t.Cleanup(func() { d.Close() })
	nstest.WaitFor(t, 5*time.Second, "neighbours resolved", func() bool {
		out := ns.IP(t, "neigh", "show", "dev", "d0")
		return strings.Contains(out, "10.0.0.11 lladdr") && strings.Contains(out, "10.0.0.2 lladdr")
	})
}

// TestApplyRejectsTooManyTables checks the table limit is enforced before
// anything changes.
func TestApplyRejectsTooManyTables(t *testing.T) {
	d := openTest(t, Config{GatewayMAC: macGateway})
	b := buildConfig(t, testConfig, nil)
	apply(t, d, b)
	two := b.byName["two"]
	var many []Table
	for i := range MaxTables + 1 {
		spec := *two.Spec
		spec.Name = fmt.Sprintf("t%d", i)
		spec.Binds = []table.Bind{{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 10, byte(i / 256), byte(i)}), 32), Proto: table.TCP, PortStart: 1, PortEnd: 1}}
		many = append(many, Table{Spec: &spec, Built: two.Built})
	}
	if _, err := d.Apply(many); err == nil || !strings.Contains(err.Error(), "table slots") {
		t.Fatalf("257 tables: %v", err)
	}
	// Nothing changed.
	if got, _ := runPacket(t, d.Program(), v4(client4, "10.100.0.3", protoTCP, tcp(40000, 443, tcpSYN)), nil); got != xdpTX {
		t.Errorf("after a rejected apply: %s", actionNames[got])
	}
	if n := len(d.Tables()); n != len(b.tables) {
		t.Errorf("%d tables installed after a rejected apply, want %d", n, len(b.tables))
	}
}

// TestDroppedInterfaceIsReleased restarts a director that kept its links
// pinned (--keep-attached) with one interface fewer: Open detaches and
// unpins the dropped interface's link, the kept one stays attached, and
// Detach leaves no pin directory behind.
func TestDroppedInterfaceIsReleased(t *testing.T) {
	dir := bpffsDir(t)
	ns := nstest.New(t, "dp")
	peer := nstest.New(t, "pe")
	nstest.Veth(t, ns, "d0", peer, "p0")
	nstest.Veth(t, ns, "d1", peer, "p1")
	attached := func(ifname string) bool {
		var on bool
		if err := ns.Do(t, func() error {
			l, err := netlink.LinkByName(ifname)
			if err != nil {
				return err
			}
			on = l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return on
	}

	var d1 *Dataplane
	if err := ns.Do(t, func() error {
		var err error
		if d1, err = Open(Config{PinPath: dir, SrcIP: testSrcIP, Interfaces: []string{"d0", "d1"}}); err != nil {
			return err
		}
		return errors.Join(d1.Attach("d0", ModeAuto), d1.Attach("d1", ModeAuto))
	}); err != nil {
		t.Fatal(err)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	if !attached("d0") || !attached("d1") || !exists(filepath.Join(dir, "link_d1")) {
		t.Fatal("Close did not leave both links attached and pinned")
	}

	var d2 *Dataplane
	if err := ns.Do(t, func() error {
		var err error
		d2, err = Open(Config{PinPath: dir, SrcIP: testSrcIP, Interfaces: []string{"d0"}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if attached("d1") || exists(filepath.Join(dir, "link_d1")) {
		t.Error("the dropped interface d1 is still attached or pinned")
	}
	if !attached("d0") || !exists(filepath.Join(dir, "link_d0")) {
		t.Error("the kept interface d0 lost its link before the new director attached")
	}
	if err := ns.Do(t, func() error { return d2.Attach("d0", ModeAuto) }); err != nil {
		t.Fatal(err)
	}
	if err := d2.Detach(); err != nil {
		t.Fatal(err)
	}
	if attached("d0") || exists(dir) {
		t.Errorf("after Detach: d0 attached %v, pin directory exists %v", attached("d0"), exists(dir))
	}
}

// TestApplyNearThePortBlockLimit changes a config whose port blocks nearly
// fill glb_ports: a /24 with 4,000 port ranges (5 blocks each), and twelve
// /32s inside it that repeat them. Changing one of the /24's binds rewrites
// all thirteen prefixes; the new blocks never fit beside the old ones, so
// Apply rewrites them one at a time (and says so), and ends right.
func TestApplyNearThePortBlockLimit(t *testing.T) {
	var logs syncbuf.Buffer
	d := openTest(t, Config{GatewayMAC: macGateway, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	const ranges = 4000
	config := func(last int) string {
		var binds []string
		for k := range ranges - 1 {
			binds = append(binds, fmt.Sprintf(`{"ip": "10.70.0.0/24", "proto": "tcp", "port_start": %d, "port_end": %d}`, k*16+1, k*16+16))
		}
		binds = append(binds, fmt.Sprintf(`{"ip": "10.70.0.0/24", "proto": "tcp", "port_start": %d, "port_end": %d}`, last, last+15))
		for i := range 12 {
			binds = append(binds, fmt.Sprintf(`{"ip": "10.70.0.%d", "proto": "tcp", "port": 65500}`, 10+i))
		}
		return `{"tables": [{"name": "t0", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
			"binds": [` + strings.Join(binds, ",") + `], "backends": [{"ip": "10.200.0.1", "state": "active"}], "hops": 1}]}`
	}
	first, moved := (ranges-1)*16+1, 64001
	apply(t, d, buildConfig(t, config(first), nil))
	apply(t, d, buildConfig(t, config(moved), nil))
	if !strings.Contains(logs.String(), "no room in glb_ports") {
		t.Errorf("the tight rewrite was not logged:\n%s", logs.String())
	}
	for _, tc := range []struct {
		dst  string
		port uint16
		want uint32
	}{
		{"10.70.0.1", 1, xdpTX},
		{"10.70.0.10", 16, xdpTX},
		{"10.70.0.21", 32000, xdpTX},
		{"10.70.0.21", 65500, xdpTX},
		{"10.70.0.200", 65500, xdpPass},
		{"10.70.0.5", uint16(first), xdpPass}, // the old range is gone
		{"10.70.0.5", uint16(moved), xdpTX},   // the new one is in
		{"10.70.0.11", uint16(moved + 15), xdpTX},
	} {
		if got, _ := runPacket(t, d.Program(), v4(client4, tc.dst, protoTCP, tcp(40000, tc.port, tcpSYN)), nil); got != tc.want {
			t.Errorf("%s port %d: %s, want %s", tc.dst, tc.port, actionNames[got], actionNames[tc.want])
		}
	}
	held, err := countEntries(d.objs.GlbPorts)
	if err != nil {
		t.Fatal(err)
	}
	if want := 13*(ranges*5) + 12; held != want {
		t.Errorf("glb_ports holds %d blocks after the change, want %d", held, want)
	}
}

func countEntries(m *ebpf.Map) (int, error) {
	n := 0
	var k bpf.DirectorPortKey
	var v bpf.DirectorBindRef
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n, it.Err()
}
