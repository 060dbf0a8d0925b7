package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glb-project/glb/consul"
	"github.com/glb-project/glb/consul/consultest"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/syncbuf"
	"github.com/glb-project/glb/proxy/clients"
	"github.com/glb-project/glb/test/githubsim"
	"github.com/hashicorp/consul/api"
)

// TestConsulRegistration runs glb-proxy with registration.consul against
// the Consul API test server: the proxy appears in the catalog with its
// cluster and table while it runs, passes its health check, and leaves
// the catalog when it stops.
func TestConsulRegistration(t *testing.T) {
	srv := consultest.New(t)
	dir := t.TempDir()
	reg := filepath.Join(dir, "clients.yaml")
	if err := os.WriteFile(reg, []byte("version: 1\nclients:\n  - name: a\n    token_sha256: "+clients.HashToken("x")+"\n    scopes: [{path: /x}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "glb-proxy.yaml")
	t.Setenv("GLB_TEST_PAT", "ghp_test")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: "127.0.0.1:0"
upstream: {rest: "http://127.0.0.1:1"}
credentials: [{name: bot, pat_env: GLB_TEST_PAT}]
clients_file: %s
registration: {consul: "consul://%s/glb", address: 127.0.0.1, cluster: site-a, table: github-api}
`, reg, srv.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs syncbuf.Buffer
	go func() { done <- run(ctx, []string{"--config", cfg}, nil, &logs, &logs, nil) }()

	c, err := api.NewClient(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	var found []consul.Proxy
	nstest.WaitFor(t, 20*time.Second, "glb-proxy to pass its check in the catalog", func() bool {
		select {
		case err := <-done:
			t.Fatalf("glb-proxy exited: %v\n%s", err, logs.String())
		default:
		}
		found, _, err = consul.Proxies(ctx, c, "site-a", true, 0)
		return err == nil && len(found) == 1
	})
	if p := found[0]; p.Address != "127.0.0.1" || p.Table != "github-api" || p.Cluster != "site-a" || p.Port == 0 {
		t.Errorf("registered as %+v", p)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("glb-proxy: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("glb-proxy did not stop\n%s", logs.String())
	}
	all, _, err := consul.Proxies(context.Background(), c, "", false, 0)
	if err != nil || len(all) != 0 {
		t.Errorf("after exit the catalog still lists %v (%v)", all, err)
	}
}

// TestClientsFromConsul runs glb-proxy with clients_consul against the
// Consul API test server: it refuses to start without a registry, starts
// with the one glb-proxy clients push stored, follows changes with the
// blocking query that was already waiting, keeps the last good registry
// on a bad or deleted value (counted and logged as for a file), and reads
// the key again on SIGHUP.
func TestClientsFromConsul(t *testing.T) {
	srv := consultest.New(t)
	sim := &githubsim.Server{}
	simTS := httptest.NewServer(sim)
	t.Cleanup(func() { simTS.Close(); sim.Close() })
	sim.AddToken("ghp_glbproxyconsultestPAT0123456789abcdef", "bot")
	t.Setenv("GLB_TEST_PAT", "ghp_glbproxyconsultestPAT0123456789abcdef")

	dir := t.TempDir()
	tokens := map[string]string{}
	registry := func(name string) string {
		t.Helper()
		tok, err := clients.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		tokens[name] = tok
		p := filepath.Join(dir, name+".yaml")
		doc := "version: 1\nclients:\n  - name: " + name + "\n    token_sha256: " + clients.HashToken(tok) + "\n    scopes: [{path: \"/repos/**\"}]\n"
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	regA, regB := registry("a"), registry("b")
	at := "consul://" + srv.Addr() + "/glb-" + strconv.Itoa(os.Getpid())
	key := strings.TrimPrefix(at, "consul://"+srv.Addr()+"/") + "/" + consul.ClientsKey
	cfg := filepath.Join(dir, "glb-proxy.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: "127.0.0.1:0"
upstream: {rest: %q}
credentials: [{name: bot, pat_env: GLB_TEST_PAT}]
clients_consul: %q
`, simTS.URL, at)), 0o600); err != nil {
		t.Fatal(err)
	}

	// No registry in Consul: glb-proxy refuses to start.
	if _, _, err := runCapture(t, "", "--config", cfg); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("start without a registry in consul: %v", err)
	}
	// A bad file is not pushed.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nclients: [{name: x}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCapture(t, "", "clients", "push", "--clients", bad, "--consul", at); err == nil || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("push of a bad registry: %v", err)
	}
	out, _, err := runCapture(t, "", "clients", "push", "--clients", regA, "--consul", at)
	if err != nil || !strings.Contains(out, "ok (1 clients); written to "+at+"/proxy/clients") {
		t.Fatalf("push: %q %v", out, err)
	}
	if out, _, err := runCapture(t, "", "clients", "show", "--consul", at); err != nil || !strings.Contains(out, "name: a") {
		t.Fatalf("show: %q %v", out, err)
	}

	r := startRun(t, cfg)
	c := &http.Client{Timeout: 10 * time.Second}
	status := func(client string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+r.addr+"/repos/acme/widgets", nil)
		req.Header.Set("Authorization", "token "+tokens[client])
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	reloads := func(result string) int {
		t.Helper()
		resp, err := c.Get("http://" + r.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, `glb_proxy_clients_reloads_total{result="`+result+`"} `); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		return 0
	}
	if a, b := status("a"), status("b"); a != 200 || b != 401 {
		t.Fatalf("registry a: client a %d, client b %d", a, b)
	}
	// Each change below reaches the proxy through the blocking query that
	// is already parked: far sooner than its one-minute wait.
	parked := func() {
		t.Helper()
		nstest.WaitFor(t, 20*time.Second, "the registry watch to wait on consul", func() bool { r.exited(); return srv.Waiting() == 1 })
	}
	within := 20 * time.Second
	push := func(file string) {
		t.Helper()
		parked()
		if _, _, err := runCapture(t, "", "clients", "push", "--clients", file, "--consul", at); err != nil {
			t.Fatal(err)
		}
	}

	push(regB)
	nstest.WaitFor(t, within, "client b to be accepted", func() bool { return status("b") == 200 })
	if s := status("a"); s != 401 {
		t.Errorf("client a after its removal: %d, want 401", s)
	}
	if n := reloads("ok"); n != 2 {
		t.Errorf("reloads ok = %d, want 2 (start and one change)", n)
	}

	// A bad value (written around glb-proxy clients push) is refused,
	// counted and logged once; b keeps working.
	kv := consulKV(t, srv)
	parked()
	if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte("version: 1\nclients: [{name: BROKEN}]\n")}, nil); err != nil {
		t.Fatal(err)
	}
	nstest.WaitFor(t, within, "the bad registry to be reported", func() bool { return reloads("error") == 1 })
	if got := r.lines("BROKEN"); len(got) != 1 || !strings.Contains(got[0], `"msg":"client registry not loaded; keeping the last good one"`) {
		t.Errorf("want one log line about the bad registry, got:\n%s", strings.Join(got, "\n"))
	}
	if s := status("b"); s != 200 {
		t.Errorf("client b after a bad registry: %d", s)
	}

	// A deleted key is the same.
	parked()
	if _, err := kv.Delete(key, nil); err != nil {
		t.Fatal(err)
	}
	nstest.WaitFor(t, within, "the deleted registry to be reported", func() bool { return reloads("error") == 2 })
	if s := status("b"); s != 200 {
		t.Errorf("client b after the key was deleted: %d", s)
	}
	// SIGHUP reads the key at once and reports it again.
	r.sighup()
	nstest.WaitFor(t, within, "SIGHUP to read the key", func() bool { return len(r.lines(`"msg":"reload incomplete"`)) == 1 })
	if got := r.lines(`"msg":"reload incomplete"`)[0]; !strings.Contains(got, "does not exist") || !strings.Contains(got, "keeping the last good one") {
		t.Errorf("SIGHUP with no key: %s", got)
	}

	// Consul goes away: the registry in use serves on, and the watch
	// resumes when Consul is back.
	srv.Stop()
	nstest.WaitFor(t, within, "the watch to notice consul is gone", func() bool {
		return len(r.lines(`"msg":"client registry read failed; keeping the last one"`)) > 0
	})
	if s := status("b"); s != 200 {
		t.Errorf("client b while consul is down: %d", s)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}

	// Back to a, by push.
	push(regA)
	nstest.WaitFor(t, within, "client a to be accepted again", func() bool { return status("a") == 200 })
	if s := status("b"); s != 401 {
		t.Errorf("client b after its removal: %d, want 401", s)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("run: %v\n%s", err, r.logs.String())
	}
	if srv.Waiting() != 0 {
		t.Errorf("%d blocking queries still parked after glb-proxy stopped", srv.Waiting())
	}
}

func consulKV(t *testing.T, srv *consultest.Server) *api.KV {
	t.Helper()
	c, err := api.NewClient(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	return c.KV()
}
