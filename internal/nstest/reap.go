package nstest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// claimDir holds one file per live run, named for its prefix and holding
// its pid. A run killed before its cleanups ran (a CI timeout, ^C twice)
// leaves its file behind; the next run reaps what that prefix created.
const claimDir = "/run/glb-nstest"

var claimOnce sync.Once

// claim records this run's prefix and reaps the namespaces, root-namespace
// links and bpffs pins of runs whose process is gone. It runs once per
// process, before the first object is created, and never fails a test:
// reaping is best effort, and a leftover only costs a name.
func claim(tb TB) {
	claimOnce.Do(func() {
		if err := os.MkdirAll(claimDir, 0o755); err != nil {
			return
		}
		reapDead(tb)
		_ = os.WriteFile(filepath.Join(claimDir, runPrefix), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	})
}

// reapDead removes what every run whose process is gone left behind.
func reapDead(tb TB) {
	entries, _ := os.ReadDir(claimDir)
	for _, e := range entries {
		prefix := e.Name()
		if prefix == runPrefix || !validPrefix(prefix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(claimDir, prefix))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || alive(pid) {
			continue
		}
		if n := reap(prefix); n > 0 {
			tb.Logf("nstest: removed %d objects left by killed run %s (pid %d)", n, prefix, pid)
		}
		_ = os.Remove(filepath.Join(claimDir, prefix))
	}
}

// validPrefix reports whether s has the shape newRunPrefix makes.
func validPrefix(s string) bool {
	if len(s) != 5 || s[0] != 'g' {
		return false
	}
	for _, c := range s[1:] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// owned reports whether name was made by Name for this prefix: the prefix
// followed by the counter's digits.
func owned(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	return ok && rest != "" && rest[0] >= '0' && rest[0] <= '9'
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// reap deletes what a dead run with this prefix left and returns how many
// objects it removed.
func reap(prefix string) int {
	n := 0
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && owned(f[0], prefix) && exec.Command("ip", "netns", "del", f[0]).Run() == nil {
				n++
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			// "7: name@peer: <…>" or "7: name: <…>"
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if owned(name, prefix) && exec.Command("ip", "link", "del", name).Run() == nil {
				n++
			}
		}
	}
	pins, _ := filepath.Glob(filepath.Join("/sys/fs/bpf", prefix+"*"))
	for _, p := range pins {
		if owned(filepath.Base(p), prefix) && os.RemoveAll(p) == nil {
			n++
		}
	}
	return n
}
