package secondchance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/glb-project/glb/director/table"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/testenv"
)

// The LAN: one bridge in a switch namespace, and on it the client (with
// 100 addresses, one per connection, so the connections hash onto many
// rows), the director and two proxy hosts. The client's route to the VIP
// points at the director; proxies answer the client directly (DSR).
var (
	directorIP = netip.MustParseAddr("10.1.0.2")
	proxyIPs   = map[string]netip.Addr{"p1": netip.MustParseAddr("10.1.0.11"), "p2": netip.MustParseAddr("10.1.0.12")}
	vip        = netip.MustParseAddr("10.100.0.1")
)

const (
	flows      = 100
	echoPort   = 7000
	msgSize    = 64
	redirPort  = 9523
	dirMetrics = 9461
	// How long one echo may take before the connection counts as broken.
	// Far above a netns round trip and a few TCP retransmissions.
	rttDeadline = 5 * time.Second
)

func clientIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, 0, byte(100 + i)}) }

type host struct {
	name string
	ns   *nstest.NS
	ip   netip.Addr
	proc *nstest.Process
}

// metrics scrapes a process's /metrics inside its namespace and returns
// "name{labels}" -> value.
func (h *host) metrics(tb testing.TB, port int) map[string]float64 {
	tb.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := h.ns.Do(tb, func() error {
			var err error
			conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		tb.Fatalf("scrape %s: %v", h.name, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// echoServer is a plain TCP echo server on VIP:echoPort in a proxy
// namespace. It records which client address each connection came from.
type echoServer struct {
	host  string
	ln    net.Listener
	mu    sync.Mutex
	conns map[netip.AddrPort]net.Conn
}

func startEcho(tb testing.TB, h *host) *echoServer {
	tb.Helper()
	s := &echoServer{host: h.name, conns: map[netip.AddrPort]net.Conn{}}
	if err := h.ns.Do(tb, func() error {
		var err error
		s.ln, err = net.Listen("tcp", netip.AddrPortFrom(vip, echoPort).String())
		return err
	}); err != nil {
		tb.Fatalf("echo server on %s: %v", h.name, err)
	}
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c.RemoteAddr().(*net.TCPAddr).AddrPort()] = c
			s.mu.Unlock()
			go func() {
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	tb.Cleanup(func() {
		s.ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

func (s *echoServer) has(client netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.conns[client]
	return ok
}

// flow is one long-lived client connection that keeps echoing numbered
// messages and checks every byte that comes back.
type flow struct {
	id       int
	conn     net.Conn
	local    netip.AddrPort
	owner    string // the proxy host that accepted it
	progress atomic.Int64
	failed   chan struct{}
	err      error
}

func (f *flow) message(seq int64) []byte {
	m := make([]byte, msgSize)
	binary.BigEndian.PutUint32(m[0:], uint32(f.id))
	binary.BigEndian.PutUint64(m[4:], uint64(seq))
	for i := 12; i < msgSize; i++ {
		m[i] = byte(f.id*7 + int(seq)*13 + i)
	}
	return m
}

// run echoes one message per tick until stop is closed or the connection
// fails. The ticker only paces the load; nothing waits on time to pass.
func (f *flow) run(stop <-chan struct{}, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	buf := make([]byte, msgSize)
	for seq := int64(1); ; seq++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		m := f.message(seq)
		f.conn.SetDeadline(time.Now().Add(rttDeadline))
		_, err := f.conn.Write(m)
		if err == nil {
			_, err = io.ReadFull(f.conn, buf)
		}
		if err == nil && !bytes.Equal(buf, m) {
			err = fmt.Errorf("echo of message %d differs: sent %x, got %x", seq, m, buf)
		}
		if err != nil {
			f.err = err
			f.conn.Close()
			close(f.failed)
			return
		}
		f.progress.Add(1)
	}
}

func (f *flow) broken() bool {
	select {
	case <-f.failed:
		return true
	default:
		return false
	}
}

type lab struct {
	t        *testing.T
	sw       *nstest.NS
	client   *host
	director *host
	proxies  map[string]*host
	echo     map[string]*echoServer
	config   string
	flows    []*flow
	stop     chan struct{}
	wg       sync.WaitGroup
}

func (l *lab) plug(tag string, addr netip.Addr) *host {
	t := l.t
	h := &host{name: tag, ns: nstest.New(t, tag), ip: addr}
	port := "s" + tag
	nstest.Veth(t, h.ns, "up0", l.sw, port)
	l.sw.IP(t, "link", "set", port, "master", "br0")
	h.ns.IP(t, "addr", "add", addr.String()+"/24", "dev", "up0")
	return h
}

type backend struct {
	IP      string `json:"ip"`
	Name    string `json:"name"`
	State   string `json:"state"`
	Healthy *bool  `json:"healthy,omitempty"`
}

// setTable writes the director's forwarding table (DESIGN.md §4) with the
// given host states ("" leaves a host out; "unhealthy" is an active host
// that failed its health checks, as the health checker reports it), makes the director reload it,
// and waits until the new table is in the kernel.
func (l *lab) setTable(states map[string]string) {
	t := l.t
	t.Helper()
	var backends []backend
	for _, name := range []string{"p1", "p2"} {
		switch st := states[name]; st {
		case "":
		case "unhealthy":
			down := false
			backends = append(backends, backend{IP: proxyIPs[name].String(), Name: name, State: "active", Healthy: &down})
		default:
			backends = append(backends, backend{IP: proxyIPs[name].String(), Name: name, State: st})
		}
	}
	cfg := map[string]any{"tables": []any{map[string]any{
		"name":        "echo",
		"hash_key":    "0123456789abcdeffedcba9876543210",
		"seed":        "49a3d861d661ae5ab06ed9326871a2f5",
		"hash_fields": []string{"src_addr"},
		"hops":        2,
		"binds":       []any{map[string]any{"ip": vip.String() + "/32", "proto": "tcp", "port_start": echoPort, "port_end": echoPort}},
		"backends":    backends,
	}}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var before float64
	if l.director.proc != nil {
		before = l.director.metrics(t, dirMetrics)["glb_director_config_generation"]
	}
	tmp := l.config + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, l.config); err != nil {
		t.Fatal(err)
	}
	if l.director.proc != nil {
		if err := l.director.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		nstest.WaitFor(t, 10*time.Second, "the director to load the new table", func() bool {
			return l.director.metrics(t, dirMetrics)["glb_director_config_generation"] > before
		})
	}
	t.Logf("table: %v", states)
}

// open dials connections first..first+n-1, each from its own address,
// and starts echoing on them.
func (l *lab) open(first, n int) {
	t := l.t
	t.Helper()
	for i := first; i < first+n; i++ {
		f := &flow{id: i, failed: make(chan struct{})}
		if err := l.client.ns.Do(t, func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP(i).AsSlice()}, Timeout: 10 * time.Second}
			var err error
			f.conn, err = d.Dial("tcp", netip.AddrPortFrom(vip, echoPort).String())
			return err
		}); err != nil {
			t.Fatalf("connection %d from %s: %v", i, clientIP(i), err)
		}
		f.local = f.conn.LocalAddr().(*net.TCPAddr).AddrPort()
		l.flows = append(l.flows, f)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			f.run(l.stop, 50*time.Millisecond)
		}()
	}
	nstest.WaitFor(t, 10*time.Second, "every new connection accepted by a proxy", func() bool {
		for _, f := range l.flows[first : first+n] {
			if f.owner == "" {
				for name, s := range l.echo {
					if s.has(f.local) {
						f.owner = name
					}
				}
			}
			if f.owner == "" {
				return false
			}
		}
		return true
	})
}

func (l *lab) owners(fs []*flow) map[string]int {
	m := map[string]int{}
	for _, f := range fs {
		m[f.owner]++
	}
	return m
}

// keepsEchoing waits until every flow in want has echoed n more messages
// and fails if any of them broke.
func (l *lab) keepsEchoing(what string, want []*flow, n int64) {
	t := l.t
	t.Helper()
	start := make([]int64, len(want))
	for i, f := range want {
		start[i] = f.progress.Load()
	}
	nstest.WaitFor(t, 30*time.Second, what, func() bool {
		done := true
		for i, f := range want {
			if f.broken() {
				t.Fatalf("%s: connection %d (%s, on %s) broke: %v", what, f.id, f.local, f.owner, f.err)
			}
			if f.progress.Load()-start[i] < n {
				done = false
			}
		}
		return done
	})
}

func TestSecondChance(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip")
	testenv.RequireBinary(t, "ping")
	director := testenv.BuildBinary(t, "./cmd/glb-director")
	redirect := testenv.BuildBinary(t, "./cmd/glb-redirect")

	l := &lab{t: t, proxies: map[string]*host{}, echo: map[string]*echoServer{}, stop: make(chan struct{})}
	l.sw = nstest.New(t, "sw")
	l.sw.IP(t, "link", "add", "br0", "type", "bridge")
	l.sw.IP(t, "link", "set", "br0", "up")

	l.client = l.plug("cl", clientIP(0))
	for i := 1; i < flows; i++ {
		l.client.ns.IP(t, "addr", "add", clientIP(i).String()+"/24", "dev", "up0")
	}
	l.client.ns.IP(t, "route", "add", vip.String()+"/32", "via", directorIP.String())
	l.director = l.plug("dir", directorIP)
	// The director finds each proxy host's MAC in the FIB, which
	// bpf_fib_lookup answers only on a forwarding interface.
	if err := l.director.ns.Do(t, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/up0/forwarding", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p1", "p2"} {
		h := l.plug(name, proxyIPs[name])
		// What a distribution ships: strict reverse-path filtering.
		// glb-redirect must make it loose for decapsulated packets.
		if err := h.ns.Do(t, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/conf/up0/rp_filter", []byte("1"), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
		// GUE only from the director and the other proxy host, as an
		// operator would set it: second chance goes through the trust check.
		h.proc = h.ns.Start(t, redirect, "--iface", "up0", "--vip", vip.String(), "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", redirPort),
			"--self-ip", proxyIPs[name].String(), "--gue-from", directorIP.String()+","+proxyIPs["p1"].String()+","+proxyIPs["p2"].String(),
			"--state-file", filepath.Join(t.TempDir(), "up0.json"))
		nstest.WaitFor(t, 10*time.Second, "glb-redirect to put the VIP on lo in "+name, func() bool {
			return strings.Contains(h.ns.IP(t, "addr", "show", "dev", "lo"), vip.String()+"/32")
		})
		l.proxies[name] = h
		l.echo[name] = startEcho(t, h)
	}

	l.config = filepath.Join(t.TempDir(), "glb.json")
	l.setTable(map[string]string{"p1": "active"})
	l.director.proc = l.director.ns.Start(t, director, "--config", l.config, "--iface", "up0", "--src-ip", directorIP.String(),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", dirMetrics), "--bpffs", "/sys/fs/bpf/"+nstest.Name("glb"), "--xdp-mode", "generic")
	nstest.WaitFor(t, 10*time.Second, "the director's metrics", func() bool {
		select {
		case <-l.director.proc.Done():
			t.Fatalf("glb-director exited: %v\n%s", l.director.proc.Err(), l.director.proc.Output())
		default:
		}
		return l.tryMetrics(l.director, dirMetrics)
	})
	// Wait until the director's XDP program sees the client's traffic:
	// right after its metrics answer, the first packets can still reach
	// the director's stack instead.
	nstest.WaitFor(t, 10*time.Second, "the director's program to see the client's packets", func() bool {
		l.client.ns.Exec(t, "ping", "-c1", "-W1", directorIP.String())
		return l.director.metrics(t, dirMetrics)[`glb_director_packets_total{verdict="pass"}`] > 0
	})
	t.Cleanup(func() {
		close(l.stop)
		l.wg.Wait()
		for _, f := range l.flows {
			f.conn.Close()
		}
	})

	// 1. Only p1 is in the table: the first 50 connections all land there.
	l.open(0, 50)
	if o := l.owners(l.flows); o["p1"] != 50 {
		t.Fatalf("with p1 alone, connections landed on %v", o)
	}
	l.keepsEchoing("connections on p1 alone", l.flows, 5)

	// 2. Add p2. About half the rows now name p2 first: packets of p1's
	// connections in those rows reach p2, which has no socket for them
	// and passes them to p1. New connections spread over both.
	c := l.snapshot()
	l.setTable(map[string]string{"p1": "active", "p2": "active"})
	l.open(50, 50)
	t.Logf("after adding p2, the 100 connections live on %v", l.owners(l.flows))
	if o := l.owners(l.flows[50:]); o["p1"] == 0 || o["p2"] == 0 {
		t.Fatalf("new connections did not spread over both hosts: %v", o)
	}
	l.keepsEchoing("every connection after adding p2", l.flows, 10)
	c = l.step("after adding p2", c, map[string]string{"p2": "forwarded_to_alternate"})

	// 3. Drain p1: every row names p2 first. All of p1's connections now
	// live on second chance through p2.
	l.setTable(map[string]string{"p1": "draining", "p2": "active"})
	l.keepsEchoing("every connection with p1 draining", l.flows, 10)
	c = l.step("p1 draining", c, map[string]string{"p2": "forwarded_to_alternate"})

	// 4. Reverse it: p1 active again, p2 draining. Now p2's connections
	// live on second chance through p1.
	l.setTable(map[string]string{"p1": "active", "p2": "draining"})
	l.keepsEchoing("every connection with p2 draining", l.flows, 10)
	c = l.step("p2 draining", c, map[string]string{"p1": "forwarded_to_alternate"})

	// 5. Both active again, the table of step 2: p2 is first in about
	// half the rows, and passes p1's connections of those rows on again.
	// (p2's connections all began in rows that name p2 first.)
	l.setTable(map[string]string{"p1": "active", "p2": "active"})
	l.keepsEchoing("every connection with both hosts active again", l.flows, 10)
	c = l.step("both active again", c, map[string]string{"p2": "forwarded_to_alternate"})

	// 6. p2 dies while it is first in about half the rows: its uplink goes
	// down without warning. The health checker then marks it unhealthy
	// (glb-director does this from its checks; the test writes the health
	// it would report), which moves p2 behind p1 in every row. The
	// connections living on p1, including those whose rows named p2 first
	// and so depended on p2 passing their packets on, must survive. Only
	// p2's own connections break: their packets now reach p1 first, which
	// has no socket for them and passes them on to p2, where they die.
	var onP1, onP1ViaP2, onP2 []*flow
	for _, f := range l.flows {
		switch {
		case f.owner == "p2":
			onP2 = append(onP2, f)
		case l.primary(f) == proxyIPs["p2"]:
			onP1ViaP2 = append(onP1ViaP2, f)
			onP1 = append(onP1, f)
		default:
			onP1 = append(onP1, f)
		}
	}
	t.Logf("before p2 dies: %d connections on p2, %d on p1, %d of them in rows that name p2 first", len(onP2), len(onP1), len(onP1ViaP2))
	if len(onP2) == 0 || len(onP1ViaP2) == 0 {
		t.Fatal("no connection lives on p2, or none of p1's depends on p2: the test cannot tell whose connections break")
	}
	l.proxies["p2"].ns.IP(t, "link", "set", "up0", "down")
	l.setTable(map[string]string{"p1": "active", "p2": "unhealthy"})
	nstest.WaitFor(t, 3*rttDeadline, "every connection on p2 to break", func() bool {
		for _, f := range onP2 {
			if !f.broken() {
				return false
			}
		}
		return true
	})
	l.keepsEchoing("p1's connections after p2 died", onP1, 10)
	l.step("p2 dead", c, map[string]string{"p1": "forwarded_to_alternate"})
	t.Logf("%d connections on p1 (%d of them in rows that named p2 first) kept working, %d on p2 broke when it died",
		len(onP1), len(onP1ViaP2), len(onP2))
}

// primary is the host the director's current table sends f's packets to
// first, computed with director/table from the file the director loaded.
func (l *lab) primary(f *flow) netip.Addr {
	t := l.t
	t.Helper()
	c, err := table.Load(l.config)
	if err != nil {
		t.Fatal(err)
	}
	spec := &c.Tables[0]
	tf := table.Flow{Src: f.local.Addr(), Dst: vip, SrcPort: f.local.Port(), DstPort: echoPort}
	hops := table.Build(spec, nil).Hops(table.RowOf(table.Hash(spec.HashKey, spec.Fields(), tf)))
	if len(hops) == 0 {
		t.Fatalf("connection %d has no hop", f.id)
	}
	return hops[0]
}

// counts is every proxy host's glb_redirect_packets_total, by host and
// outcome.
type counts map[string]map[string]float64

func (l *lab) snapshot() counts {
	c := counts{}
	for _, name := range []string{"p1", "p2"} {
		c[name] = map[string]float64{}
		for k, v := range l.proxies[name].metrics(l.t, redirPort) {
			if o, ok := strings.CutPrefix(k, `glb_redirect_packets_total{outcome="`); ok {
				c[name][strings.TrimSuffix(o, `"}`)] = v
			}
		}
	}
	return c
}

// step logs what each proxy host's counters did since before, checks
// that every outcome in rose (host -> outcome) moved during the step,
// and, apart from those, that no packet was taken as a last resort
// (a lost connection) or dropped. It returns the new snapshot.
func (l *lab) step(stage string, before counts, rose map[string]string) counts {
	t := l.t
	t.Helper()
	after := l.snapshot()
	for _, name := range []string{"p1", "p2"} {
		var parts []string
		for o, v := range after[name] {
			d := v - before[name][o]
			if d != 0 {
				parts = append(parts, fmt.Sprintf("%s+%v", o, d))
			}
			want := rose[name] == o
			switch {
			case want && d == 0:
				t.Errorf("%s: %s's %s did not move", stage, name, o)
			case !want && d != 0 && (o == "accepted_last_resort" || strings.HasPrefix(o, "malformed_") || strings.HasPrefix(o, "dropped_")):
				t.Errorf("%s: %s's %s rose by %v", stage, name, o, d)
			}
		}
		if _, ok := after[name][rose[name]]; rose[name] != "" && !ok {
			t.Errorf("%s: %s exports no %s counter", stage, name, rose[name])
		}
		t.Logf("%s: %s counters since the last step: %s", stage, name, strings.Join(parts, " "))
	}
	return after
}

// tryMetrics reports whether h's metrics port accepts connections yet.
func (l *lab) tryMetrics(h *host, port int) bool {
	var conn net.Conn
	err := h.ns.Do(l.t, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		return err
	})
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
