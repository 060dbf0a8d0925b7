package clients

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"
)

// File feeds a Registry from a YAML file. A file that fails to load is
// reported once (by the error of Load or Check) and the registry keeps its
// last good set. File does not log: its caller decides where errors go.
type File struct {
	Path     string
	Registry *Registry
	// OnLoad, if set, is called after every load attempt that found new
	// content (or a new failure), with its error (nil on success), for
	// metrics and logs.
	OnLoad func(err error)

	mu    sync.Mutex
	stamp fileStamp
	sum   [sha256.Size]byte
	ok    bool // sum is the content of the registry in use
	gone  bool // the last attempt could not stat the file
	bad   bool // the last attempt failed
}

type fileStamp struct {
	mod  time.Time
	size int64
	mode fs.FileMode
	sys  any
}

// Load reads and applies the file now, whether or not it changed (SIGHUP).
func (f *File) Load() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load(true)
}

// Check reloads the file if it changed since the last attempt
// (modification time, size, mode, inode or content). It returns an error
// only for a new failure: a broken or missing file is reported once, not
// on every poll, and read again when it changes.
func (f *File) Check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load(false)
}

func (f *File) load(force bool) error {
	st, err := os.Stat(f.Path)
	if err != nil {
		if f.gone && !force {
			return nil
		}
		// Forget the stamp, so the file is read when it comes back.
		f.gone, f.stamp = true, fileStamp{}
		return f.done(fmt.Errorf("load clients: %w", err))
	}
	f.gone = false
	stamp := fileStamp{mod: st.ModTime(), size: st.Size(), mode: st.Mode(), sys: statID(st)}
	if !force && stamp == f.stamp {
		return nil
	}
	// From here on this version is reported once: a failure is read again
	// on the next change (a chmod included).
	f.stamp = stamp
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return f.done(fmt.Errorf("load clients: %w", err))
	}
	sum := sha256.Sum256(data)
	if !force && f.ok && !f.bad && sum == f.sum {
		return nil
	}
	set, err := Parse(data)
	if err != nil {
		return f.done(fmt.Errorf("load clients from %s: %w", f.Path, err))
	}
	f.Registry.Replace(set)
	f.sum, f.ok = sum, true
	return f.done(nil)
}

func (f *File) done(err error) error {
	f.bad = err != nil
	if f.OnLoad != nil {
		f.OnLoad(err)
	}
	return err
}

// statID identifies the file behind a path, so a replacement by rename is
// seen even when it keeps size and modification time.
func statID(st os.FileInfo) any {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return [2]uint64{uint64(s.Dev), s.Ino}
	}
	return nil
}
