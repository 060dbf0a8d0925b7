package consultest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul's documented limits.
const (
	DefaultWait  = 5 * time.Minute  // blocking query wait when ?wait is absent
	MaxWait      = 10 * time.Minute // longest ?wait honoured
	MaxValueSize = 512 * 1024       // largest KV value
	MaxTxnOps    = 128              // most operations in one transaction
	MinInterval  = time.Second      // shortest HTTP/TCP check interval
	ReapInterval = 30 * time.Second // how often critical services are reaped
)

// The single node this server pretends to be.
const (
	NodeName   = "consultest"
	NodeID     = "8e2d7bd2-6c3c-4f0e-9d0b-7a4f1c0de111"
	Datacenter = "dc1"
	leaderAddr = "127.0.0.1:8300"
)

// Server is an in-process Consul agent and server. The zero value is ready:
// call Start. Fields are read at Start.
type Server struct {
	// MinCheckInterval is the shortest interval at which HTTP and TCP
	// checks run; shorter intervals are raised to it, as Consul does.
	// Zero means MinInterval (1s). Tests may lower it.
	MinCheckInterval time.Duration
	// ReapInterval is how often services whose checks have been critical
	// for longer than DeregisterCriticalServiceAfter are deregistered.
	// Zero means ReapInterval (30s).
	ReapInterval time.Duration
	// Log receives a debug line per request; nil discards.
	Log *slog.Logger

	mu       sync.Mutex
	index    uint64 // the last "raft" index handed out
	kv       map[string]*kvEntry
	tombs    map[string]uint64 // deleted key → index of the delete
	kvIndex  uint64            // last index that touched the KV table
	services map[string]*service
	checks   map[string]*check
	catIndex uint64        // last index that touched services or checks
	notify   chan struct{} // closed and replaced on every write
	abandon  chan struct{} // closed and replaced by Wipe

	addr    string // the bound address, kept across restarts
	hs      *httptest.Server
	down    chan struct{} // closed when the server stops
	runCtx  context.Context
	stopRun context.CancelFunc
	runners sync.WaitGroup
	parked  atomic.Int32 // blocking queries waiting for a change (for tests)
	parks   atomic.Int64 // times a blocking query started to wait (for tests)
}

// New starts a server on a free loopback port and stops it when the test
// ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{}
	if err := s.Start(); err != nil {
		tb.Fatalf("start consultest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Start serves on a free loopback port the first time, and on the same
// address after a Stop, with the data the server had.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hs != nil {
		return errors.New("consultest: already running")
	}
	if s.kv == nil {
		s.reset(1)
	}
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.addr = ln.Addr().String()
	s.down = make(chan struct{})
	s.runCtx, s.stopRun = context.WithCancel(context.Background())
	hs := httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	s.hs = hs
	for _, c := range s.checks {
		s.startCheck(c)
	}
	s.runners.Add(1)
	go s.reaper(s.runCtx)
	return nil
}

// Stop takes the server down: open connections, blocking queries
// included, are cut, and checks stop running. The data stays for the next
// Start. Stop on a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	hs := s.hs
	if hs == nil {
		s.mu.Unlock()
		return
	}
	s.hs = nil
	close(s.down)
	s.stopRun()
	s.mu.Unlock()
	hs.CloseClientConnections()
	hs.Close()
	s.runners.Wait()
}

// Addr is the server's host:port, the same across restarts.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is the server's base URL, "http://127.0.0.1:PORT".
func (s *Server) URL() string { return "http://" + s.Addr() }

// Config returns a consul/api config that talks to this server.
func (s *Server) Config() *api.Config {
	c := api.DefaultNonPooledConfig()
	c.Address = s.Addr()
	c.Scheme = "http"
	c.Token = ""
	c.TLSConfig = api.TLSConfig{}
	return c
}

// Waiting is the number of blocking queries parked, waiting for a change:
// tests use it to act only once a client is waiting.
func (s *Server) Waiting() int { return int(s.parked.Load()) }

// Parks counts the times a blocking query started to wait, including the
// re-waits of a query woken by a write that did not change its answer:
// tests use it to see that a query went back to sleep.
func (s *Server) Parks() int64 { return s.parks.Load() }

// Index is the last index the server handed out.
func (s *Server) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// Wipe forgets every key, service and check and moves the index back to 1,
// as a Consul cluster restored from an old snapshot would: clients see
// X-Consul-Index go backwards, and blocking queries return at once.
func (s *Server) Wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.checks {
		if c.cancel != nil {
			c.cancel()
		}
	}
	s.reset(1)
	close(s.abandon)
	s.abandon = make(chan struct{})
	s.wake()
}

// reset empties the state; the node registration takes index 1.
func (s *Server) reset(index uint64) {
	s.index = index
	s.kv = map[string]*kvEntry{}
	s.tombs = map[string]uint64{}
	s.kvIndex = 0
	s.services = map[string]*service{}
	s.checks = map[string]*check{}
	s.catIndex = 1
	if s.notify == nil {
		s.notify = make(chan struct{})
		s.abandon = make(chan struct{})
	}
}

