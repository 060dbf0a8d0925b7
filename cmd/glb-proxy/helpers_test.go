package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/syncbuf"
)

// running is glb-proxy's run() serving in-process.
type running struct {
	t      *testing.T
	logs   *syncbuf.Buffer
	hup    chan os.Signal
	done   chan error
	cancel context.CancelFunc
	addr   string // the main listener, once it is up
}

// startRun calls run with --config cfg and waits until it listens. The
// proxy is stopped when the test ends.
func startRun(t *testing.T, cfg string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, logs: &syncbuf.Buffer{}, hup: make(chan os.Signal, 1), done: make(chan error, 1), cancel: cancel}
	go func() { r.done <- run(ctx, []string{"--config", cfg}, nil, r.logs, r.logs, r.hup) }()
	t.Cleanup(func() { r.stop() })
	nstest.WaitFor(t, 20*time.Second, "glb-proxy to listen", func() bool {
		r.exited()
		for _, l := range r.lines(`"msg":"glb-proxy listening"`) {
			var v struct{ Addr string }
			if json.Unmarshal([]byte(l), &v) == nil && v.Addr != "" {
				r.addr = v.Addr
				return true
			}
		}
		return false
	})
	return r
}

// exited fails the test if run has returned.
func (r *running) exited() {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		r.t.Fatalf("glb-proxy exited: %v\n%s", err, r.logs.String())
	default:
	}
}

// lines returns the log lines that contain s.
func (r *running) lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(r.logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// sighup delivers SIGHUP to run.
func (r *running) sighup() { r.hup <- syscall.SIGHUP }

// stop cancels run (SIGTERM) and returns its error.
func (r *running) stop() error {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(40 * time.Second):
		r.t.Fatalf("glb-proxy did not stop\n%s", r.logs.String())
		return nil
	}
}
