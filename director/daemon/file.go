package daemon

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/glb-project/glb/director/table"
)

// FileState reads the config from a JSON file (DESIGN.md §4) and notices
// when it changes by polling: cheap (one stat per interval), and it works
// for every way of replacing a file (in place, rename, symlink swap).
type FileState struct {
	Path     string
	Interval time.Duration // between checks; zero means 1s

	mu     sync.Mutex
	loaded [sha256.Size]byte // content the last Load read
	ok     bool              // whether loaded is set
}

// Load reads and validates the file.
func (f *FileState) Load(ctx context.Context) (*table.Config, error) {
	data, err := os.ReadFile(f.Path)
	sum := contentSum(data, err)
	f.mu.Lock()
	f.loaded, f.ok = sum, true
	f.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("read forwarding table config: %w", err)
	}
	cfg, err := table.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	return cfg, nil
}

// contentSum fingerprints a read: the content, or the error (so a file
// that goes missing is one change, not one per poll).
func contentSum(data []byte, err error) [sha256.Size]byte {
	if err != nil {
		return sha256.Sum256([]byte("error: " + err.Error()))
	}
	return sha256.Sum256(data)
}

// Watch polls the file until ctx is done. A change of its metadata
// (mtime, size, inode) leads to a read; a changed content leads to a send
// on changed.
func (f *FileState) Watch(ctx context.Context, changed chan<- struct{}) {
	interval := f.Interval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var last fileMeta
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if f.changed(&last) {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}

// changed reports whether the file's content differs from what Load last
// read. It reads the file only if its metadata differs from *last, and
// updates *last.
func (f *FileState) changed(last *fileMeta) bool {
	meta := statFile(f.Path)
	if meta == *last {
		return false
	}
	*last = meta
	data, err := os.ReadFile(f.Path)
	sum := contentSum(data, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.ok || sum != f.loaded
}

type fileMeta struct {
	mtime time.Time
	size  int64
	ino   uint64
	err   string
}

func statFile(path string) fileMeta {
	st, err := os.Stat(path)
	if err != nil {
		return fileMeta{err: err.Error()}
	}
	m := fileMeta{mtime: st.ModTime(), size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		m.ino = sys.Ino
	}
	return m
}
