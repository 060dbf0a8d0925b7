package healthcheck

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glb-project/glb/director/table"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/testenv"
	"github.com/glb-project/glb/proxy/redirect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// childEnv marks the test binary re-executed inside the director
// namespace.
const childEnv = "GLB_HEALTHCHECK_NETNS_CHILD"

// childNSLine starts the line on which the child names the namespace it
// creates.
const childNSLine = "healthcheck test namespace: "

// TestGUEPathInNamespaces runs TestGUEPathChild in a throw-away "director"
// namespace. A Checker opens sockets from whatever thread a goroutine runs
// on, so the director side must be a whole process inside the namespace,
// as glb-director is.
func TestGUEPathInNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	dir := nstest.New(t, "dir")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := dir.Command(ctx, exe, "-test.run=^TestGUEPathChild$", "-test.count=1", "-test.timeout=3m", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	// The child's cleanup removes the namespace it made, unless it was
	// killed (a -test.timeout panic skips cleanups): then do it here.
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, childNSLine); ok {
			_ = exec.Command("ip", "netns", "del", strings.TrimSpace(name)).Run()
		}
	}
	if err != nil || testing.Verbose() {
		t.Logf("director namespace:\n%s", out)
	}
	if err != nil {
		t.Fatalf("TestGUEPathChild in namespace %s: %v", dir.Name, err)
	}
	if !strings.Contains(string(out), "--- PASS: TestGUEPathChild ") {
		t.Fatalf("TestGUEPathChild did not run in namespace %s:\n%s", dir.Name, out)
	}
}

// Addresses of the two-namespace topology:
//
//	director ns (this process)             proxy ns
//	hc0 10.0.0.1/24  <──── veth ────>  eth0 10.0.0.2/24
//	HTTP :8081 (itself a backend)       HTTP :8080 /_glb/health, glb-redirect
var (
	nsDirector = netip.MustParseAddr("10.0.0.1")
	nsProxy    = netip.MustParseAddr("10.0.0.2")
)

