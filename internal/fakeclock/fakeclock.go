// Package fakeclock is a settable clock for tests: code under test takes a
// Now func, and the test moves time forward with Advance instead of
// sleeping.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a goroutine-safe clock that only moves when told to.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock reading start.
func New(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
