package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, durable := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "state.json")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Write(path, []byte("new"), 0o640, durable); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != "new" {
			t.Fatalf("durable %v: read %q, %v", durable, b, err)
		}
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
			t.Errorf("durable %v: mode %v, want 0640", durable, st.Mode().Perm())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("durable %v: %d files left in the directory, want 1", durable, len(entries))
		}
	}
	// The rename fails (path is a directory that holds a file): an error,
	// and the temporary file is gone.
	dir := t.TempDir()
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(busy, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(busy, []byte("x"), 0o644, false); err == nil {
		t.Error("replacing a non-empty directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries left after a failed rename, want only the directory", len(entries))
	}
	// A directory that does not exist: an error, and nothing written.
	if err := Write(filepath.Join(t.TempDir(), "no", "such"), []byte("x"), 0o644, true); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
