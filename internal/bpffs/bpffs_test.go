package bpffs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glb-project/glb/internal/bpffs/bpffstest"
)

func TestEnsure(t *testing.T) {
	if err := Ensure(filepath.Join(t.TempDir(), "glb")); err == nil || !strings.Contains(err.Error(), "not on a BPF filesystem") {
		t.Errorf("a tmpfs directory: %v", err)
	}
	dir := bpffstest.Mount(t)
	sub := filepath.Join(dir, "glb", "sub")
	if err := Ensure(sub); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sub); err != nil || !st.IsDir() {
		t.Errorf("directory not created: %v", err)
	}
}
