package proxy_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glb-project/glb/proxy/redistest"
)

// TestRedisOutage takes a real redis-server away under a running
// glb-proxy while clients keep polling: killed (connections refused), or
// hung with SIGSTOP (connections accepted by the kernel, nothing
// answered, every operation runs into its timeout). No client sees an
// error, and caching resumes by itself when Redis is back.
func TestRedisOutage(t *testing.T) {
	outages := []struct {
		name       string
		down, back func(*redistest.Server)
	}{
		{"killed", (*redistest.Server).Kill, (*redistest.Server).Restart},
		{"hung", (*redistest.Server).Pause, (*redistest.Server).Resume},
	}
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) { testRedisOutage(t, o.down, o.back) })
	}
}

func testRedisOutage(t *testing.T, down, back func(*redistest.Server)) {
	rs := redistest.Start(t)
	w := newWorld(t, []string{"bot"}, map[string][]string{"poller": {`{path: "/repos/acme/**"}`}})
	px := startProxy(t, w, nil, w.credentialsYAML("bot")+fmt.Sprintf("cache: {redis: \"redis://%s/0\"}\n", rs.Addr))
	c := &http.Client{Timeout: 10 * time.Second}
	tok := w.tokens["poller"]
	paths := []string{"/repos/acme/widgets", "/repos/acme/widgets/issues", "/repos/acme/widgets/pulls"}

	var modesMu sync.Mutex
	modes := map[string]int{}
	var errs, n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", px.main+paths[(i+j)%len(paths)], nil)
				req.Header.Set("Authorization", "token "+tok)
				resp, err := c.Do(req)
				n.Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs.Add(1)
				}
				modesMu.Lock()
				modes[resp.Header.Get("X-GLB-Cache")]++
				modesMu.Unlock()
			}
		}()
	}
	seen := func(mode string, min int) func() bool {
		return func() bool { modesMu.Lock(); defer modesMu.Unlock(); return modes[mode] >= min }
	}
	waitFor(t, "revalidated answers from Redis", 20*time.Second, seen("REVALIDATED", 10))
	down(rs)
	modesMu.Lock()
	modes["BYPASS"] = 0
	modesMu.Unlock()
	waitFor(t, "pass-through answers with Redis down", 20*time.Second, seen("BYPASS", 20))
	back(rs)
	modesMu.Lock()
	modes["REVALIDATED"] = 0
	modesMu.Unlock()
	waitFor(t, "caching to resume after Redis came back", 30*time.Second, seen("REVALIDATED", 10))
	close(stop)
	wg.Wait()
	if e := errs.Load(); e != 0 {
		t.Fatalf("%d of %d client requests failed during the Redis outage", e, n.Load())
	}
	resp, body := get(t, c, px.plain+"/metrics", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "glb_proxy_redis_errors_total") {
		t.Fatal("no redis error metric")
	}
	var redisErrors float64
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, `glb_proxy_redis_errors_total{`) {
			var v float64
			fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v)
			redisErrors += v
		}
	}
	if redisErrors == 0 {
		t.Errorf("redis errors not counted")
	}
	t.Logf("%d requests, modes %v", n.Load(), modes)
}

// TestAppTokenSharedByReplicas runs two glb-proxy processes with one
// GitHub App credential and one Redis: the installation token is minted
// once and used by both.
func TestAppTokenSharedByReplicas(t *testing.T) {
	rs := redistest.Start(t)
	w := newWorld(t, nil, map[string][]string{"ci": {`{path: "/repos/acme/**"}`}})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(w.dir, "app.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	w.sim.AddApp(4711, &key.PublicKey, 99)
	extra := fmt.Sprintf("credentials:\n  - {name: ci-app, app_id: 4711, installation_id: 99, private_key_file: %q}\ncache: {redis: \"redis://%s/0\"}\n", keyFile, rs.Addr)
	a := startProxy(t, w, nil, extra)
	b := startProxy(t, w, nil, extra)
	c := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := a.main
			if i%2 == 1 {
				base = b.main
			}
			if resp, body := get(t, c, base+"/repos/acme/widgets/issues/"+fmt.Sprint(1+i%5), w.tokens["ci"]); resp.StatusCode != 200 {
				t.Errorf("replica %s: %d %s", base, resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	st := w.sim.Stats()
	if m := st.Mints["app-4711-inst-99"]; m != 1 {
		t.Fatalf("installation tokens minted: %d, want 1 for both replicas", m)
	}
	if calls := st.Labels["app-4711-inst-99"].Calls; calls < 2 {
		t.Fatalf("installation token used for %d calls", calls)
	}
	// The second replica's metrics say it took the shared token.
	var shared, minted int
	for _, px := range []*proc{a, b} {
		_, m := get(t, c, px.plain+"/metrics", "")
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, `glb_proxy_app_token_mints_total{credential="ci-app",result="shared"}`) {
				shared++
			}
			if strings.HasPrefix(l, `glb_proxy_app_token_mints_total{credential="ci-app",result="minted"} 1`) {
				minted++
			}
		}
	}
	if minted != 1 || shared < 1 {
		t.Errorf("mint metrics: %d replicas minted, %d took the shared token", minted, shared)
	}
}

// TestRedisClusterBinary serves from a three-node Redis Cluster.
func TestRedisClusterBinary(t *testing.T) {
	cl := redistest.StartCluster(t)
	w := newWorld(t, []string{"bot"}, map[string][]string{"ci": {`{path: "/repos/acme/**"}`}})
	extra := w.credentialsYAML("bot") + "cache:\n  redis_cluster: [" + strings.Join(cl.Addrs, ", ") + "]\n"
	px := startProxy(t, w, nil, extra)
	c := &http.Client{Timeout: 10 * time.Second}
	for i := 1; i <= 12; i++ {
		get(t, c, px.main+fmt.Sprintf("/repos/acme/widgets/issues/%d", i), w.tokens["ci"])
	}
	counted := w.sim.Stats().Total.Counted
	for i := 1; i <= 12; i++ {
		resp, _ := get(t, c, px.main+fmt.Sprintf("/repos/acme/widgets/issues/%d", i), w.tokens["ci"])
		if m := resp.Header.Get("X-GLB-Cache"); m != "REVALIDATED" {
			t.Fatalf("issue %d from the cluster: %s", i, m)
		}
	}
	if got := w.sim.Stats().Total.Counted; got != counted {
		t.Errorf("revalidations spent %d", got-counted)
	}
}
