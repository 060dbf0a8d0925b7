package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/glb-project/glb/director/table"
	"github.com/hashicorp/consul/api"
)

// KVStore keeps the state under a Consul KV prefix (see the key layout in
// layout.go and docs/operations.md). It talks to Consul through
// hashicorp/consul/api only.
//
// Watch is a loop of blocking queries over the prefix (?recurse&index=):
// it resets the index when it goes backwards and keeps it at least 1,
// compares each answer with the state in use before acting (a return is
// not a change), rate-limits rounds (a burst of two, then one per
// MinWatchInterval), backs off with jitter on errors and keeps the last
// good state while Consul is unreachable, exporting that it is stale.
type KVStore struct {
	client  *api.Client
	addr    string
	prefix  string
	opts    Options
	tr      *tracker
	refresh chan struct{}
}

var _ Store = (*KVStore)(nil)

// ParseURL splits consul://HOST:PORT/PREFIX into the agent address and the
// key prefix (without slashes at either end).
func ParseURL(s string) (addr, prefix string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("state %q: %w", s, err)
	}
	if u.Scheme != "consul" {
		return "", "", fmt.Errorf("state %q: the scheme must be consul:// (or give a file path)", s)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("state %q: no host: use consul://HOST:8500/PREFIX", s)
	}
	addr = u.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(u.Hostname(), "8500")
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix == "" || path.Clean(prefix) != prefix || strings.HasPrefix(prefix, ".") {
		return "", "", fmt.Errorf("state %q: give a clean key prefix, as in consul://HOST:8500/glb", s)
	}
	if u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return "", "", fmt.Errorf("state %q: only consul://HOST:PORT/PREFIX is understood (the token comes from $CONSUL_HTTP_TOKEN)", s)
	}
	return addr, prefix, nil
}

// NewKVStore returns a store for prefix on the Consul agent at addr
// (host:port). The usual CONSUL_* environment variables (token, TLS) apply,
// except CONSUL_HTTP_ADDR: addr wins.
func NewKVStore(addr, prefix string, opts Options) (*KVStore, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", addr, err)
	}
	name := "consul://" + addr + "/" + prefix
	return &KVStore{client: client, addr: addr, prefix: prefix, opts: opts, tr: newTracker(name, "consul", &opts), refresh: make(chan struct{}, 1)}, nil
}

func (s *KVStore) String() string { return "consul://" + s.addr + "/" + s.prefix }

// Client is the underlying Consul client.
func (s *KVStore) Client() *api.Client { return s.client }

// Close implements Store.
func (s *KVStore) Close() error { return nil }

// Status implements Store.
func (s *KVStore) Status() Status { return s.tr.snapshot() }

// Refresh implements Store.
func (s *KVStore) Refresh() {
	select {
	case s.refresh <- struct{}{}:
	default:
	}
}

func (s *KVStore) read(ctx context.Context, q *api.QueryOptions) (*kvState, *api.QueryMeta, error) {
	pairs, meta, err := s.client.KV().List(s.prefix+"/", q.WithContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", s, err)
	}
	st, err := decodeKV(s.prefix, pairs)
	if err != nil {
		return nil, meta, fmt.Errorf("%s: %w", s, err)
	}
	return st, meta, nil
}

// Load implements Store.
func (s *KVStore) Load(ctx context.Context) (*table.Config, error) {
	st, _, err := s.read(ctx, &api.QueryOptions{RequireConsistent: true})
	if err != nil {
		return nil, err
	}
	return st.cfg, nil
}

// Update implements Store. The writes are one Consul transaction of
// check-and-set operations, so either all of them land or none.
func (s *KVStore) Update(ctx context.Context, change func(*table.Config) error) (*table.Config, *table.Config, error) {
	bo := backoff{min: 20 * time.Millisecond, max: 500 * time.Millisecond}
	for range 5 {
		old, _, err := s.read(ctx, &api.QueryOptions{RequireConsistent: true})
		if err != nil {
			return nil, nil, err
		}
		before := old.cfg.Clone()
		after := old.cfg.Clone()
		if err := change(after); err != nil {
			return before, nil, err
		}
		if err := after.Validate(); err != nil {
			return before, nil, fmt.Errorf("the changed state does not validate: %w", err)
		}
		ops, err := plan(s.prefix, old, after, s.opts.now())
		if err != nil {
			return before, nil, err
		}
		if len(ops) == 0 {
			return before, after, nil
		}
		ok, resp, _, err := s.client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return before, nil, fmt.Errorf("write %s: %w", s, err)
		}
		if ok {
			return before, after, nil
		}
		var what []string
		if resp != nil {
			for _, e := range resp.Errors {
				what = append(what, e.What)
			}
		}
		s.opts.log().Warn("state changed while this update was being written; retrying", "state", s.String(), "errors", strings.Join(what, "; "))
		if !sleep(ctx, bo.next(), nil) {
			return before, nil, ctx.Err()
		}
	}
	return nil, nil, ErrConflict
}

