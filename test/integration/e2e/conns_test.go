package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/test/integration/stack"
)

// keeper is one long-lived client connection through the VIP: an HTTP/1.1
// keep-alive connection that issues a request every tick. Its transport
// may dial only once: if the connection broke, the next request would
// need a new one, and that counts as a failure.
type keeper struct {
	id    int
	c     *http.Client
	port  atomic.Int32 // the connection's local port
	dials atomic.Int32
	done  atomic.Int64 // requests answered 200
	mu    sync.Mutex
	err   error
}

func (k *keeper) fail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err == nil {
		k.err = err
	}
}

func (k *keeper) failure() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// keepers opens n long-lived connections and keeps them busy until the
// test ends. Each has made at least one request when it returns.
func keepers(t *testing.T, s *stack.Stack, n int, tick time.Duration) []*keeper {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	var ks []*keeper
	for i := range n {
		k := &keeper{id: i}
		dial := s.DialContext(s.Client)
		base := s.ClientHTTP().Transport.(*http.Transport)
		tr := base.Clone()
		tr.MaxConnsPerHost = 1
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if k.dials.Add(1) > 1 {
				err := fmt.Errorf("connection %d needed a new connection: the first one broke", k.id)
				k.fail(err)
				return nil, err
			}
			c, err := dial(ctx, network, addr)
			if err == nil {
				k.port.Store(int32(c.LocalAddr().(*net.TCPAddr).Port))
			}
			return c, err
		}
		k.c = &http.Client{Transport: tr, Timeout: 20 * time.Second}
		t.Cleanup(tr.CloseIdleConnections)
		ks = append(ks, k)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := time.NewTicker(tick) // paces the load; nothing waits on it
			defer tk.Stop()
			for {
				code, _, err := s.APIGet(k.c, "/repos/acme/widgets")
				switch {
				case err != nil:
					k.fail(fmt.Errorf("connection %d, request %d: %v", k.id, k.done.Load()+1, err))
					return
				case code != 200:
					k.fail(fmt.Errorf("connection %d, request %d: status %d", k.id, k.done.Load()+1, code))
					return
				}
				k.done.Add(1)
				select {
				case <-stop:
					return
				case <-tk.C:
				}
			}
		}()
	}
	nstest.WaitFor(t, 30*time.Second, "every long-lived connection's first answer", func() bool {
		for _, k := range ks {
			if err := k.failure(); err != nil {
				t.Fatal(err)
			}
			if k.done.Load() == 0 {
				return false
			}
		}
		return true
	})
	return ks
}

// progress waits until every keeper in ks has had m more answers, and
// fails the test if any connection broke.
func progress(t *testing.T, what string, ks []*keeper, m int64) {
	t.Helper()
	start := make([]int64, len(ks))
	for i, k := range ks {
		start[i] = k.done.Load()
	}
	nstest.WaitFor(t, 60*time.Second, what, func() bool {
		ok := true
		for i, k := range ks {
			if err := k.failure(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if k.done.Load()-start[i] < m {
				ok = false
			}
		}
		return ok
	})
}

// ownersOf maps each keeper to the proxy host holding its connection.
func ownersOf(t *testing.T, s *stack.Stack, ks []*keeper) map[*keeper]*stack.Proxy {
	t.Helper()
	m := map[*keeper]*stack.Proxy{}
	nstest.WaitFor(t, 10*time.Second, "every long-lived connection to show up on a proxy host", func() bool {
		owners := s.Owners()
		for _, k := range ks {
			p := owners[int(k.port.Load())]
			if p == nil {
				return false
			}
			m[k] = p
		}
		return true
	})
	return m
}

// newConnections makes n requests through the VIP, each on a new
// connection, and returns the proxy host each one reached (the one whose
// kernel held the connection), counted by name.
func newConnections(t *testing.T, s *stack.Stack, n int) map[string]int {
	t.Helper()
	hosts := map[string]int{}
	for i := range n {
		var port int
		c := s.ClientHTTP()
		tr := c.Transport.(*http.Transport)
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			cn, err := dial(ctx, network, addr)
			if err == nil {
				port = cn.LocalAddr().(*net.TCPAddr).Port
			}
			return cn, err
		}
		code, _, err := s.APIGet(c, "/repos/acme/widgets")
		if err != nil || code != 200 {
			t.Fatalf("new connection %d: status %d, %v", i, code, err)
		}
		// The connection is still open (keep-alive): find its host.
		var owner *stack.Proxy
		nstest.WaitFor(t, 5*time.Second, "the new connection on a proxy host", func() bool {
			owner = s.Owner(port)
			return owner != nil
		})
		hosts[owner.Name]++
		c.CloseIdleConnections()
	}
	return hosts
}

// waitTables waits until both directors' kernels hold the table the state
// describes.
func waitTables(t testing.TB, s *stack.Stack, what string) {
	t.Helper()
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := s.TablesMatch()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: the directors' kernel tables never matched the state (last error: %v)", what, last)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

func ctl(t testing.TB, s *stack.Stack, args ...string) string {
	t.Helper()
	out, err := s.Ctl(args...)
	if err != nil {
		t.Fatal(err)
	}
	if _, bench := t.(*testing.B); !bench {
		t.Logf("glbctl %v:\n%s", args, out)
	}
	return out
}
