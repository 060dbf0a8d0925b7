package consultest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/glb-project/glb/internal/nstest"
)

func client(t *testing.T, s *Server) *api.Client {
	t.Helper()
	c, err := api.NewClient(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls cond until it holds, for up to 20 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	nstest.WaitFor(t, 20*time.Second, what, cond)
}

func put(t *testing.T, kv *api.KV, key, value string) {
	t.Helper()
	if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestKVReadWrite(t *testing.T) {
	s := New(t)
	kv := client(t, s).KV()

	p, meta, err := kv.Get("glb/missing", nil)
	if err != nil || p != nil {
		t.Fatalf("missing key: %v %v", p, err)
	}
	if meta.LastIndex == 0 {
		t.Fatal("X-Consul-Index is 0 on a fresh server")
	}

	put(t, kv, "glb/hosts/10.0.0.1", `{"state":"draining"}`)
	put(t, kv, "glb/hosts/10.0.0.2", `{"state":"active"}`)
	put(t, kv, "glb/tables/api", `{}`)
	put(t, kv, "other/key", "x")

	p, _, err = kv.Get("glb/hosts/10.0.0.1", nil)
	if err != nil || string(p.Value) != `{"state":"draining"}` || p.CreateIndex == 0 || p.ModifyIndex != p.CreateIndex {
		t.Fatalf("get: %+v %v", p, err)
	}
	list, _, err := kv.List("glb/", nil)
	if err != nil || len(list) != 3 || list[0].Key != "glb/hosts/10.0.0.1" || list[2].Key != "glb/tables/api" {
		t.Fatalf("list: %v %v", list, err)
	}
	keys, _, err := kv.Keys("glb/", "/", nil)
	if err != nil || strings.Join(keys, ",") != "glb/hosts/,glb/tables/" {
		t.Fatalf("keys with separator: %v %v", keys, err)
	}
	keys, _, err = kv.Keys("glb/hosts/", "", nil)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	if l, _, err := kv.List("nothing/", nil); err != nil || l != nil {
		t.Fatalf("empty prefix: %v %v", l, err)
	}

	// The wire format: base64 values, raw values, 404s.
	resp, err := http.Get(s.URL() + "/v1/kv/other/key")
	if err != nil {
		t.Fatal(err)
	}
	var raw []map[string]any
	json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if raw[0]["Value"] != "eA==" || resp.Header.Get("X-Consul-Index") == "" {
		t.Fatalf("wire format: %v %v", raw, resp.Header)
	}
	resp, err = http.Get(s.URL() + "/v1/kv/other/key?raw")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "x" {
		t.Fatalf("raw: %q", b)
	}
	resp, err = http.Get(s.URL() + "/v1/kv/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing key: status %d", resp.StatusCode)
	}

	if _, err := kv.Delete("other/key", nil); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := kv.Get("other/key", nil); p != nil {
		t.Fatal("deleted key still there")
	}
	if _, err := kv.DeleteTree("glb/hosts/", nil); err != nil {
		t.Fatal(err)
	}
	if l, _, _ := kv.List("glb/", nil); len(l) != 1 {
		t.Fatalf("after delete-tree: %v", l)
	}

	// A value over 512 KiB is refused.
	if _, err := kv.Put(&api.KVPair{Key: "big", Value: make([]byte, MaxValueSize+1)}, nil); err == nil {
		t.Fatal("oversized value accepted")
	}
}

func TestKVCheckAndSet(t *testing.T) {
	s := New(t)
	kv := client(t, s).KV()

	for _, tc := range []struct {
		name  string
		index func() uint64
		want  bool
	}{
		{"cas 0 creates a missing key", func() uint64 { return 0 }, true},
		{"cas 0 fails once the key exists", func() uint64 { return 0 }, false},
		{"cas with the current index succeeds", func() uint64 { p, _, _ := kv.Get("k", nil); return p.ModifyIndex }, true},
		{"cas with a stale index fails", func() uint64 { p, _, _ := kv.Get("k", nil); return p.ModifyIndex - 1 }, false},
		{"cas with an index from the future fails", func() uint64 { return s.Index() + 100 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _, _ := kv.Get("k", nil)
			ok, _, err := kv.CAS(&api.KVPair{Key: "k", Value: []byte(tc.name), ModifyIndex: tc.index()}, nil)
			if err != nil || ok != tc.want {
				t.Fatalf("CAS = %v, %v; want %v", ok, err, tc.want)
			}
			after, _, _ := kv.Get("k", nil)
			if changed := string(after.Value) == tc.name; changed != tc.want {
				t.Fatalf("value changed = %v after CAS returned %v (before %v)", changed, ok, before)
			}
		})
	}

	p, _, _ := kv.Get("k", nil)
	if ok, _, _ := kv.DeleteCAS(&api.KVPair{Key: "k", ModifyIndex: p.ModifyIndex - 1}, nil); ok {
		t.Fatal("delete-cas with a stale index succeeded")
	}
	if ok, _, _ := kv.DeleteCAS(&api.KVPair{Key: "k", ModifyIndex: p.ModifyIndex}, nil); !ok {
		t.Fatal("delete-cas with the current index failed")
	}
}

// indexOf fetches a URL and returns its X-Consul-Index.
func indexOf(t *testing.T, url string) uint64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	if err != nil {
		t.Fatalf("%s: X-Consul-Index %q", url, resp.Header.Get("X-Consul-Index"))
	}
	return n
}

