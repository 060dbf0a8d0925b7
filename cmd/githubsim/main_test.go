package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"github.com/glb-project/glb/internal/syncbuf"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/internal/testenv"
)

// waitFor polls cond until it holds, for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	nstest.WaitFor(t, 10*time.Second, what, cond)
}

func readAddr(t *testing.T, file string) string {
	t.Helper()
	var addr string
	waitFor(t, "the address file", func() bool {
		b, err := os.ReadFile(file)
		addr = strings.TrimSpace(string(b))
		return err == nil && addr != ""
	})
	return addr
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		errSub string
		out    string
	}{
		{"help", []string{"--help"}, "", "Usage: githubsim"},
		{"version", []string{"--version"}, "", "githubsim dev"},
		{"unknown flag", []string{"--nope"}, "flag provided but not defined", ""},
		{"extra arguments", []string{"serve"}, "unexpected arguments", ""},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level", ""},
		{"cert without key", []string{"--tls-cert", "x.pem"}, "go together", ""},
		{"bad limit status", []string{"--limit-status", "500"}, "403 or 429", ""},
		{"bad token", []string{"--token", "nolabel"}, "LABEL=TOKEN", ""},
		{"app id without key", []string{"--app-id", "1"}, "go together", ""},
		{"installation without app", []string{"--installation", "5"}, "needs --app-id", ""},
		{"missing tokens file", []string{"--tokens-file", "/nonexistent/tokens"}, "read tokens", ""},
		{"bad limit", []string{"--limit", "core"}, "RESOURCE=N", ""},
		{"bad limit window", []string{"--limit", "core=5/soon"}, "bad window", ""},
		{"bad listen address", []string{"--listen", "256.0.0.1:99999"}, "listen", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr, nil)
			if tt.errSub == "" && err != nil {
				t.Fatalf("err %v", err)
			}
			if tt.errSub != "" && (err == nil || !strings.Contains(err.Error(), tt.errSub)) {
				t.Fatalf("err %v, want %q", err, tt.errSub)
			}
			if !strings.Contains(stdout.String()+stderr.String(), tt.out) {
				t.Errorf("output %q, want %q", stdout.String()+stderr.String(), tt.out)
			}
		})
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "githubsim"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestServe(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	appKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	appKeyFile := filepath.Join(dir, "app.pem")
	os.WriteFile(appKeyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(appKey)}), 0o600)
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte("# test tokens\nfile-bot=ghp_fromfile\n"), 0o600)
	addrFile := filepath.Join(dir, "addr")
	dataDir := filepath.Join(dir, "git")

	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	var logs syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--addr-file", addrFile, "--tls-cert", cert, "--tls-key", key,
			"--token", "flag-bot=ghp_fromflag", "--tokens-file", tokens, "--app-id", "77", "--app-key", appKeyFile,
			"--installation", "1", "--installation", "2", "--data-dir", dataDir, "--log-level", "debug",
			"--limit", "search=1/1m"}, io.Discard, &logs, hup)
	}()
	addr := readAddr(t, addrFile)
	pool := x509.NewCertPool()
	pemCert, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pemCert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	call := func(method, path, auth string) int {
		req, _ := http.NewRequest(method, "https://"+addr+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for auth, want := range map[string]int{"token ghp_fromflag": 200, "token ghp_fromfile": 200, "token ghp_later": 401, "": 200} {
		if got := call("GET", "/repos/acme/widgets", auth); got != want {
			t.Errorf("%q: %d, want %d", auth, got, want)
		}
	}
	now := time.Now()
	jwtTok, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "77", "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(5 * time.Minute).Unix()}).SignedString(appKey)
	if got := call("POST", "/app/installations/2/access_tokens", "Bearer "+jwtTok); got != 201 {
		t.Errorf("mint: %d", got)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "acme", "widgets.git", "HEAD")); err != nil {
		t.Errorf("--data-dir: %v", err)
	}

	if call("GET", "/search/issues?q=x", "token ghp_fromflag") != 200 || call("GET", "/search/issues?q=x", "token ghp_fromflag") != 403 {
		t.Error("--limit search=1/1m is not applied")
	}

	// SIGHUP re-reads the tokens file: new tokens work, dropped ones are
	// revoked (unless a flag gave them), a bad file changes nothing.
	loads := 1
	reload := func(content string) {
		t.Helper()
		tmp := tokens + ".new"
		os.WriteFile(tmp, []byte(content), 0o600)
		if err := os.Rename(tmp, tokens); err != nil {
			t.Fatal(err)
		}
		hup <- syscall.SIGHUP
	}
	waitLoaded := func() {
		t.Helper()
		loads++
		waitFor(t, "the tokens to be reloaded", func() bool { return strings.Count(logs.String(), `"msg":"tokens loaded"`) == loads })
	}
	reload("later=ghp_later\nflag-bot=ghp_fromflag\n")
	waitLoaded()
	if got := call("GET", "/user", "token ghp_later"); got != 200 {
		t.Errorf("a token added to the file: %d", got)
	}
	if got := call("GET", "/user", "token ghp_fromfile"); got != 401 {
		t.Errorf("a token dropped from the file: %d", got)
	}
	reload("later=ghp_later\n")
	waitLoaded()
	reload("later=ghp_later\nbroken line\n")
	waitFor(t, "the bad file to be reported", func() bool { return strings.Contains(logs.String(), "keeping the old ones") })
	if got := call("GET", "/user", "token ghp_fromflag"); got != 200 {
		t.Errorf("a --token dropped from the file: %d", got)
	}
	if got := call("GET", "/user", "token ghp_later"); got != 200 {
		t.Errorf("after a bad file: %d", got)
	}

	req, _ := http.NewRequest("GET", "https://"+addr+"/_sim/stats", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Labels map[string]struct{ Calls int }
		Mints  map[string]int
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Labels["flag-bot"].Calls < 3 || st.Labels["file-bot"].Calls != 1 || st.Mints["app-77-inst-2"] != 1 {
		t.Errorf("stats %+v", st)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	for _, secret := range []string{"ghp_fromflag", "ghp_fromfile", "ghp_later", "ghs_", jwtTok} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain a secret (%.8s…)", secret)
		}
	}
	if !strings.Contains(logs.String(), `"label":"flag-bot"`) || !strings.Contains(logs.String(), `"msg":"listening"`) {
		t.Errorf("logs lack labels: %s", logs.String())
	}
}

// TestBinarySIGTERM runs the real binary and stops it with SIGTERM.
func TestBinarySIGTERM(t *testing.T) {
	bin := testenv.BuildBinary(t, "./cmd/githubsim")
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--addr-file", addrFile, "--token", "bot=ghp_x")
	var logs syncbuf.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := readAddr(t, addrFile)
	resp, err := http.Get("http://" + addr + "/_sim/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("logs %s", logs.String())
	}
}
