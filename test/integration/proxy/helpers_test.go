package proxy_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/syncbuf"
	"github.com/glb-project/glb/internal/testenv"
	"github.com/glb-project/glb/internal/testpki"
	"github.com/glb-project/glb/proxy/clients"
	"github.com/glb-project/glb/test/githubsim"
)

// proxyBin is the glb-proxy binary built once for the package.
var proxyBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "glb-proxy-it-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		root, err := testenv.ModuleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		proxyBin = filepath.Join(dir, "glb-proxy")
		cmd := exec.Command("go", "build", "-o", proxyBin, "./cmd/glb-proxy")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build glb-proxy: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newPKI(t testing.TB) *testpki.PKI {
	t.Helper()
	p, err := testpki.Write(t.TempDir(), netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tlsClient(p *testpki.PKI) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool}}, Timeout: 30 * time.Second}
}

// world is githubsim (in this process, so its stats are at hand) with
// PATs and a client registry.
type world struct {
	sim     *githubsim.Server
	ts      *httptest.Server
	dir     string
	pats    map[string]string // credential -> PAT
	tokens  map[string]string // client -> glbp_ token
	clients string            // registry file
}

func newWorld(t testing.TB, creds []string, specs map[string][]string) *world {
	t.Helper()
	w := &world{sim: &githubsim.Server{}, dir: t.TempDir(), pats: map[string]string{}, tokens: map[string]string{}}
	w.ts = httptest.NewServer(w.sim)
	t.Cleanup(func() { w.ts.Close(); w.sim.Close() })
	for _, c := range creds {
		b := make([]byte, 18)
		rand.Read(b)
		pat := fmt.Sprintf("ghp_%x", b)
		w.pats[c] = pat
		w.sim.AddToken(pat, c)
	}
	var reg strings.Builder
	reg.WriteString("version: 1\nclients:\n")
	for name, scopes := range specs {
		tok, err := clients.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		w.tokens[name] = tok
		fmt.Fprintf(&reg, "  - name: %s\n    token_sha256: %s\n    scopes:\n", name, clients.HashToken(tok))
		for _, s := range scopes {
			fmt.Fprintf(&reg, "      - %s\n", s)
		}
	}
	w.clients = filepath.Join(w.dir, "clients.yaml")
	if err := os.WriteFile(w.clients, []byte(reg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// env returns the environment holding the PATs, for the proxy process.
func (w *world) env() []string {
	var e []string
	for c, pat := range w.pats {
		e = append(e, "PAT_"+strings.ToUpper(strings.ReplaceAll(c, "-", "_"))+"="+pat)
	}
	return e
}

// credentialsYAML lists the PATs as pat_env credentials.
func (w *world) credentialsYAML(names ...string) string {
	var b strings.Builder
	b.WriteString("credentials:\n")
	for _, c := range names {
		fmt.Fprintf(&b, "  - {name: %s, pat_env: PAT_%s}\n", c, strings.ToUpper(strings.ReplaceAll(c, "-", "_")))
	}
	return b.String()
}

// proc is a running glb-proxy.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	plain  string // http://addr of listen_plain
	main   string // https:// or http:// of listen
	done   chan struct{}
	err    error
}

// startProxy runs glb-proxy with a configuration; extra is appended to a
// configuration that already has listen, listen_plain, tls (if p is set),
// upstream and clients_file.
func startProxy(t testing.TB, w *world, p *testpki.PKI, extra string, env ...string) *proc {
	t.Helper()
	mainAddr, plainAddr := freeAddr(t), freeAddr(t)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "listen: %q\nlisten_plain: %q\nupstream: {rest: %q}\nclients_file: %q\nclients_poll: 50ms\n", mainAddr, plainAddr, w.ts.URL, w.clients)
	scheme := "http"
	if p != nil {
		fmt.Fprintf(&cfg, "tls: {cert_file: %q, key_file: %q}\n", p.CertFile, p.KeyFile)
		scheme = "https"
	}
	cfg.WriteString(extra)
	f, err := os.CreateTemp(w.dir, "glb-proxy-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(cfg.String())
	f.Close()
	pr := &proc{stderr: &syncbuf.Buffer{}, plain: "http://" + plainAddr, main: scheme + "://" + mainAddr, done: make(chan struct{})}
	pr.cmd = exec.Command(proxyBin, "--config", f.Name(), "--log-level", "debug")
	pr.cmd.Env = append(append(os.Environ(), w.env()...), env...)
	pr.cmd.Stderr = pr.stderr
	pr.cmd.Stdout = pr.stderr
	if err := pr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pr.err = pr.cmd.Wait(); close(pr.done) }()
	t.Cleanup(func() {
		pr.stop()
		if t.Failed() {
			t.Logf("glb-proxy log:\n%s", pr.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(pr.plain + "/_glb/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return pr
			}
		}
		select {
		case <-pr.done:
			t.Fatalf("glb-proxy exited: %v\n%s", pr.err, pr.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("glb-proxy not healthy after 30s:\n%s", pr.stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 30s).
func (p *proc) stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// get does one request with a client token.
func get(t testing.TB, c *http.Client, url, token string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// waitFor polls cond until it holds, for up to d.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	nstest.WaitFor(t, d, what, cond)
}
