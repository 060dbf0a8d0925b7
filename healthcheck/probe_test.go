package healthcheck

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// localServer is a real HTTP server on 127.0.0.1 whose health endpoint
// answers with the status the test sets; hang makes it never answer.
func localServer(tb testing.TB, handler http.HandlerFunc) (netip.AddrPort, *httptest.Server) {
	tb.Helper()
	srv := httptest.NewServer(handler)
	tb.Cleanup(srv.Close)
	return netip.MustParseAddrPort(srv.Listener.Addr().String()), srv
}

// closedPort returns a local port nothing listens on.
func closedPort(tb testing.TB) netip.AddrPort {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return ap
}

func TestProbeHTTP(t *testing.T) {
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/_glb/health" || r.Method != http.MethodGet {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			w.WriteHeader(code)
		}
	}
	ok, _ := localServer(t, status(200))
	broken, _ := localServer(t, status(500))
	moved, _ := localServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	release := make(chan struct{})
	hanging, _ := localServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	refused := closedPort(t)

	tests := []struct {
		name       string
		target     netip.AddrPort
		uri        string
		wantOK     bool
		wantReason string
	}{
		{"a 200 passes", ok, "/_glb/health", true, ""},
		{"a 500 fails", broken, "/_glb/health", false, "http status 500"},
		{"a 404 for another URI fails", ok, "/other", false, "http status 404"},
		{"a redirect is not followed and fails", moved, "/_glb/health", false, "http status 302"},
		{"a server that never answers times out", hanging, "/_glb/health", false, "timeout after 200ms"},
		{"a closed port is refused", refused, "/_glb/health", false, "connection refused"},
	}
	client := newHTTPClient()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Check{Backend: tt.target.Addr(), Kind: HTTP, Port: tt.target.Port(), URI: tt.uri}
			r := withTimeout(context.Background(), 200*time.Millisecond, func(ctx context.Context) result {
				return probeHTTP(ctx, client, c)
			})
			if r.ok != tt.wantOK || r.reason != tt.wantReason {
				t.Fatalf("got ok=%v reason %q, want ok=%v reason %q", r.ok, r.reason, tt.wantOK, tt.wantReason)
			}
		})
	}
}

func TestProbeTCP(t *testing.T) {
	open, _ := localServer(t, func(http.ResponseWriter, *http.Request) {})
	tests := []struct {
		name       string
		target     netip.AddrPort
		wantOK     bool
		wantReason string
	}{
		{"an open port passes", open, true, ""},
		{"a closed port is refused", closedPort(t), false, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Check{Backend: tt.target.Addr(), Kind: TCP, Port: tt.target.Port()}
			r := withTimeout(context.Background(), time.Second, func(ctx context.Context) result { return probeTCP(ctx, c) })
			if r.ok != tt.wantOK || r.reason != tt.wantReason {
				t.Fatalf("got ok=%v reason %q, want ok=%v reason %q", r.ok, r.reason, tt.wantOK, tt.wantReason)
			}
		})
	}
}

func TestCheckString(t *testing.T) {
	for _, tt := range []struct {
		c    Check
		want string
	}{
		{Check{Backend: backIP, Kind: HTTP, Port: 8080, URI: "/_glb/health"}, "http://10.0.0.2:8080/_glb/health"},
		{Check{Backend: backIP, Kind: TCP, Port: 443}, "tcp 10.0.0.2:443"},
		{Check{Backend: backIP, Kind: GUE, Port: 19523}, "gue 10.0.0.2:19523"},
	} {
		if got := tt.c.String(); got != tt.want || !strings.Contains(got, tt.c.Kind.String()) {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}