func TestIndexOnlyGrows(t *testing.T) {
	s := New(t)
	c := client(t, s)
	kv := c.KV()
	urls := []string{"/v1/kv/p/?recurse", "/v1/kv/p/a", "/v1/kv/p/?keys", "/v1/health/service/web", "/v1/catalog/service/web"}
	last := map[string]uint64{}
	check := func(step string) {
		for _, u := range urls {
			idx := indexOf(t, s.URL()+u)
			if idx == 0 {
				t.Fatalf("%s: %s has X-Consul-Index 0", step, u)
			}
			if idx < last[u] {
				t.Fatalf("%s: %s index went from %d to %d", step, u, last[u], idx)
			}
			last[u] = idx
		}
	}
	check("fresh server")
	put(t, kv, "p/a", "1")
	check("put a")
	put(t, kv, "p/b", "2")
	check("put b")
	// Deleting the key with the highest index must not move the prefix
	// index back (Consul keeps tombstones for this).
	before := indexOf(t, s.URL()+"/v1/kv/p/?recurse")
	kv.Delete("p/b", nil)
	if after := indexOf(t, s.URL()+"/v1/kv/p/?recurse"); after <= before {
		t.Fatalf("prefix index after deleting its newest key: %d, was %d", after, before)
	}
	check("delete b")
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Check: &api.AgentServiceCheck{TTL: "1m"}}); err != nil {
		t.Fatal(err)
	}
	check("register")
	c.Agent().PassTTL("service:web", "")
	check("pass")
	c.Agent().ServiceDeregister("web")
	check("deregister")
}

