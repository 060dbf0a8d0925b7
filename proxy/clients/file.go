package clients

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// File feeds a Registry from a YAML file. A file that fails to parse is
// reported and the registry keeps its last good set.
type File struct {
	Path     string
	Registry *Registry
	Log      *slog.Logger // nil: discard
	// OnLoad, if set, is called after every load attempt that found new
	// content, with its error (nil on success), for metrics.
	OnLoad func(err error)

	mu    sync.Mutex
	stamp fileStamp
	sum   [sha256.Size]byte
	ok    bool
}

type fileStamp struct {
	mod  time.Time
	size int64
	sys  any
}

func (f *File) log() *slog.Logger {
	if f.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Log
}

// Load reads and applies the file now, whether or not it changed (SIGHUP).
func (f *File) Load() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load(true)
}

func (f *File) load(force bool) error {
	st, err := os.Stat(f.Path)
	if err != nil {
		return f.done(fmt.Errorf("load clients: %w", err))
	}
	stamp := fileStamp{mod: st.ModTime(), size: st.Size(), sys: statID(st)}
	if !force && f.ok && stamp == f.stamp {
		return nil
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return f.done(fmt.Errorf("load clients: %w", err))
	}
	sum := sha256.Sum256(data)
	if !force && f.ok && sum == f.sum {
		f.stamp = stamp
		return nil
	}
	set, err := Parse(data)
	if err != nil {
		// Remember the stamp so a broken file is reported once, not on
		// every poll; the next edit is read again.
		f.stamp = stamp
		return f.done(fmt.Errorf("load clients from %s: %w", f.Path, err))
	}
	f.Registry.Replace(set)
	f.stamp, f.sum, f.ok = stamp, sum, true
	f.log().Info("client registry loaded", "file", f.Path, "clients", len(set.Clients))
	return f.done(nil)
}

func (f *File) done(err error) error {
	if err != nil {
		f.log().Error("client registry not loaded; keeping the last good one", "file", f.Path, "err", err)
	}
	if f.OnLoad != nil {
		f.OnLoad(err)
	}
	return err
}

// Check reloads the file if it changed since the last load (modification
// time, size, inode or content). Errors are reported through Log and
// OnLoad.
func (f *File) Check() {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.load(false)
}

// statID identifies the file behind a path, so a replacement by rename is
// seen even when it keeps size and modification time.
func statID(st os.FileInfo) any {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return [2]uint64{uint64(s.Dev), s.Ino}
	}
	return nil
}
