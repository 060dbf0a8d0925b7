package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// result is the outcome of one probe. reason says why it failed.
type result struct {
	ok     bool
	reason string
}

func pass() result { return result{ok: true} }

func fail(format string, args ...any) result {
	return result{reason: fmt.Sprintf(format, args...)}
}

// newHTTPClient returns the client of HTTP checks: a fresh connection per
// check (a pooled one would hide a server that stopped accepting), no
// proxy from the environment, and no redirects (a 3xx is not a 200).
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:              nil,
			DialContext:        (&net.Dialer{}).DialContext,
			DisableKeepAlives:  true,
			DisableCompression: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probeHTTP GETs the check's URI; only a 200 passes.
func probeHTTP(ctx context.Context, client *http.Client, c Check) result {
	url := "http://" + netip.AddrPortFrom(c.Backend, c.Port).String() + c.URI
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail("bad request %s: %v", url, err)
	}
	req.Header.Set("User-Agent", "glb-healthcheck")
	resp, err := client.Do(req)
	if err != nil {
		return fail("%s", reasonOf(ctx, err))
	}
	// Read a little of the body so the server sees a complete exchange;
	// what it says does not matter.
	_, _ = io.CopyN(io.Discard, resp.Body, 4096)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail("http status %d", resp.StatusCode)
	}
	return pass()
}

// probeTCP connects to the check's port.
func probeTCP(ctx context.Context, c Check) result {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(c.Backend, c.Port).String())
	if err != nil {
		return fail("%s", reasonOf(ctx, err))
	}
	conn.Close()
	return pass()
}

// reasonOf turns a probe error into a short reason for logs and Status.
func reasonOf(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	}
	return err.Error()
}

// withTimeout runs probe under a real deadline of d.
func withTimeout(ctx context.Context, d time.Duration, probe func(context.Context) result) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	r := probe(ctx)
	if !r.ok && r.reason == "timeout" {
		r.reason = fmt.Sprintf("timeout after %v", d)
	}
	return r
}
