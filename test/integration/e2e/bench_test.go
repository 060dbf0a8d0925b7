package e2e

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/testenv"
	"github.com/glb-project/glb/test/integration/stack"
)

// load is the result of one closed-loop load run.
type load struct {
	requests  int
	errors    int
	elapsed   time.Duration
	latencies []time.Duration
}

func (l *load) add(o *load) {
	l.requests += o.requests
	l.errors += o.errors
	l.elapsed += o.elapsed
	l.latencies = append(l.latencies, o.latencies...)
}

func (l *load) rps() float64 { return float64(l.requests) / l.elapsed.Seconds() }

func (l *load) pct(p float64) time.Duration {
	if len(l.latencies) == 0 {
		return 0
	}
	slices.Sort(l.latencies)
	return l.latencies[int(p*float64(len(l.latencies)-1))]
}

// runLoad keeps conns keep-alive HTTPS connections from the client
// namespace busy with GET url for d, each sending its next request as
// soon as the last is answered, and records every request's latency.
func runLoad(s *stack.Stack, url string, conns int, d time.Duration) *load {
	var mu sync.Mutex
	total := &load{}
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range conns {
		c := s.ClientHTTP()
		c.Transport.(*http.Transport).MaxConnsPerHost = 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseIdleConnections()
			mine := &load{latencies: make([]time.Duration, 0, 4096)}
			for time.Now().Before(deadline) {
				req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
				req.Header.Set("Authorization", "token "+s.Token)
				t := time.Now()
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					mine.errors++
					continue
				}
				mine.latencies = append(mine.latencies, time.Since(t))
				mine.requests++
			}
			mu.Lock()
			total.requests += mine.requests
			total.errors += mine.errors
			total.latencies = append(total.latencies, mine.latencies...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return total
}

// BenchmarkEndToEnd measures requests per second and p50/p99 latency
// through the VIP (client → router → ECMP → glb-director → GUE →
// glb-redirect → glb-proxy, reply straight back), beside the same load
// sent straight to one proxy host's address (client → router →
// glb-proxy: no director, no GUE), in the same run, rounds interleaved so
// both see the same machine. Two requests:
//
//   - health: GET /_glb/health, answered by glb-proxy itself: the cost of
//     the L4 path and TLS;
//   - api: GET /repos/acme/widgets, the proxy's usual work: a Redis
//     lookup and a revalidation at githubsim (a 304, no rate limit).
//
// It runs with the directors in native XDP mode (the stack's default) and
// in generic mode. The work per run is fixed (rounds × round time),
// whatever b.N is: run it with -benchtime 1x. Reported: req/s, p50 and p99 for each path, and the
// ratios VIP / direct (1.0 = the director and GUE cost nothing visible).
func BenchmarkEndToEnd(b *testing.B) {
	for _, mode := range []string{"native", "generic"} {
		b.Run(mode, func(b *testing.B) { benchEndToEnd(b, mode) })
	}
}

// benchEndToEnd runs the comparison with the directors' XDP program in
// mode.
func benchEndToEnd(b *testing.B, mode string) {
	requirements(b, "ss")
	s := startStack(b, func(c *stack.Config) { c.HealthInterval = 2 * time.Second; c.XDPMode = mode })
	direct := s.Proxies[0].IP.String()
	const (
		conns  = 16
		rounds = 3
		round  = 1500 * time.Millisecond
	)
	// measure interleaves rounds of load through the VIP and straight to
	// proxy1, after a warm-up of both.
	measure := func(path string) (vip, dir *load) {
		vip, dir = &load{}, &load{}
		runLoad(s, "https://"+stack.VIP.String()+path, conns, 300*time.Millisecond)
		runLoad(s, "https://"+direct+path, conns, 300*time.Millisecond)
		for range rounds {
			vip.add(runLoad(s, "https://"+stack.VIP.String()+path, conns, round))
			dir.add(runLoad(s, "https://"+direct+path, conns, round))
		}
		if vip.errors+dir.errors > 0 || vip.requests == 0 || dir.requests == 0 {
			b.Fatalf("errors: %d through the VIP, %d direct (of %d and %d)", vip.errors, dir.errors, vip.requests, dir.requests)
		}
		return vip, dir
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	report := func(b *testing.B, prefix string, vip, dir *load) {
		b.ReportMetric(vip.rps(), prefix+"_req/s")
		b.ReportMetric(ms(vip.pct(0.50)), prefix+"_p50_ms")
		b.ReportMetric(ms(vip.pct(0.99)), prefix+"_p99_ms")
		b.ReportMetric(vip.rps()/dir.rps(), prefix+"/direct_rps")
		b.ReportMetric(float64(vip.pct(0.50))/float64(dir.pct(0.50)), prefix+"/direct_p50")
		b.ReportMetric(float64(vip.pct(0.99))/float64(dir.pct(0.99)), prefix+"/direct_p99")
	}
	for _, kind := range []struct{ name, path string }{{"health", "/_glb/health"}, {"api", "/repos/acme/widgets"}} {
		b.Run(kind.name, func(b *testing.B) {
			// vip: the VIP spreads the load over all three proxy hosts.
			vip, dir := measure(kind.path)
			// vip1: proxy2 and proxy3 drained, so the VIP sends every
			// connection to proxy1, the host the direct load goes to:
			// the difference is the L4 path alone (ECMP, the director,
			// GUE, glb-redirect).
			ctl(b, s, "drain", "proxy2", "--reason", "bench: one host", "--force")
			ctl(b, s, "drain", "proxy3", "--reason", "bench: one host", "--force")
			waitTables(b, s, "narrow the table to proxy1")
			vip1, dir1 := measure(kind.path)
			ctl(b, s, "activate", "proxy2", "--reason", "bench done")
			ctl(b, s, "activate", "proxy3", "--reason", "bench done")
			waitTables(b, s, "all hosts back")

			b.ReportMetric(0, "ns/op")
			b.ReportMetric(dir.rps(), "direct_req/s")
			b.ReportMetric(ms(dir.pct(0.50)), "direct_p50_ms")
			b.ReportMetric(ms(dir.pct(0.99)), "direct_p99_ms")
			report(b, "vip", vip, dir)
			report(b, "vip1", vip1, dir1)
		})
	}
	b.Run("wrk", func(b *testing.B) {
		// The same comparison with wrk, a C load generator, from the
		// client namespace (wrk does not verify certificates).
		if _, err := exec.LookPath("wrk"); err != nil {
			testenv.Unavailable(b, "wrk is not installed (run sudo make deps)")
		}
		wrk := func(host string) (rps, p50, p99 float64) {
			cmd := s.Client.Command(context.Background(), "wrk", "-t2", "-c"+strconv.Itoa(conns), "-d3s", "--latency",
				"-H", "Authorization: token "+s.Token, "https://"+host+"/_glb/health")
			out, err := cmd.CombinedOutput()
			if err != nil {
				b.Fatalf("wrk: %v\n%s", err, out)
			}
			return wrkValue(b, out, `Requests/sec:\s+([0-9.]+)`, 1), wrkValue(b, out, `50%\s+([0-9.]+)(us|ms|s)`, 0),
				wrkValue(b, out, `99%\s+([0-9.]+)(us|ms|s)`, 0)
		}
		vr, v50, v99 := wrk(stack.VIP.String())
		dr, d50, d99 := wrk(direct)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(vr, "vip_req/s")
		b.ReportMetric(dr, "direct_req/s")
		b.ReportMetric(v50, "vip_p50_ms")
		b.ReportMetric(v99, "vip_p99_ms")
		b.ReportMetric(d50, "direct_p50_ms")
		b.ReportMetric(d99, "direct_p99_ms")
		b.ReportMetric(vr/dr, "vip/direct_rps")
	})
}

// wrkValue extracts a number from wrk's report; with unit == 0 it is a
// latency converted to milliseconds.
func wrkValue(b *testing.B, out []byte, pattern string, unit int) float64 {
	m := regexp.MustCompile(pattern).FindSubmatch(out)
	if m == nil {
		b.Fatalf("no %q in wrk's output:\n%s", pattern, out)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		b.Fatal(err)
	}
	if unit == 0 {
		switch string(m[2]) {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
	}
	return v
}
