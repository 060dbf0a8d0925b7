// Package bpffstest gives a test its own BPF filesystem, so the pins it
// makes never meet the host's or another test's.
package bpffstest

import (
	"errors"
	"testing"

	"github.com/glb-project/glb/internal/testenv"
	"golang.org/x/sys/unix"
)

// Mount mounts a BPF filesystem on a new temporary directory and returns
// the directory. It is unmounted, with everything pinned in it, when the
// test ends. Without root the test skips or fails as testenv decides.
func Mount(tb testing.TB) string {
	tb.Helper()
	testenv.RequireRoot(tb)
	dir := tb.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		testenv.Unavailable(tb, "mount bpffs: %v", err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			tb.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	return dir
}
