package consul

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glb-project/glb/consul/consultest"
	"github.com/glb-project/glb/internal/syncbuf"
	"github.com/hashicorp/consul/api"
)

// TestRegistrationAgentOutage: an agent that stops answering is not taken
// for one that lost the registration (one warning, no re-registration),
// while an agent that answers 404 gets the registration back.
func TestRegistrationAgentOutage(t *testing.T) {
	srv, client, health, port := registrationWorld(t)

	var logs syncbuf.Buffer
	svc := &Service{Agent: srv.Addr(), Address: "127.0.0.1", Port: port, Cluster: "east", Table: "github-api",
		CheckURL: health + "/_glb/health", CheckInterval: 10 * time.Millisecond, ResyncInterval: 10 * time.Millisecond,
		Log: slog.New(slog.NewJSONHandler(&logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	count := func(msg string) int { return strings.Count(logs.String(), `"msg":"`+msg+`"`) }
	registered := func() bool {
		p, _, err := Proxies(context.Background(), client, "east", false, 0)
		return err == nil && len(p) == 1
	}
	eventually(t, "the proxy to register", registered)

	srv.Stop()
	eventually(t, "the outage to be noticed", func() bool {
		return count("cannot check the glb-proxy registration with consul; checking again") == 1
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the agent to answer again", func() bool {
		return count("consul answers again; the glb-proxy registration is in place") == 1
	})
	if n := count("consul lost the glb-proxy registration; registering again"); n != 0 {
		t.Errorf("an unreachable agent was taken for a lost registration (%d times):\n%s", n, logs.String())
	}
	if n := count("registered with consul"); n != 1 {
		t.Errorf("registered %d times across an agent outage that kept the registration", n)
	}
	if n := count("cannot check the glb-proxy registration with consul; checking again"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}

	// The agent forgets the service: that is a lost registration.
	if err := client.Agent().ServiceDeregister(svc.id()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the registration to come back", func() bool {
		return count("consul lost the glb-proxy registration; registering again") == 1 && registered()
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if registered() {
		t.Error("still registered after Run returned")
	}
}

// registrationWorld is a Consul test server whose checks run every 10ms
// and a health endpoint for them (/_glb/health): its base URL and port.
func registrationWorld(t *testing.T) (*consultest.Server, *api.Client, string, int) {
	t.Helper()
	srv := &consultest.Server{MinCheckInterval: 10 * time.Millisecond}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	client, err := api.NewClient(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_glb/health" {
			w.Write([]byte("ok"))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(health.Close)
	hu, _ := url.Parse(health.URL)
	port, _ := strconv.Atoi(hu.Port())
	return srv, client, health.URL, port
}
