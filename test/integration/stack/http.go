package stack

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/glb-project/glb/internal/nstest"
)

// DialContext returns a dial function whose sockets live in ns.
func (s *Stack) DialContext(ns *nstest.NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(s.tb, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// HTTPClient is an HTTP/1.1 client whose connections start in ns and
// that trusts the stack's CA.
func (s *Stack) HTTPClient(ns *nstest.NS) *http.Client {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(s.CAFile); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:     s.DialContext(ns),
		TLSClientConfig: &tls.Config{RootCAs: pool},
		MaxIdleConns:    100, MaxIdleConnsPerHost: 100,
	}}
}

func do(c *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Get does a plain GET from inside ns (management: health, metrics, stats).
func (s *Stack) Get(ns *nstest.NS, url string) (int, []byte, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: s.DialContext(ns), DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(context.Background(), "GET", url, nil)
	if err != nil {
		return 0, nil, err
	}
	return do(c, req)
}

// Metrics scrapes a Prometheus endpoint from inside ns and returns
// "name{labels}" → value.
func (s *Stack) Metrics(ns *nstest.NS, url string) (map[string]float64, error) {
	code, b, err := s.Get(ns, url)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("GET %s: status %d", url, code)
	}
	return ParseMetrics(string(b)), nil
}

// ParseMetrics reads the Prometheus text format into "name{labels}" → value.
func ParseMetrics(text string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// Sum adds the values of every series of metric name whose labels
// contain all of match (each like `outcome="accepted_syn"`).
func Sum(m map[string]float64, name string, match ...string) float64 {
	var t float64
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, want := range match {
			if !strings.Contains(k, want) {
				ok = false
			}
		}
		if ok {
			t += v
		}
	}
	return t
}
