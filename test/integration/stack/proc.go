package stack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/glb-project/glb/internal/nstest"
)

// Proc is a long-lived process of the stack, started inside a namespace,
// its output appended to LogDir/NAME.log.
type Proc struct {
	Name    string
	LogPath string
	PID     int
	done    chan struct{}
	err     error
	proc    *os.Process
}

// start runs bin inside ns. The process is stopped (SIGTERM, then SIGKILL)
// by tb's cleanups; when the run failed, the end of its log is shown.
func (s *Stack) start(ns *nstest.NS, name string, env []string, bin string, args ...string) *Proc {
	tb := s.tb
	tb.Helper()
	p := &Proc{Name: name, LogPath: filepath.Join(s.LogDir, name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatalf("stack: log file: %v", err)
	}
	cmd := ns.Command(context.Background(), bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group: a Ctrl-C at the demo's terminal reaches the
	// demo only, which then stops everything in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("stack: start %s in %s: %v", name, ns.Name, err)
	}
	p.PID = cmd.Process.Pid
	p.proc = cmd.Process
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("last lines of %s:\n%s", p.LogPath, p.Tail(30))
		}
	})
	return p
}

// Running reports whether the process is still running.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits up to 15 seconds before SIGKILL. It returns
// the exit error (nil for a clean exit).
func (p *Proc) Stop() error {
	if !p.Running() {
		return p.err
	}
	_ = p.proc.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.proc.Kill()
		<-p.done
	}
	return p.err
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitProc polls cond until it holds, failing tb at the deadline or as
// soon as p exits (with the end of its log).
func (s *Stack) waitProc(p *Proc, timeout time.Duration, what string, cond func() bool) {
	s.tb.Helper()
	nstest.WaitFor(s.tb, timeout, what+" (log: "+p.LogPath+")", func() bool {
		if !p.Running() {
			s.tb.Fatalf("%s exited while waiting for %s: %v\n%s", p.Name, what, p.err, p.Tail(30))
		}
		return cond()
	})
}
