package bpffs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glb-project/glb/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestEnsure(t *testing.T) {
	if err := Ensure(filepath.Join(t.TempDir(), "glb")); err == nil || !strings.Contains(err.Error(), "not on a BPF filesystem") {
		t.Errorf("a tmpfs directory: %v", err)
	}
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		testenv.Unavailable(t, "mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	sub := filepath.Join(dir, "glb", "sub")
	if err := Ensure(sub); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sub); err != nil || !st.IsDir() {
		t.Errorf("directory not created: %v", err)
	}
}