func TestBlockingQuery(t *testing.T) {
	s := New(t)
	kv := client(t, s).KV()
	put(t, kv, "glb/hosts/a", "1")
	_, meta, err := kv.List("glb/", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := meta.LastIndex

	t.Run("returns on timeout with the same index", func(t *testing.T) {
		_, m, err := kv.List("glb/", &api.QueryOptions{WaitIndex: start, WaitTime: 20 * time.Millisecond})
		if err != nil || m.LastIndex != start {
			t.Fatalf("index %d, err %v; want %d", m.LastIndex, err, start)
		}
	})

	t.Run("returns on a change", func(t *testing.T) {
		type answer struct {
			pairs api.KVPairs
			index uint64
			err   error
		}
		done := make(chan answer, 1)
		parks := s.Parks()
		go func() {
			p, m, err := kv.List("glb/", &api.QueryOptions{WaitIndex: start, WaitTime: time.Minute})
			if err != nil {
				done <- answer{err: err}
				return
			}
			done <- answer{p, m.LastIndex, nil}
		}()
		// Write only once the query is parked, so the write is what wakes
		// it (not a query that reads the new index on arrival).
		eventually(t, "the blocking query to park", func() bool { return s.Parks() > parks })
		// A write elsewhere wakes the query, which must go back to sleep
		// rather than answer with the old index.
		put(t, kv, "elsewhere", "x")
		eventually(t, "the query to park again after the unrelated write", func() bool { return s.Parks() > parks+1 })
		select {
		case a := <-done:
			t.Fatalf("a write outside the prefix answered the query: index %d (was %d), err %v", a.index, start, a.err)
		default:
		}
		put(t, kv, "glb/hosts/b", "2")
		select {
		case a := <-done:
			if a.err != nil || a.index <= start || len(a.pairs) != 2 {
				t.Fatalf("blocking query: %d pairs, index %d (was %d), err %v", len(a.pairs), a.index, start, a.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("blocking query did not return after a change")
		}
	})

	t.Run("an index ahead of the server blocks until the wait ends", func(t *testing.T) {
		_, m, err := kv.List("glb/", &api.QueryOptions{WaitIndex: s.Index() + 1000, WaitTime: 20 * time.Millisecond})
		if err != nil || m.LastIndex > s.Index() {
			t.Fatalf("index %d err %v", m.LastIndex, err)
		}
	})

	t.Run("bad parameters are refused", func(t *testing.T) {
		for _, q := range []string{"index=abc", "index=1&wait=forever"} {
			resp, err := http.Get(s.URL() + "/v1/kv/glb/?recurse&" + q)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", q, resp.StatusCode)
			}
		}
	})
}

func TestTxn(t *testing.T) {
	s := New(t)
	c := client(t, s)
	kv := c.KV()
	put(t, kv, "t/a", "1")
	a, _, _ := kv.Get("t/a", nil)

	// One stale check fails the whole transaction.
	ok, resp, _, err := c.Txn().Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "t/b", Value: []byte("2")}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "t/a", Value: []byte("x"), Index: a.ModifyIndex - 1}},
	}, nil)
	if err != nil || ok || len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 1 {
		t.Fatalf("stale txn: ok=%v resp=%+v err=%v", ok, resp, err)
	}
	if p, _, _ := kv.Get("t/b", nil); p != nil {
		t.Fatal("a rolled-back transaction wrote t/b")
	}

	ok, resp, _, err = c.Txn().Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: "t/b"}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "t/b", Value: []byte("2")}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "t/a", Value: []byte("x"), Index: a.ModifyIndex}},
		{KV: &api.KVTxnOp{Verb: api.KVGet, Key: "t/b"}},
	}, nil)
	if err != nil || !ok {
		t.Fatalf("txn: ok=%v resp=%+v err=%v", ok, resp, err)
	}
	if len(resp.Results) != 3 || string(resp.Results[2].KV.Value) != "2" || resp.Results[0].KV.Value != nil {
		t.Fatalf("results: %+v", resp.Results)
	}
	pa, _, _ := kv.Get("t/a", nil)
	pb, _, _ := kv.Get("t/b", nil)
	if pa.ModifyIndex != pb.ModifyIndex {
		t.Fatalf("one transaction, two indexes: %d and %d", pa.ModifyIndex, pb.ModifyIndex)
	}

	ops := make(api.TxnOps, MaxTxnOps+1)
	for i := range ops {
		ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGet, Key: "t/a"}}
	}
	if _, _, _, err := c.Txn().Txn(ops, nil); err == nil {
		t.Fatal("a transaction over 128 operations was accepted")
	}
}