// next hands out a new index for a write. Callers hold s.mu.
func (s *Server) next() uint64 {
	s.index++
	return s.index
}

// wake ends the wait of every blocking query so it re-evaluates. Callers
// hold s.mu.
func (s *Server) wake() {
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// httpError is an error with the status Consul answers it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status, fmt.Sprintf(format, args...)}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.log().Debug("consultest request", "method", r.Method, "url", r.URL.String())
	if dc := r.URL.Query().Get("dc"); dc != "" && dc != Datacenter {
		writeError(w, errorf(http.StatusInternalServerError, "No path to datacenter"))
		return
	}
	for _, p := range []string{"filter", "ns", "partition", "peer"} {
		if r.URL.Query().Has(p) {
			writeError(w, errorf(http.StatusBadRequest, "consultest does not support ?%s", p))
			return
		}
	}
	path := r.URL.Path
	var err error
	switch {
	case strings.HasPrefix(path, "/v1/kv/") || path == "/v1/kv":
		err = s.serveKV(w, r, strings.TrimPrefix(strings.TrimPrefix(path, "/v1/kv"), "/"))
	case path == "/v1/txn":
		err = s.serveTxn(w, r)
	case strings.HasPrefix(path, "/v1/agent/"):
		err = s.serveAgent(w, r, strings.TrimPrefix(path, "/v1/agent/"))
	case strings.HasPrefix(path, "/v1/health/service/"):
		err = s.serveHealthService(w, r, strings.TrimPrefix(path, "/v1/health/service/"))
	case strings.HasPrefix(path, "/v1/catalog/service/"):
		err = s.serveCatalogService(w, r, strings.TrimPrefix(path, "/v1/catalog/service/"))
	case path == "/v1/catalog/services":
		err = s.serveCatalogServices(w, r)
	case path == "/v1/status/leader":
		err = onlyGET(r, func() error { return writeJSON(w, leaderAddr) })
	case path == "/v1/status/peers":
		err = onlyGET(r, func() error { return writeJSON(w, []string{leaderAddr}) })
	default:
		err = errorf(http.StatusNotFound, "consultest does not serve %s", path)
	}
	if err != nil {
		writeError(w, err)
	}
}

func onlyGET(r *http.Request, f func() error) error {
	if r.Method != http.MethodGet {
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	return f()
}

func writeError(w http.ResponseWriter, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{http.StatusInternalServerError, err.Error()}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(he.status)
	fmt.Fprintln(w, he.msg)
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(b)
	return err
}

// result is a read's answer: its index, status and body.
type result struct {
	index  uint64
	status int
	body   []byte
	raw    bool // body is a raw value, not JSON
}

// blockingRead answers a read, as a blocking query when the request has
// ?index: query runs under s.mu until the index of its result passes the
// requested one, or the wait ends (then the current result is returned).
func (s *Server) blockingRead(w http.ResponseWriter, r *http.Request, query func() (result, error)) error {
	if r.Method != http.MethodGet {
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	q := r.URL.Query()
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "Invalid index")
		}
		minIndex = n
	}
	wait := DefaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errorf(http.StatusBadRequest, "Invalid wait time")
		}
		wait = min(d, MaxWait)
	}
	// Consul adds up to wait/16 so that many clients do not wake together.
	if j := int64(wait / 16); j > 0 {
		wait += time.Duration(rand.Int64N(j))
	}
	var timeout <-chan time.Time
	if minIndex > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		s.mu.Lock()
		res, err := query()
		changed, down, abandon := s.notify, s.down, s.abandon
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if res.index == 0 {
			res.index = 1 // never 0: see the package doc
		}
		done := minIndex == 0 || res.index > minIndex
		if !done {
			s.parked.Add(1)
			s.parks.Add(1)
			select {
			case <-changed:
				select {
				case <-abandon: // woken by a Wipe: answer now
					done = true
				default:
					s.parked.Add(-1)
					continue
				}
			case <-abandon:
				// A restore (Wipe) ends every blocking query at once, as
				// Consul's abandon channel does.
				done = true
			case <-timeout:
				done = true
			case <-r.Context().Done():
				s.parked.Add(-1)
				return nil
			case <-down:
				s.parked.Add(-1)
				return nil
			}
			s.parked.Add(-1)
			if done {
				// Re-read after the timeout so the answer is current.
				s.mu.Lock()
				res, err = query()
				s.mu.Unlock()
				if err != nil {
					return err
				}
				res.index = max(res.index, 1)
			}
		}
		h := w.Header()
		h.Set("X-Consul-Index", strconv.FormatUint(res.index, 10))
		h.Set("X-Consul-KnownLeader", "true")
		h.Set("X-Consul-LastContact", "0")
		if res.raw {
			h.Set("Content-Type", "application/octet-stream")
		} else if res.body != nil {
			h.Set("Content-Type", "application/json")
		}
		w.WriteHeader(res.status)
		_, err = w.Write(res.body)
		return err
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own types are marshalled
	}
	return b
}
