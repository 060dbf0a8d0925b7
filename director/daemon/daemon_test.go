package daemon

import (
	"context"
	"encoding/binary"
	"github.com/glb-project/glb/consul"
	"github.com/glb-project/glb/internal/syncbuf"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/glb-project/glb/director/dataplane"
	"github.com/glb-project/glb/director/table"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/testenv"
)

const configA = `{"tables": [{"name": "api", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
  "binds": [{"ip": "10.100.0.1", "proto": "tcp", "port": 443}],
  "backends": [{"ip": "10.1.0.1", "state": "active"}, {"ip": "10.1.0.2", "state": "active"}, {"ip": "10.1.0.3", "state": "active"}]}]}`

// configB moves the VIP to port 8443 and drains 10.1.0.1.
var configB = strings.NewReplacer(`"port": 443`, `"port": 8443`, `{"ip": "10.1.0.1", "state": "active"}`, `{"ip": "10.1.0.1", "state": "draining"}`).Replace(configA)

// writeFile replaces path atomically, as an operator's tooling should.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// syn is a TCP SYN from a client to 10.100.0.1:port in an Ethernet frame.
func syn(client string, port uint16) []byte {
	f := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], 40)
	c := netip.MustParseAddr(client).As4()
	copy(ip[12:], c[:])
	copy(ip[16:], []byte{10, 100, 0, 1})
	binary.BigEndian.PutUint16(ip[20:], 40000)
	binary.BigEndian.PutUint16(ip[22:], port)
	ip[32] = 5 << 4
	ip[33] = 2
	return f
}

// primary runs a SYN through the program and returns the outer
// destination, or "" if the packet was not sent.
func primary(t *testing.T, prog *ebpf.Program, in []byte) string {
	t.Helper()
	out := make([]byte, len(in)+128)
	opts := &ebpf.RunOptions{Data: in, DataOut: out}
	ret, err := prog.Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	if ret != 3 {
		return ""
	}
	g, err := dataplane.DecodeGUE(opts.DataOut)
	if err != nil {
		t.Fatal(err)
	}
	return g.Hops[0].String()
}

type fakeHealth struct {
	mu      sync.Mutex
	h       table.Health
	changed chan struct{}
}

func (f *fakeHealth) Snapshot() table.Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.h
}

func (f *fakeHealth) Watch(ctx context.Context, changed chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.changed:
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}

func (f *fakeHealth) set(h table.Health) {
	f.mu.Lock()
	f.h = h
	f.mu.Unlock()
	f.changed <- struct{}{}
}

func TestDaemonFollowsConfigAndHealth(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "forwarding_table.json")
	writeFile(t, path, configA)

	dp, err := dataplane.Open(dataplane.Config{SrcIP: netip.MustParseAddr("192.0.2.1"), GatewayMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	var logs syncbuf.Buffer
	reg := prometheus.NewPedanticRegistry()
	health := &fakeHealth{changed: make(chan struct{})}
	store := consul.NewFileStore(path, consul.Options{PollInterval: 5 * time.Millisecond, Registerer: reg})
	d, err := New(Config{
		State:      consul.Signaller{Store: store},
		Health:     health,
		Plane:      dp,
		Log:        slog.New(slog.NewTextHandler(&logs, nil)),
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	prog := dp.Program()
	// Find a client whose primary under config A is 10.1.0.1.
	var client string
	for i := range 256 {
		c := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String()
		if primary(t, prog, syn(c, 443)) == "10.1.0.1" {
			client = c
			break
		}
	}
	if client == "" {
		t.Fatal("no client maps to 10.1.0.1")
	}

	// A health change moves the client off its unhealthy primary.
	health.set(table.Health{netip.MustParseAddr("10.1.0.1"): false})
	nstest.WaitFor(t, 5*time.Second, "health change applied", func() bool {
		p := primary(t, prog, syn(client, 443))
		return p != "" && p != "10.1.0.1"
	})
	health.set(nil)
	nstest.WaitFor(t, 5*time.Second, "health restored", func() bool { return primary(t, prog, syn(client, 443)) == "10.1.0.1" })

	// A new file: port 8443, 10.1.0.1 draining.
	writeFile(t, path, configB)
	nstest.WaitFor(t, 5*time.Second, "new config applied", func() bool {
		return primary(t, prog, syn(client, 443)) == "" && primary(t, prog, syn(client, 8443)) != ""
	})
	if p := primary(t, prog, syn(client, 8443)); p == "10.1.0.1" {
		t.Errorf("draining host still primary")
	}

	// An invalid file: the store keeps the last good state and says so;
	// a reload (SIGHUP) tries the file, fails, and the running tables
	// stay.
	writeFile(t, path, `{"tables": [{"name": "api"}]}`)
	nstest.WaitFor(t, 5*time.Second, "the store to flag the file invalid", func() bool {
		return gauge(t, reg, "glb_state_invalid") == 1
	})
	d.Reload()
	nstest.WaitFor(t, 5*time.Second, "reload failure counted", func() bool {
		return testutil.ToFloat64(d.metrics.reloads.WithLabelValues("failure")) == 1
	})
	if p := primary(t, prog, syn(client, 8443)); p == "" {
		t.Error("invalid config broke the running tables")
	}
	if !strings.Contains(logs.String(), "running tables stay in use") {
		t.Errorf("no log line about keeping the tables:\n%s", logs.String())
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP glb_director_config_last_reload_success 1 if the last config load succeeded, 0 if it failed and the running tables were kept.
# TYPE glb_director_config_last_reload_success gauge
glb_director_config_last_reload_success 0
`), "glb_director_config_last_reload_success"); err != nil {
		t.Error(err)
	}

	// Reload (SIGHUP) re-reads even an unchanged file.
	writeFile(t, path, configA)
	nstest.WaitFor(t, 5*time.Second, "config A back", func() bool { return primary(t, prog, syn(client, 443)) == "10.1.0.1" })
	before := testutil.ToFloat64(d.metrics.reloads.WithLabelValues("success"))
	d.Reload()
	nstest.WaitFor(t, 5*time.Second, "reload counted", func() bool {
		return testutil.ToFloat64(d.metrics.reloads.WithLabelValues("success")) == before+1
	})
}

func TestStartFailsOnInvalidConfig(t *testing.T) {
	testenv.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "missing.json")
	dp, err := dataplane.Open(dataplane.Config{SrcIP: netip.MustParseAddr("192.0.2.1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	d, err := New(Config{State: consul.Signaller{Store: consul.NewFileStore(path, consul.Options{})}, Plane: dp})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("Start with a missing file: %v", err)
	}
	if err := d.Run(t.Context()); err == nil {
		t.Error("Run without a good Start succeeded")
	}
}

// gauge reads the value of a single-series metric from a registry.
func gauge(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}
