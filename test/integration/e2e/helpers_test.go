package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/testenv"
	"github.com/glb-project/glb/test/integration/stack"
)

// bins are the binaries, built once for the package (only as root: the
// tests skip otherwise).
var bins stack.Binaries

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if os.Geteuid() != 0 {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "glb-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		root, err := testenv.ModuleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/glb-director", "./cmd/glb-redirect", "./cmd/glb-proxy", "./cmd/glbctl", "./cmd/githubsim")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build the binaries: %v\n%s", err, out)
			return 1
		}
		bins = stack.Binaries{Director: filepath.Join(dir, "glb-director"), Redirect: filepath.Join(dir, "glb-redirect"),
			Proxy: filepath.Join(dir, "glb-proxy"), Ctl: filepath.Join(dir, "glbctl"), Sim: filepath.Join(dir, "githubsim")}
		return m.Run()
	}())
}

// requirements skips (or, in CI, fails) without root and the tools.
func requirements(tb testing.TB, tools ...string) {
	tb.Helper()
	testenv.RequireRoot(tb)
	for _, b := range append([]string{"ip", "ethtool", "redis-server"}, tools...) {
		testenv.RequireBinary(tb, b)
	}
}

// startStack builds the whole stack for one test, with a short health
// check interval so that health changes are seen quickly.
func startStack(tb testing.TB, mod func(*stack.Config)) *stack.Stack {
	tb.Helper()
	cfg := stack.Config{Dir: tb.TempDir(), Bin: bins, HealthInterval: 500 * time.Millisecond,
		Progress: func(step string, took time.Duration) { tb.Logf("stack: %s (%v)", step, took.Round(time.Millisecond)) }}
	if mod != nil {
		mod(&cfg)
	}
	return stack.Start(tb, cfg)
}
