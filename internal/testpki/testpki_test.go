package testpki

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// TestWrite serves TLS with the written certificate and key, and a client
// that trusts only the CA reaches it by IP and by name.
func TestWrite(t *testing.T) {
	p, err := Write(t.TempDir(), netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	defer ts.Close()
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool}}}
	defer c.CloseIdleConnections()
	for _, host := range []string{"127.0.0.1", "localhost"} {
		resp, err := c.Get("https://" + net.JoinHostPort(host, port) + "/")
		if err != nil {
			t.Errorf("%s: %v", host, err)
			continue
		}
		resp.Body.Close()
	}
	if _, err := tls.Dial("tcp", ts.Listener.Addr().String(), &tls.Config{ServerName: "127.0.0.1"}); err == nil {
		t.Error("a client without the CA trusted the certificate")
	}
}
