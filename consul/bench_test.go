package consul

import (
	"context"
	"testing"
	"time"

	"github.com/glb-project/glb/consul/consultest"
	"github.com/glb-project/glb/director/table"
	"github.com/hashicorp/consul/api"
)

// BenchmarkPropagation measures a host change from Update until two
// watching directors have applied it. Compare it with
// BenchmarkKVRoundTrip (one Put and one Get) from the same run: the ratio
// is the cost of a change in Consul round trips.
func BenchmarkPropagation(b *testing.B) {
	srv := consultest.New(b)
	ctl := openKV(b, srv, Options{})
	cfg := parseState(b, testState)
	if _, _, err := ctl.Update(context.Background(), func(c *table.Config) error { *c = *cfg.Clone(); return nil }); err != nil {
		b.Fatal(err)
	}
	var dirs []chan *table.Config
	for range 2 {
		got := make(chan *table.Config, 4)
		st := openKV(b, srv, Options{})
		st.opts.MinWatchInterval = time.Microsecond
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); st.Watch(ctx, func(c *table.Config) { got <- c }) }()
		b.Cleanup(func() { cancel(); <-done })
		<-got
		dirs = append(dirs, got)
	}
	states := []table.State{table.Draining, table.Active}
	b.ResetTimer()
	for i := range b.N {
		to := states[i%2]
		_, _, err := ctl.Update(context.Background(), func(c *table.Config) error {
			_, err := Change{Host: "proxy-2", To: to, Reason: "bench"}.Apply(c)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range dirs {
			if c := <-d; c.Table("github-api").FindBackend("proxy-2").State != to {
				b.Fatal("wrong state delivered")
			}
		}
	}
}

// BenchmarkKVRoundTrip is the baseline: one KV Put and one Get.
func BenchmarkKVRoundTrip(b *testing.B) {
	srv := consultest.New(b)
	kv := openKV(b, srv, Options{}).Client().KV()
	b.ResetTimer()
	for range b.N {
		if _, err := kv.Put(&api.KVPair{Key: "glb/bench", Value: []byte("x")}, nil); err != nil {
			b.Fatal(err)
		}
		if _, _, err := kv.Get("glb/bench", nil); err != nil {
			b.Fatal(err)
		}
	}
}
