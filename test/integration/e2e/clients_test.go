package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glb-project/glb/test/integration/stack"
)

// client runs a command in the client namespace with a CI job's
// environment (gh pointed at the VIP, the CA trusted).
func client(t *testing.T, s *stack.Stack, home string, name string, args ...string) string {
	t.Helper()
	cmd := s.Client.Command(context.Background(), name, args...)
	cmd.Env = s.ClientEnv(home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.ReplaceAll(string(out), s.Token, "[token]"))
	}
	return string(out)
}

// TestRealClients drives the whole stack as a CI job would: curl, git and
// gh, through the VIP, with TLS and the client token.
func TestRealClients(t *testing.T) {
	requirements(t, "curl", "git", "gh", "ss")
	s := startStack(t, nil)
	home := t.TempDir()

	t.Run("curl", func(t *testing.T) {
		out := client(t, s, home, "curl", "-sS", "--fail", "-D", "-", "--cacert", s.CAFile,
			"-H", "Authorization: token "+s.Token, "https://"+stack.VIP.String()+"/repos/acme/widgets")
		if !strings.Contains(out, `"full_name":"acme/widgets"`) && !strings.Contains(out, `"full_name": "acme/widgets"`) {
			t.Fatalf("curl through the VIP:\n%.500s", out)
		}
		if !strings.Contains(strings.ToLower(out), "x-glb-cache:") {
			t.Errorf("no X-GLB-Cache header: the answer did not come from glb-proxy:\n%.500s", out)
		}
		// The GHES prefix works the same.
		client(t, s, home, "curl", "-sS", "--fail", "-o", "/dev/null", "--cacert", s.CAFile,
			"-H", "Authorization: token "+s.Token, "https://"+stack.VIP.String()+"/api/v3/repos/acme/widgets/issues")
	})

	t.Run("git clone", func(t *testing.T) {
		dst := filepath.Join(home, "widgets")
		client(t, s, home, "git", "clone", "--quiet", s.GitURL("acme/widgets"), dst)
		if _, err := os.Stat(filepath.Join(dst, "README.md")); err != nil {
			t.Fatalf("the clone has no README.md: %v", err)
		}
		if log := client(t, s, home, "git", "-C", dst, "log", "--oneline"); strings.Count(log, "\n") < 2 {
			t.Errorf("git log of the clone:\n%s", log)
		}
	})

	t.Run("gh", func(t *testing.T) {
		out := client(t, s, home, "gh", "api", "repos/acme/widgets")
		if !strings.Contains(out, "acme/widgets") {
			t.Fatalf("gh api:\n%.500s", out)
		}
		list := client(t, s, home, "gh", "issue", "list", "--limit", "5")
		if strings.Count(strings.TrimSpace(list), "\n") < 2 {
			t.Errorf("gh issue list:\n%s", list)
		}
	})

	t.Run("no token reaches a log", func(t *testing.T) {
		for _, p := range s.Proxies {
			b, err := os.ReadFile(p.Server.LogPath)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), s.Token) {
				t.Errorf("%s's glb-proxy log holds the client token", p.Name)
			}
		}
	})
}

// TestCacheEconomy: identical requests through the VIP, spread over the
// three proxy hosts by the directors, are answered from the shared Redis
// cache with ETag revalidation: after the first, none spends rate limit at
// githubsim.
func TestCacheEconomy(t *testing.T) {
	requirements(t, "ss")
	s := startStack(t, nil)
	const path = "/repos/acme/widgets/issues?per_page=5"
	c := s.ClientHTTP()
	if code, _, err := s.APIGet(c, path); err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	before, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	modes := map[string]int{}
	for i := range n {
		// A new connection each time, so the requests spread over the hosts.
		c := s.ClientHTTP()
		c.Transport.(*http.Transport).DisableKeepAlives = true
		req, _ := http.NewRequest("GET", "https://"+stack.VIP.String()+path, nil)
		req.Header.Set("Authorization", "token "+s.Token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		modes[resp.Header.Get("X-GLB-Cache")]++
	}
	after, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d identical requests: cache modes %v; githubsim calls %d → %d, counted %d → %d, 304s %d → %d", n, modes,
		before.Total.Calls, after.Total.Calls, before.Total.Counted, after.Total.Counted, before.Total.NotModified, after.Total.NotModified)
	if after.Total.Counted != before.Total.Counted {
		t.Errorf("repeated identical requests spent %d rate-limited calls at githubsim, want 0", after.Total.Counted-before.Total.Counted)
	}
	if modes["MISS"] != 0 || modes["CHANGED"] != 0 {
		t.Errorf("cache modes %v: a repeated request went upstream uncached", modes)
	}
	served := 0
	for _, p := range s.Proxies {
		m, err := s.Metrics(s.Router, p.PlainURL()+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if stack.Sum(m, "glb_proxy_requests_total", `client="`+stack.ClientName+`"`) > 0 {
			served++
		}
	}
	if served < 2 {
		t.Errorf("only %d proxy host served the requests; the test wants them spread so that the shared cache matters", served)
	}
}
