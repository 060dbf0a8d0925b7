// Package nstest builds throw-away network namespaces, veth pairs and
// processes for tests that need a real kernel data path. Every object it
// creates carries a per-run prefix and is removed by tb.Cleanup, even when
// the test fails, so two runs never collide and nothing is left behind.
package nstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/syncbuf"
	"github.com/glb-project/glb/internal/testenv"
	"github.com/vishvananda/netns"
)

var (
	runPrefix = newRunPrefix()
	counter   atomic.Uint32
)

func newRunPrefix() string {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "g" + hex.EncodeToString(b[:])
}

// Name returns a short unique name (at most 15 bytes, so it fits an
// interface name) made of the run prefix, a counter and tag (truncated).
func Name(tag string) string {
	n := fmt.Sprintf("%s%d%s", runPrefix, counter.Add(1), tag)
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// TB is the part of testing.TB that nstest needs. *testing.T and
// *testing.B satisfy it; so can a program, such as the demo, that builds
// the same topologies outside a test.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
}

// NS is a named network namespace created for one test.
type NS struct {
	Name string
}

// New creates a namespace (visible to `ip netns`) with its loopback up. It
// requires root; without it the test skips or fails as testenv decides.
func New(tb TB, tag string) *NS {
	tb.Helper()
	if t, ok := tb.(testing.TB); ok {
		testenv.RequireRoot(t)
		testenv.RequireBinary(t, "ip")
	}
	return NewNamed(tb, Name(tag))
}

// NewNamed creates a namespace with exactly this name (no run prefix), for
// programs like the demo whose namespaces people type by hand. The caller
// makes sure the name is free.
func NewNamed(tb TB, name string) *NS {
	tb.Helper()
	claim(tb)
	ns := &NS{Name: name}
	run(tb, "ip", "netns", "add", ns.Name)
	tb.Cleanup(func() {
		// Deleting the namespace also deletes the veth ends inside it.
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			tb.Logf("cleanup: ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.IP(tb, "link", "set", "lo", "up")
	return ns
}

// IP runs `ip ARGS…` inside the namespace and fails the test on error.
func (ns *NS) IP(tb TB, args ...string) string {
	tb.Helper()
	return run(tb, "ip", append([]string{"-n", ns.Name}, args...)...)
}

// Exec runs a command inside the namespace and fails the test on error.
func (ns *NS) Exec(tb TB, name string, args ...string) string {
	tb.Helper()
	return run(tb, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Command returns an *exec.Cmd that will run inside the namespace.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Start runs a long-lived process inside the namespace. Its output goes to
// the test log when the test ends, and the process is stopped with SIGTERM
// (then SIGKILL after five seconds) by tb.Cleanup.
func (ns *NS) Start(tb TB, name string, args ...string) *Process {
	tb.Helper()
	cmd := ns.Command(context.Background(), name, args...)
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &p.out
	cmd.Stderr = &p.out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s in %s: %v", name, ns.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.Stop()
		_, isTest := tb.(testing.TB)
		if tb.Failed() || isTest && testing.Verbose() {
			tb.Logf("output of %s in %s:\n%s", name, ns.Name, p.Output())
		}
	})
	return p
}

// Do runs fn with the calling goroutine's OS thread switched into the
// namespace, then switches back. Use it for netlink and BPF attach calls,
// which act on the calling thread's namespace.
func (ns *NS) Do(tb TB, fn func() error) error {
	tb.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns.Name, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter netns %s: %w", ns.Name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// The thread is in the wrong namespace: never reuse it.
			panic(fmt.Sprintf("nstest: restore netns: %v", err))
		}
	}()
	return fn()
}

// Veth creates a veth pair with one end in a (named aName) and the other in
// b (named bName), both up. Either namespace may be nil for the root one.
func Veth(tb TB, a *NS, aName string, b *NS, bName string) {
	tb.Helper()
	claim(tb)
	tmpA, tmpB := Name("va"), Name("vb")
	run(tb, "ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	tb.Cleanup(func() { _ = exec.Command("ip", "link", "del", tmpA).Run() })
	move := func(ns *NS, tmp, name string) {
		if ns != nil {
			run(tb, "ip", "link", "set", tmp, "netns", ns.Name)
			ns.IP(tb, "link", "set", tmp, "name", name)
			ns.IP(tb, "link", "set", name, "up")
			return
		}
		run(tb, "ip", "link", "set", tmp, "name", name)
		run(tb, "ip", "link", "set", name, "up")
	}
	move(a, tmpA, aName)
	move(b, tmpB, bName)
}

// Process is a command started by NS.Start.
type Process struct {
	Cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan struct{}
	err  error
}

// Output returns everything the process has written so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error once Done is closed.
func (p *Process) Err() error { <-p.done; return p.err }

// Stop sends SIGTERM and waits up to five seconds before killing.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Kill stops the process at once with SIGKILL, as a crash would.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// WaitFor polls cond every few milliseconds until it returns true or the
// timeout passes, then fails the test with msg. It is how tests wait for
// something to happen without sleeping a fixed time.
func WaitFor(tb TB, timeout time.Duration, msg string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func run(tb TB, name string, args ...string) string {
	tb.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}
