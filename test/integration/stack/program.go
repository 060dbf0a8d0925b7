package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

var bgCtx = context.Background()

func writeFileAtomic(path string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Program is an nstest.TB for a program (the demo) that builds the stack
// outside a test. Fatalf panics with a *Failure, which Run turns into an
// error; Cleanup functions run in reverse order by Close.
type Program struct {
	// Log receives Logf lines; nil discards them.
	Log func(format string, args ...any)

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// Failure is the panic value of Program.Fatalf.
type Failure struct{ Msg string }

func (f *Failure) Error() string { return f.Msg }

// Helper does nothing; it is there for nstest.TB.
func (p *Program) Helper() {}

// Fatalf marks the program failed and stops the current goroutine's work
// by panicking with a *Failure (see Run).
func (p *Program) Fatalf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	panic(&Failure{Msg: fmt.Sprintf(format, args...)})
}

// Logf passes a line to Log.
func (p *Program) Logf(format string, args ...any) {
	if p.Log != nil {
		p.Log(format, args...)
	}
}

// Cleanup registers fn to run at Close.
func (p *Program) Cleanup(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, fn)
}

// Failed reports whether Fatalf was called.
func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Run calls fn and returns the message of a Fatalf inside it as an error.
func (p *Program) Run(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(*Failure)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	fn()
	return nil
}

// Close runs the cleanups, last registered first. A cleanup that calls
// Fatalf is logged and the others still run.
func (p *Program) Close() {
	for {
		p.mu.Lock()
		n := len(p.cleanups)
		if n == 0 {
			p.mu.Unlock()
			return
		}
		fn := p.cleanups[n-1]
		p.cleanups = p.cleanups[:n-1]
		p.mu.Unlock()
		if err := p.Run(fn); err != nil {
			p.Logf("cleanup: %v", err)
		}
	}
}