// TestGUEPathChild is the body of TestGUEPathInNamespaces. This process is
// the director; it checks a proxy host in a second namespace, then itself.
func TestGUEPathChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("runs inside TestGUEPathInNamespaces' director namespace")
	}
	testenv.RequireRoot(t)
	prx := nstest.New(t, "prx")
	fmt.Println(childNSLine + prx.Name)
	nstest.Veth(t, nil, "hc0", prx, "eth0")
	ip(t, "addr", "add", nsDirector.String()+"/24", "dev", "hc0")
	prx.IP(t, "addr", "add", nsProxy.String()+"/24", "dev", "eth0")

	serveHealth(t, prx, netip.AddrPortFrom(nsProxy, 8080))
	serveHealth(t, nil, netip.AddrPortFrom(nsDirector, 8081))

	hc := &Checker{Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond, SrcIP: nsDirector,
		Registerer: prometheus.NewPedanticRegistry(), Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	remote := table.Backend{IP: nsProxy, State: table.Active,
		Healthchecks: table.Healthchecks{HTTP: 8080, HTTPURI: "/_glb/health", GUE: 19523}}
	hc.Update(config([]table.Backend{remote}))
	// A GUE port that answers, but decapsulates nothing, from the start.
	responder := udpEcho(t, prx, netip.AddrPortFrom(nsProxy, 19523))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	httpCheck := Check{Backend: nsProxy, Kind: HTTP, Port: 8080, URI: "/_glb/health"}
	gueCheck := Check{Backend: nsProxy, Kind: GUE, Port: 19523}

	t.Run("a UDP responder that does not decapsulate fails the GUE check", func(t *testing.T) {
		waitChecks(t, hc, "GUE failing against a plain UDP echo, HTTP passing", map[Check]bool{httpCheck: true, gueCheck: false})
		for _, s := range hc.Status() {
			if s.Check == gueCheck && (s.Reason != "timeout after 80ms" || responder.echoed.Load() == 0) {
				t.Fatalf("GUE check fails for %q after %d probes reached the responder: want a timeout after probes reached it",
					s.Reason, responder.echoed.Load())
			}
		}
		wantHealth(t, hc.Snapshot(), table.Health{nsProxy: false})
	})
	responder.close()

	agent := startRedirect(t, prx, "eth0", nsProxy, "10.100.0.1")
	t.Run("with glb-redirect attached the GUE check passes", func(t *testing.T) {
		waitChecks(t, hc, "both checks passing", map[Check]bool{httpCheck: true, gueCheck: true})
		wantHealth(t, hc.Snapshot(), table.Health{nsProxy: true})
		counters, err := agent.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if counters["accepted_icmp"] == 0 {
			t.Fatalf("glb-redirect decapsulated no ICMP: %v", counters)
		}
		if n := testutil.ToFloat64(hc.m.icmp.WithLabelValues(icmpMatchedReply)); n == 0 {
			t.Fatal("the raw socket matched no echo reply")
		}
	})

	t.Run("detaching glb-redirect fails only the GUE check", func(t *testing.T) {
		httpFails := testutil.ToFloat64(hc.m.results.WithLabelValues(append(checkLabels(httpCheck), "fail")...))
		stopRedirect(t, prx, agent)
		waitChecks(t, hc, "GUE failing, HTTP passing", map[Check]bool{httpCheck: true, gueCheck: false})
		wantHealth(t, hc.Snapshot(), table.Health{nsProxy: false})
		for _, s := range hc.Status() {
			if s.Check == gueCheck && !strings.Contains(s.Reason, "udp port 19523 unreachable") {
				t.Errorf("GUE check fails for %q, want the backend's port unreachable", s.Reason)
			}
		}
		if n := testutil.ToFloat64(hc.m.results.WithLabelValues(append(checkLabels(httpCheck), "fail")...)); n != httpFails {
			t.Fatalf("the HTTP check failed %v times while only GUE was broken", n-httpFails)
		}
	})

	agent = startRedirect(t, prx, "eth0", nsProxy, "10.100.0.1")
	waitChecks(t, hc, "both checks passing again", map[Check]bool{httpCheck: true, gueCheck: true})

	t.Run("with the link down every check fails, and they recover when it is up", func(t *testing.T) {
		prx.IP(t, "link", "set", "eth0", "down")
		waitChecks(t, hc, "every check failing", map[Check]bool{httpCheck: false, gueCheck: false})
		wantHealth(t, hc.Snapshot(), table.Health{nsProxy: false})
		prx.IP(t, "link", "set", "eth0", "up")
		waitChecks(t, hc, "every check passing", map[Check]bool{httpCheck: true, gueCheck: true})
		wantHealth(t, hc.Snapshot(), table.Health{nsProxy: true})
	})
	stopRedirect(t, prx, agent)

	// GLB issue 139: the director is also a proxy host, and checks itself.
	self := table.Backend{IP: nsDirector, State: table.Active,
		Healthchecks: table.Healthchecks{HTTP: 8081, HTTPURI: "/_glb/health", GUE: 19523}}
	hc.Update(config([]table.Backend{remote, self}))
	selfHTTP := Check{Backend: nsDirector, Kind: HTTP, Port: 8081, URI: "/_glb/health"}
	selfGUE := Check{Backend: nsDirector, Kind: GUE, Port: 19523}

	t.Run("a GUE probe of one's own address never meets glb-redirect", func(t *testing.T) {
		// What GLB's checker does, and why it always failed for itself:
		// the packet loops back over lo, where nothing decapsulates.
		self := startRedirect(t, nil, "hc0", nsDirector, "10.100.0.2")
		defer stopRedirect(t, nil, self)
		r := withTimeout(context.Background(), time.Second, func(ctx context.Context) result {
			return hc.gue.probeWire(ctx, selfGUE)
		})
		if r.ok {
			t.Fatal("a GUE probe sent over lo came back: the in-place check would not be needed")
		}
		t.Logf("wire probe of %s: %s", nsDirector, r.reason)
	})

	t.Run("the checking host's own GUE path fails without glb-redirect", func(t *testing.T) {
		// The remote host's glb-redirect was stopped above: wait for its GUE
		// check to see that too, so the snapshots below are settled.
		waitChecks(t, hc, "own HTTP passing, own GUE failing, remote GUE failing",
			map[Check]bool{selfHTTP: true, selfGUE: false, gueCheck: false})
		for _, s := range hc.Status() {
			if s.Check == selfGUE && !strings.Contains(s.Reason, "no program on hc0's tcx ingress") {
				t.Fatalf("own GUE check fails for %q, want glb-redirect missing on hc0", s.Reason)
			}
		}
	})

	t.Run("the checking host's own GUE path passes with glb-redirect", func(t *testing.T) {
		self := startRedirect(t, nil, "hc0", nsDirector, "10.100.0.2")
		waitChecks(t, hc, "own checks passing", map[Check]bool{selfHTTP: true, selfGUE: true})
		wantHealth(t, hc.Snapshot(), table.Health{nsProxy: false, nsDirector: true})
		stopRedirect(t, nil, self)
		waitChecks(t, hc, "own GUE failing once glb-redirect is gone", map[Check]bool{selfHTTP: true, selfGUE: false})
	})

	t.Run("an own address on lo is checked through the uplink's glb-redirect", func(t *testing.T) {
		loAddr := netip.MustParseAddr("10.0.1.1")
		ip(t, "addr", "add", loAddr.String()+"/32", "dev", "lo")
		defer ip(t, "addr", "del", loAddr.String()+"/32", "dev", "lo")
		onLo := table.Backend{IP: loAddr, State: table.Active, Healthchecks: table.Healthchecks{GUE: 19523}}
		hc.Update(config([]table.Backend{remote, self, onLo}))
		loGUE := Check{Backend: loAddr, Kind: GUE, Port: 19523}
		waitChecks(t, hc, "the lo address's GUE failing without glb-redirect", map[Check]bool{loGUE: false})
		agent := startRedirect(t, nil, "hc0", loAddr, "10.100.0.3")
		waitChecks(t, hc, "the lo address's GUE passing", map[Check]bool{loGUE: true})
		stopRedirect(t, nil, agent)
	})
}

