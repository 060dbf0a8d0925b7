package bpffs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Default is where the kernel's BPF filesystem is normally mounted.
const Default = "/sys/fs/bpf"

// Ensure makes sure dir can hold pinned objects: it must lie on a BPF
// filesystem. If dir is under /sys/fs/bpf and nothing is mounted there yet
// (a minimal host), Ensure mounts one, as systemd does on most
// distributions. It creates dir.
func Ensure(dir string) error {
	dir = filepath.Clean(dir)
	onBPF, err := onBPFFS(dir)
	if err != nil {
		return err
	}
	if !onBPF {
		if dir != Default && !strings.HasPrefix(dir, Default+"/") {
			return fmt.Errorf("%s is not on a BPF filesystem: mount one (mount -t bpf bpf DIR) or choose a directory under %s", dir, Default)
		}
		if err := unix.Mount("bpf", Default, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on %s: %w (mount it yourself: mount -t bpf bpf %s)", Default, err, Default)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

// onBPFFS reports whether the deepest existing ancestor of dir is on a BPF
// filesystem.
func onBPFFS(dir string) (bool, error) {
	for p := dir; ; p = filepath.Dir(p) {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			return st.Type == unix.BPF_FS_MAGIC, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || p == "/" {
			return false, fmt.Errorf("statfs %s: %w", p, err)
		}
	}
}
