package proxy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/glb-project/glb/internal/testenv"
	"github.com/glb-project/glb/proxy/clients"
	"github.com/glb-project/glb/proxy/config"
)

// TestExamplesParse keeps deploy/examples in step with the code: the
// example configuration and client registry must pass validation.
func TestExamplesParse(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy/examples/glb-proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		t.Fatalf("deploy/examples/glb-proxy.yaml: %v", err)
	}
	if len(cfg.Credentials) == 0 || cfg.TLS == nil || cfg.Cache.Redis == "" {
		t.Errorf("the example should show credentials, tls and redis: %+v", cfg)
	}
	raw, err = os.ReadFile(filepath.Join(root, "deploy/examples/glb-proxy-clients.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := clients.Parse(raw)
	if err != nil {
		t.Fatalf("deploy/examples/glb-proxy-clients.yaml: %v", err)
	}
	if len(set.Clients) < 2 {
		t.Errorf("example registry has %d clients", len(set.Clients))
	}
}
