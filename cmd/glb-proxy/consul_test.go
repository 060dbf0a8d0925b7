package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/glb-project/glb/consul"
	"github.com/glb-project/glb/consul/consultest"
	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/syncbuf"
	"github.com/glb-project/glb/proxy/clients"
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
