package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate from cert/key files and reloads it
// when either file changes (checked at most once a second on handshakes,
// and by the watch loop). A broken pair is reported and the last good one
// stays in service.
type certReloader struct {
	log   *slog.Logger
	now   func() time.Time
	count func(error)

	mu        sync.Mutex
	cert, key string
	current   *tls.Certificate
	stamp     [2]time.Time
	sizes     [2]int64
	checked   time.Time
}

func (c *certReloader) setFiles(cert, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cert, c.key = cert, key
}

// load reads the pair now.
func (c *certReloader) load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loadLocked()
}

func (c *certReloader) loadLocked() error {
	var stamp [2]time.Time
	var sizes [2]int64
	for i, f := range []string{c.cert, c.key} {
		st, err := os.Stat(f)
		if err != nil {
			return c.fail(fmt.Errorf("load tls certificate: %w", err))
		}
		stamp[i], sizes[i] = st.ModTime(), st.Size()
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		c.stamp, c.sizes = stamp, sizes // report this version once
		return c.fail(fmt.Errorf("load tls certificate %s: %w", c.cert, err))
	}
	c.current, c.stamp, c.sizes = &pair, stamp, sizes
	c.count(nil)
	c.log.Info("tls certificate loaded", "cert_file", c.cert)
	return nil
}

func (c *certReloader) fail(err error) error {
	c.count(err)
	return err
}

// check reloads the pair if a file changed, and logs a failure: each
// broken version once. (load, for SIGHUP, returns its error instead.)
func (c *certReloader) check() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checked = c.now()
	for i, f := range []string{c.cert, c.key} {
		st, err := os.Stat(f)
		if err != nil {
			return // reported when it comes back changed
		}
		if !st.ModTime().Equal(c.stamp[i]) || st.Size() != c.sizes[i] {
			if err := c.loadLocked(); err != nil {
				c.log.Error("tls certificate not loaded; keeping the last good one", "err", err)
			}
			return
		}
	}
}

// get is tls.Config.GetCertificate.
func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	stale := c.now().Sub(c.checked) >= time.Second
	c.mu.Unlock()
	if stale {
		c.check()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current, nil
}