// ip runs `ip ARGS…` in this process's namespace.
func ip(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tb.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// inNS runs fn in ns, or here when ns is nil.
func inNS(tb testing.TB, ns *nstest.NS, fn func() error) {
	tb.Helper()
	var err error
	if ns == nil {
		err = fn()
	} else {
		err = ns.Do(tb, fn)
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// serveHealth serves 200 on /_glb/health at addr. The listening socket is
// made in ns, and stays there whichever thread serves it.
func serveHealth(tb testing.TB, ns *nstest.NS, addr netip.AddrPort) {
	tb.Helper()
	var ln net.Listener
	inNS(tb, ns, func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_glb/health" {
			w.WriteHeader(http.StatusNotFound)
		}
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
}

// echoServer sends every datagram back as it came, without looking
// inside: a GUE port that answers, but decapsulates nothing.
type echoServer struct {
	conn   *net.UDPConn
	echoed atomic.Int64
	done   chan struct{}
}

func udpEcho(tb testing.TB, ns *nstest.NS, addr netip.AddrPort) *echoServer {
	tb.Helper()
	e := &echoServer{done: make(chan struct{})}
	inNS(tb, ns, func() (err error) {
		e.conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	go func() {
		defer close(e.done)
		buf := make([]byte, 2048)
		for {
			k, from, err := e.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			e.echoed.Add(1)
			_, _ = e.conn.WriteToUDPAddrPort(buf[:k], from)
		}
	}()
	tb.Cleanup(e.close)
	return e
}

func (e *echoServer) close() {
	e.conn.Close()
	<-e.done
}

// startRedirect runs glb-redirect's agent on iface in ns (nil: here).
func startRedirect(tb testing.TB, ns *nstest.NS, iface string, self netip.Addr, vip string) *redirect.Agent {
	tb.Helper()
	var a *redirect.Agent
	inNS(tb, ns, func() (err error) {
		a, err = redirect.Start(redirect.Config{Iface: iface, Self: self, VIPs: []netip.Addr{netip.MustParseAddr(vip)}})
		return err
	})
	tb.Cleanup(func() { stopRedirect(tb, ns, a) })
	return a
}

// stopRedirect detaches the agent (its sysctls live in ns, so Close runs
// there).
func stopRedirect(tb testing.TB, ns *nstest.NS, a *redirect.Agent) {
	tb.Helper()
	inNS(tb, ns, a.Close)
}

// waitChecks polls until every check in want has reported and has the
// damped state given.
func waitChecks(tb testing.TB, hc *Checker, what string, want map[Check]bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := map[Check]Status{}
		for _, s := range hc.Status() {
			got[s.Check] = s
		}
		ok := true
		for c, healthy := range want {
			if s, seen := got[c]; !seen || !s.Known || s.Healthy != healthy {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, s := range hc.Status() {
				fmt.Fprintf(&b, "\n  %s: known %v healthy %v streak %d last passed %v reason %q", s.Check, s.Known, s.Healthy, s.Streak, s.LastPassed, s.Reason)
			}
			tb.Fatalf("timed out waiting for %s; checks:%s", what, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
