// Package testenv decides whether tests that need root, kernel features or
// Debian tools may run. Outside CI such tests skip with a message; with
// GLB_REQUIRE_ROOT_TESTS=1 (set by .ci/run) a missing capability fails the
// run instead, so CI can never pass by skipping.
package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "GLB_REQUIRE_ROOT_TESTS"

// Required reports whether missing capabilities must fail the run.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Unavailable skips the test, or fails it when capabilities are required.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if Required() {
		tb.Fatalf("required capability missing ("+RequireEnv+"=1): "+format, args...)
	}
	tb.Skipf("skipping: "+format+" (set "+RequireEnv+"=1 to make this fail)", args...)
}

// RequireRoot skips or fails the test unless it runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Unavailable(tb, "test needs root (run sudo make test)")
	}
}

// RequireBinary returns the path of an executable, or skips or fails the
// test when it is not installed (make deps installs them all).
func RequireBinary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(tb, "%s is not installed (run sudo make deps)", name)
	}
	return p
}

// BuildBinary compiles the main package at pkg (a path relative to the
// module root, like "./cmd/glb-proxy") into a temporary directory that is
// removed when the test ends, and returns the executable's path. The Go
// build cache makes repeated builds cheap.
func BuildBinary(tb testing.TB, pkg string) string {
	tb.Helper()
	root, err := ModuleRoot()
	if err != nil {
		tb.Fatalf("build %s: %v", pkg, err)
	}
	out := filepath.Join(tb.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// ModuleRoot returns the directory holding go.mod, searching upwards from
// the working directory (a test's working directory is its package folder).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// RuleLabelValues returns every value a Prometheus rules file (a path
// relative to the module root) matches for label on metric, as in
// metric{label="value"}. Tests use it to check that alerts name label
// values the code really exports. It fails the test when there are none.
func RuleLabelValues(tb testing.TB, file, metric, label string) []string {
	tb.Helper()
	root, err := ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		tb.Fatal(err)
	}
	re := regexp.MustCompile(regexp.QuoteMeta(metric) + `\{` + regexp.QuoteMeta(label) + `="([^"]+)"\}`)
	var vals []string
	for _, m := range re.FindAllSubmatch(rules, -1) {
		vals = append(vals, string(m[1]))
	}
	if len(vals) == 0 {
		tb.Fatalf("%s: no rule matches %s{%s=...}", file, metric, label)
	}
	return vals
}