func TestStopStartKeepsDataAndAddress(t *testing.T) {
	s := New(t)
	kv := client(t, s).KV()
	put(t, kv, "k", "v")
	addr := s.Addr()
	_, meta, _ := kv.Get("k", nil)

	blocked := make(chan error, 1)
	go func() {
		_, _, err := kv.Get("k", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		blocked <- err
	}()
	// Wait until the query is parked on the server, then stop it.
	eventually(t, "the blocking query to reach the server", func() bool { return s.Waiting() > 0 })
	s.Stop()
	select {
	case err := <-blocked:
		if err == nil {
			t.Fatal("a query cut by Stop reported success")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop left a blocking query hanging")
	}
	if _, _, err := kv.Get("k", nil); err == nil {
		t.Fatal("request succeeded while the server was stopped")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, was %s", s.Addr(), addr)
	}
	p, m, err := kv.Get("k", nil)
	if err != nil || string(p.Value) != "v" || m.LastIndex < meta.LastIndex {
		t.Fatalf("after restart: %v %v %v", p, m, err)
	}
}

func TestWipeMovesIndexBackAndEndsBlockingQueries(t *testing.T) {
	s := New(t)
	kv := client(t, s).KV()
	for i := range 5 {
		put(t, kv, fmt.Sprintf("k/%d", i), "v")
	}
	_, meta, _ := kv.List("k/", nil)
	done := make(chan uint64, 1)
	go func() {
		_, m, err := kv.List("k/", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		if err != nil {
			done <- 0
			return
		}
		done <- m.LastIndex
	}()
	eventually(t, "the blocking query to reach the server", func() bool { return s.Waiting() > 0 })
	s.Wipe()
	select {
	case idx := <-done:
		if idx == 0 || idx >= meta.LastIndex {
			t.Fatalf("index after wipe %d, before %d: want lower and non-zero", idx, meta.LastIndex)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wipe did not end the blocking query")
	}
}

func TestServicesAndChecks(t *testing.T) {
	s := &Server{MinCheckInterval: 10 * time.Millisecond, ReapInterval: 10 * time.Millisecond}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c := client(t, s)
	agent, health := c.Agent(), c.Health()

	var status atomic.Int32
	status.Store(http.StatusOK)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_glb/health" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(backend.Close)

	passing := func(name string) []string {
		entries, _, err := health.Service(name, "", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range entries {
			ids = append(ids, e.Service.ID)
		}
		return ids
	}
	checkStatus := func(id string) string {
		checks, err := agent.Checks()
		if err != nil {
			t.Fatal(err)
		}
		if c := checks[id]; c != nil {
			return c.Status
		}
		return "absent"
	}

	t.Run("registration is validated", func(t *testing.T) {
		for _, reg := range []*api.AgentServiceRegistration{
			{ID: "x"},
			{Name: "x", Meta: map[string]string{"bad key": "v"}},
			{Name: "x", Meta: map[string]string{"consul-x": "v"}},
			{Name: "x", Check: &api.AgentServiceCheck{HTTP: "http://127.0.0.1:1/"}},
			{Name: "x", Check: &api.AgentServiceCheck{Args: []string{"true"}, Interval: "1s"}},
		} {
			if err := agent.ServiceRegister(reg); err == nil {
				t.Errorf("%+v: accepted", reg)
			}
		}
		if err := agent.ServiceDeregister("never-registered"); err == nil {
			t.Error("deregistering an unknown service succeeded")
		}
	})

	t.Run("HTTP check follows the backend", func(t *testing.T) {
		err := agent.ServiceRegister(&api.AgentServiceRegistration{
			ID: "glb-proxy-1", Name: "glb-proxy", Port: 443, Address: "10.1.0.11",
			Meta:  map[string]string{"cluster": "east", "table": "github-api"},
			Check: &api.AgentServiceCheck{HTTP: backend.URL + "/_glb/health", Interval: "10ms", Timeout: "1s"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := checkStatus("service:glb-proxy-1"); got != api.HealthCritical && got != api.HealthPassing {
			t.Fatalf("initial status %q", got)
		}
		eventually(t, "the HTTP check to pass", func() bool { return checkStatus("service:glb-proxy-1") == api.HealthPassing })
		if got := passing("glb-proxy"); len(got) != 1 || got[0] != "glb-proxy-1" {
			t.Fatalf("passing: %v", got)
		}
		cat, _, err := c.Catalog().Service("glb-proxy", "", nil)
		if err != nil || len(cat) != 1 || cat[0].ServiceMeta["table"] != "github-api" || cat[0].ServicePort != 443 || cat[0].ServiceAddress != "10.1.0.11" {
			t.Fatalf("catalog: %+v %v", cat, err)
		}

		// A blocking health query wakes when the check changes.
		_, meta, _ := health.Service("glb-proxy", "", true, nil)
		woke := make(chan int, 1)
		go func() {
			e, _, err := health.Service("glb-proxy", "", true, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
			if err != nil {
				woke <- -1
				return
			}
			woke <- len(e)
		}()
		status.Store(http.StatusInternalServerError)
		select {
		case n := <-woke:
			if n != 0 {
				t.Fatalf("after the backend failed, %d passing entries", n)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("health query did not wake on a check change")
		}
		status.Store(http.StatusTooManyRequests)
		eventually(t, "429 to warn", func() bool { return checkStatus("service:glb-proxy-1") == api.HealthWarning })
		if got := passing("glb-proxy"); len(got) != 0 {
			t.Fatalf("a warning service is listed as passing: %v", got)
		}
		all, _, _ := health.Service("glb-proxy", "", false, nil)
		if len(all) != 1 || len(all[0].Checks) != 2 || all[0].Checks[0].CheckID != "serfHealth" {
			t.Fatalf("all entries: %+v", all)
		}
		if err := agent.ServiceDeregister("glb-proxy-1"); err != nil {
			t.Fatal(err)
		}
		if cat, _, _ := c.Catalog().Service("glb-proxy", "", nil); len(cat) != 0 {
			t.Fatalf("deregistered service still in the catalog: %v", cat)
		}
	})

	t.Run("TTL check", func(t *testing.T) {
		// A TTL long enough never to expire during the test: each update
		// must show at once.
		err := agent.ServiceRegister(&api.AgentServiceRegistration{
			Name: "ttl-svc", Check: &api.AgentServiceCheck{TTL: "1h"},
		})
		if err != nil {
			t.Fatal(err)
		}
		output := func(id string) string {
			checks, err := agent.Checks()
			if err != nil || checks[id] == nil {
				t.Fatalf("check %s: %v", id, err)
			}
			return checks[id].Output
		}
		if got := checkStatus("service:ttl-svc"); got != api.HealthCritical {
			t.Fatalf("a new TTL check is %q, want critical", got)
		}
		for _, step := range []struct {
			update func() error
			want   string
			output string
		}{
			{func() error { return agent.PassTTL("service:ttl-svc", "all good") }, api.HealthPassing, "all good"},
			{func() error { return agent.WarnTTL("service:ttl-svc", "slow") }, api.HealthWarning, "slow"},
			{func() error { return agent.UpdateTTL("service:ttl-svc", "down", api.HealthCritical) }, api.HealthCritical, "down"},
			{func() error { return agent.UpdateTTL("service:ttl-svc", "back", api.HealthPassing) }, api.HealthPassing, "back"},
		} {
			if err := step.update(); err != nil {
				t.Fatal(err)
			}
			if got, out := checkStatus("service:ttl-svc"), output("service:ttl-svc"); got != step.want || out != step.output {
				t.Fatalf("after an update to %s: %q (%q), want %q (%q)", step.want, got, out, step.want, step.output)
			}
		}
		if got := passing("ttl-svc"); len(got) != 1 {
			t.Fatalf("a passing TTL service is not listed as passing: %v", got)
		}

		// A short TTL, passed and then left alone, expires.
		err = agent.ServiceRegister(&api.AgentServiceRegistration{
			Name: "ttl-short", Check: &api.AgentServiceCheck{TTL: "50ms"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := agent.PassTTL("service:ttl-short", "ok"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the TTL to expire", func() bool { return output("service:ttl-short") == "TTL expired" })
		if got := checkStatus("service:ttl-short"); got != api.HealthCritical {
			t.Fatalf("an expired TTL check is %q, want critical", got)
		}
		if err := agent.UpdateTTL("service:ttl-svc", "", "bogus"); err == nil {
			t.Fatal("bogus status accepted")
		}
		if err := agent.PassTTL("no-such-check", ""); err == nil {
			t.Fatal("pass of an unknown check succeeded")
		}
	})

	t.Run("critical services are reaped", func(t *testing.T) {
		err := agent.ServiceRegister(&api.AgentServiceRegistration{
			Name: "doomed", Check: &api.AgentServiceCheck{TTL: "1h", DeregisterCriticalServiceAfter: "10ms"},
		})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the reaper", func() bool {
			svcs, _ := agent.Services()
			return svcs["doomed"] == nil
		})
	})

	t.Run("leader", func(t *testing.T) {
		leader, err := c.Status().Leader()
		if err != nil || leader == "" {
			t.Fatalf("leader %q %v", leader, err)
		}
	})
}
