package consul

import (
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glb-project/glb/director/table"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/prometheus/client_golang/prometheus"
)

// testState has two tables that share proxy-1 and proxy-2.
const testState = `{"tables": [
 {"name": "github-api", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5",
  "binds": [{"ip": "10.100.0.0/29", "proto": "tcp", "port": 443}],
  "backends": [
   {"ip": "10.1.0.11", "name": "proxy-1", "state": "active", "healthchecks": {"http": 8080, "http_uri": "/_glb/health"}},
   {"ip": "10.1.0.12", "name": "proxy-2", "state": "active"},
   {"ip": "10.1.0.13", "name": "proxy-3", "state": "active"},
   {"ip": "10.1.0.14", "name": "proxy-4", "state": "active"}]},
 {"name": "git", "hash_key": "0f0e0d0c0b0a09080706050403020100", "seed": "0f0e0d0c0b0a09080706050403020100",
  "binds": [{"ip": "10.100.0.9", "proto": "tcp", "port_start": 22, "port_end": 23}],
  "backends": [
   {"ip": "10.1.0.11", "name": "proxy-1", "state": "active"},
   {"ip": "10.1.0.12", "name": "proxy-2", "state": "active"},
   {"ip": "10.1.0.21", "name": "git-1", "state": "active"}]}]}`

func parseState(t testing.TB, s string) *table.Config {
	t.Helper()
	cfg, err := table.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// rows is every row of every table, as bytes: what two directors must
// agree on byte for byte.
func rows(cfg *table.Config) string {
	var b strings.Builder
	specs := append([]table.Spec(nil), cfg.Tables...)
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	for i := range specs {
		tb := table.Build(&specs[i], nil)
		b.WriteString(tb.Name)
		b.WriteByte('\n')
		for r := range table.NumRows {
			for _, h := range tb.Hops(uint16(r)) {
				b.Write(h.AsSlice())
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// gauge reads one metric (the first series of that name) from a registry.
func gauge(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// eventually polls cond until it holds, for up to 30 seconds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	nstest.WaitFor(t, 30*time.Second, what, cond)
}

// blackhole is a TCP proxy in front of a server that can go silent
// without closing anything, as a hung agent or a dropped route does:
// while silent it accepts connections and reads what clients send, but
// answers nothing, also on connections opened before.
type blackhole struct {
	ln     net.Listener
	target string
	quiet  atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *blackhole) Addr() string { return b.ln.Addr().String() }

// silence makes the proxy stop (true) or resume (false) answering.
func (b *blackhole) silence(on bool) { b.quiet.Store(on) }

func (b *blackhole) track(c net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conns = append(b.conns, c)
}

func (b *blackhole) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.track(c)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer c.Close()
			if b.quiet.Load() {
				io.Copy(io.Discard, c)
				return
			}
			up, err := net.Dial("tcp", b.target)
			if err != nil {
				return
			}
			b.track(up)
			defer up.Close()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				io.Copy(up, c)
			}()
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 && !b.quiet.Load() {
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}