// Watch implements Store.
func (s *KVStore) Watch(ctx context.Context, apply func(*table.Config)) error {
	wait := orDefault(s.opts.WaitTime, time.Minute)
	bo := backoff{min: orDefault(s.opts.MinBackoff, 250*time.Millisecond), max: orDefault(s.opts.MaxBackoff, 30*time.Second)}
	lim := limiter{every: orDefault(s.opts.MinWatchInterval, time.Second), burst: 2}
	var index uint64
	decoded := false // the answer at index was decoded successfully
	for ctx.Err() == nil {
		if !lim.wait(ctx) {
			break
		}
		qctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(ctx, cancel)
		go func() {
			select {
			case <-s.refresh:
				cancel() // re-query now
			case <-qctx.Done():
			}
		}()
		pairs, meta, err := s.client.KV().List(s.prefix+"/", (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(qctx))
		refreshed := qctx.Err() != nil && ctx.Err() == nil
		cancel()
		stop()
		if ctx.Err() != nil {
			break
		}
		if refreshed {
			index, decoded = 0, false
			continue
		}
		if err != nil {
			// The next query does not block, so a recovery is seen at once.
			index = 0
			s.tr.fail("read", fmt.Errorf("read %s: %w", s, err))
			if !sleep(ctx, bo.next(), s.refresh) {
				break
			}
			continue
		}
		bo.reset()
		last := meta.LastIndex
		if last < index {
			// The index went backwards (a restore, a reaped tombstone):
			// start over from this answer.
			s.opts.log().Warn("consul index went backwards; restarting the watch", "state", s.String(), "was", index, "now", last)
			if s.tr.m != nil {
				s.tr.m.resets.Inc()
			}
			decoded = false
		}
		if last == index && decoded && !s.tr.snapshot().Stale {
			s.tr.ok(index) // a timeout or an early return: nothing changed
			continue
		}
		index = max(last, 1) // never block on 0: see Consul's blocking-query notes
		st, err := decodeKV(s.prefix, pairs)
		if err != nil {
			decoded = false
			s.tr.fail("decode", fmt.Errorf("%s: %w", s, err))
			continue // wait for the next change, with the last good state in use
		}
		decoded = true
		s.tr.ok(last)
		if s.tr.m != nil {
			s.tr.m.index.Set(float64(last))
		}
		s.tr.offer(st.cfg, apply)
	}
	return nil
}

// PublishHealth implements Store: the report goes to PREFIX/health/SOURCE.
func (s *KVStore) PublishHealth(ctx context.Context, r HealthReport) error {
	if err := validSource(r.Source); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.client.KV().Put(&api.KVPair{Key: s.prefix + "/" + healthDir + r.Source, Value: b}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("publish health to %s: %w", s, err)
	}
	return nil
}

// HealthReports implements Store.
func (s *KVStore) HealthReports(ctx context.Context) ([]HealthReport, error) {
	pairs, _, err := s.client.KV().List(s.prefix+"/"+healthDir, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read health reports from %s: %w", s, err)
	}
	var out []HealthReport
	for _, p := range pairs {
		r, err := DecodeHealthReport(p.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Key, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out, nil
}

// Clients returns glb-proxy's client registry (PREFIX/proxy/clients) and
// its index; nil when the key does not exist.
func (s *KVStore) Clients(ctx context.Context) ([]byte, uint64, error) {
	p, meta, err := s.client.KV().Get(s.prefix+"/"+ClientsKey, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("read client registry from %s: %w", s, err)
	}
	if p == nil {
		return nil, meta.LastIndex, nil
	}
	return p.Value, meta.LastIndex, nil
}

// PutClients writes glb-proxy's client registry.
func (s *KVStore) PutClients(ctx context.Context, data []byte) error {
	_, err := s.client.KV().Put(&api.KVPair{Key: s.prefix + "/" + ClientsKey, Value: data}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("write client registry to %s: %w", s, err)
	}
	return nil
}

// WatchClients calls apply with the client registry when it is first read
// and whenever its content changes, until ctx ends (nil data: the key does
// not exist). Errors are retried with backoff; the caller keeps the last
// registry it was given.
func (s *KVStore) WatchClients(ctx context.Context, apply func(data []byte)) error {
	key := s.prefix + "/" + ClientsKey
	wait := orDefault(s.opts.WaitTime, time.Minute)
	bo := backoff{min: orDefault(s.opts.MinBackoff, 250*time.Millisecond), max: orDefault(s.opts.MaxBackoff, 30*time.Second)}
	lim := limiter{every: orDefault(s.opts.MinWatchInterval, time.Second), burst: 2}
	var index uint64
	var last []byte
	seen := false
	for ctx.Err() == nil && lim.wait(ctx) {
		p, meta, err := s.client.KV().Get(key, (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			s.opts.log().Warn("client registry read failed; keeping the last one", "key", key, "err", err)
			if !sleep(ctx, bo.next(), nil) {
				break
			}
			continue
		}
		bo.reset()
		// Follow the index even when it goes backwards (that resets the
		// watch), and never block on 0.
		index = max(meta.LastIndex, 1)
		var data []byte
		if p != nil {
			data = p.Value
		}
		if seen && string(data) == string(last) && (data == nil) == (last == nil) {
			continue
		}
		seen, last = true, data
		apply(data)
	}
	return nil
}

// ErrNoConsul is returned by helpers that need a Consul store when given a
// file.
var ErrNoConsul = errors.New("this needs a Consul state (consul://HOST:PORT/PREFIX)")
