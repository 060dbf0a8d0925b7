package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/glb-project/glb/consul"
	"github.com/glb-project/glb/proxy/clients"
	"github.com/glb-project/glb/proxy/config"
)

// consulReadTimeout bounds one read of the registry from Consul at start
// and on SIGHUP.
const consulReadTimeout = 10 * time.Second

// The client registry comes from one source: a file (clients_file,
// polled, clients.File) or a Consul KV key (clients_consul, watched with
// blocking queries). Both report the same way: every load attempt with
// new content is counted in glb_proxy_clients_reloads_total{result}, a
// success is logged as "client registry loaded", and a failure on a poll
// or watch as "client registry not loaded; keeping the last good one";
// the registry in use stays until a good one replaces it.

// openClients loads the registry from the configured source, or fails:
// the proxy does not start without one.
func (p *Proxy) openClients(cfg *config.Config) error {
	if cfg.ClientsConsul == "" {
		p.file = p.clientsFile(cfg.ClientsFile)
		return p.file.Load()
	}
	addr, prefix, err := consul.ParseURL(cfg.ClientsConsul)
	if err != nil {
		return fmt.Errorf("clients_consul: %w", err)
	}
	kv, err := consul.NewKVStore(addr, prefix, consul.Options{Log: p.log.With("component", "consul")})
	if err != nil {
		return fmt.Errorf("clients_consul: %w", err)
	}
	p.kv = &consulClients{store: kv, key: kv.String() + "/" + consul.ClientsKey}
	return p.kv.read(p, true)
}

// clientsFile is the registry source for a file. Its errors are logged
// by whoever called Load or Check; success is logged here.
func (p *Proxy) clientsFile(path string) *clients.File {
	return &clients.File{Path: path, Registry: p.registry, OnLoad: func(err error) {
		p.clientsLoaded(err, "file", path)
	}}
}

// clientsLoaded counts a registry load attempt and logs a success; attrs
// name the source.
func (p *Proxy) clientsLoaded(err error, attrs ...any) {
	if err != nil {
		p.metrics.reloads.WithLabelValues("error").Inc()
		return
	}
	p.metrics.reloads.WithLabelValues("ok").Inc()
	n := 0
	s := p.registry.Current()
	if s != nil {
		n = len(s.Clients)
	}
	p.log.Info("client registry loaded", append(attrs, "clients", n)...)
	if s != nil {
		for _, w := range s.Warnings() {
			p.log.Warn("client scope reaches further than it reads", append(attrs, "warning", w)...)
		}
	}
}

// consulClients follows the registry at PREFIX/proxy/clients in Consul KV.
type consulClients struct {
	store *consul.KVStore
	key   string // consul://HOST:PORT/PREFIX/proxy/clients, for logs and errors

	mu      sync.Mutex
	seen    bool // sum and missing describe the last value applied or reported
	sum     [sha256.Size]byte
	missing bool
}

// read fetches the registry now (start, SIGHUP) and applies it.
func (c *consulClients) read(p *Proxy, force bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), consulReadTimeout)
	defer cancel()
	data, _, err := c.store.Clients(ctx)
	if err != nil {
		err = fmt.Errorf("load clients: %w", err)
		p.clientsLoaded(err, "consul", c.key)
		return err
	}
	return c.apply(p, data, force)
}

// watch applies every change of the key until ctx ends, and logs values
// that do not load. Read errors are logged (and retried) by the store.
func (c *consulClients) watch(ctx context.Context, p *Proxy) {
	c.store.WatchClients(ctx, func(data []byte) {
		if err := c.apply(p, data, false); err != nil {
			p.log.Error("client registry not loaded; keeping the last good one", "consul", c.key, "err", err)
		}
	})
}

// apply parses data (nil: the key does not exist) and swaps it in. Unless
// forced, a value already applied or reported is ignored: the watch
// delivers the value read at start once more, and a bad value is
// reported once.
func (c *consulClients) apply(p *Proxy, data []byte, force bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum, missing := sha256.Sum256(data), data == nil
	if !force && c.seen && sum == c.sum && missing == c.missing {
		return nil
	}
	c.seen, c.sum, c.missing = true, sum, missing
	var err error
	if missing {
		err = fmt.Errorf("load clients: consul key %s does not exist: put the registry there (glb-proxy clients push --clients FILE --consul URL)", c.key)
	} else if set, perr := clients.Parse(data); perr != nil {
		err = fmt.Errorf("load clients from %s: %w", c.key, perr)
	} else {
		p.registry.Replace(set)
	}
	p.clientsLoaded(err, "consul", c.key)
	return err
}
