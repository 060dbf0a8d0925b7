package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glb-project/glb/internal/nstest"
	"github.com/glb-project/glb/proxy/clients"
)

func runCapture(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errb, nil)
	return out.String(), errb.String(), err
}

func TestHelpAndVersion(t *testing.T) {
	_, stderr, err := runCapture(t, "", "--help")
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "glb-proxy token new") || !strings.Contains(stderr, "glb-proxy clients push") || !strings.Contains(stderr, "-config") {
		t.Fatalf("--help: %v\n%s", err, stderr)
	}
	out, _, err := runCapture(t, "", "--version")
	if err != nil || !strings.HasPrefix(out, "glb-proxy ") {
		t.Fatalf("--version: %q %v", out, err)
	}
	if _, _, err := runCapture(t, ""); err == nil || !strings.Contains(err.Error(), "--config is required") {
		t.Fatalf("no --config: %v", err)
	}
	if _, _, err := runCapture(t, "", "--config", "/nonexistent/glb-proxy.yaml"); err == nil {
		t.Fatal("missing config file accepted")
	}
	// Every command group explains itself, and asking is not an error
	// (main exits 0 on flag.ErrHelp).
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"token", "--help"}, []string{"glb-proxy token new", "glb-proxy token hash"}},
		{[]string{"token", "-h"}, []string{"glb-proxy token new"}},
		{[]string{"token", "new", "--help"}, []string{"-name"}},
		{[]string{"token", "hash", "--help"}, []string{"prints its sha256"}},
		{[]string{"clients", "--help"}, []string{"glb-proxy clients push", "glb-proxy clients show"}},
		{[]string{"clients", "help"}, []string{"glb-proxy clients push"}},
		{[]string{"clients", "push", "--help"}, []string{"-clients", "-consul"}},
		{[]string{"check", "--help"}, []string{"-config", "-clients"}},
	} {
		_, stderr, err := runCapture(t, "", tc.args...)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%q: %v, want flag.ErrHelp", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%q: help lacks %q:\n%s", tc.args, w, stderr)
			}
		}
	}
	if _, _, err := runCapture(t, "", "token", "hash", "glbp_x"); err == nil || !strings.Contains(err.Error(), "never on the command line") {
		t.Errorf("token hash with an argument: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "mint"}, `unknown command "mint"`},
		{[]string{"clients"}, `want "push" or "show"`},
		{[]string{"clients", "pull"}, `want "push" or "show"`},
		{[]string{"clients", "show"}, "--consul is required"},
		{[]string{"clients", "push", "--consul", "consul://127.0.0.1:1"}, "give a clean key prefix"},
		{[]string{"clients", "show", "--consul", "consul://127.0.0.1:1/glb", "extra"}, `unexpected argument "extra"`},
	} {
		if _, _, err := runCapture(t, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

func TestTokenCommands(t *testing.T) {
	out, _, err := runCapture(t, "", "token", "new", "--name", "ci")
	if err != nil {
		t.Fatal(err)
	}
	var tok, sum string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "token:"); ok {
			tok = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "token_sha256:"); ok {
			sum = strings.TrimSpace(v)
		}
	}
	if clients.CheckToken(tok) != nil || sum != clients.HashToken(tok) || !strings.Contains(out, "- name: ci") {
		t.Fatalf("token new:\n%s", out)
	}
	// The printed entry is a valid registry.
	if _, err := clients.Parse([]byte("version: 1\nclients:\n" + out[strings.Index(out, "  - name"):])); err != nil {
		t.Fatalf("printed entry does not parse: %v", err)
	}
	got, _, err := runCapture(t, tok+"\n", "token", "hash")
	if err != nil || strings.TrimSpace(got) != sum {
		t.Fatalf("token hash: %q %v", got, err)
	}
	if _, _, err := runCapture(t, "ghp_notours\n", "token", "hash"); err == nil {
		t.Fatal("token hash accepted a non-glbp token")
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "clients.yaml")
	os.WriteFile(good, []byte("version: 1\nclients:\n  - name: a\n    token_sha256: "+clients.HashToken("x")+"\n    scopes: [{path: /x}]\n"), 0o600)
	if out, _, err := runCapture(t, "", "check", "--clients", good); err != nil || !strings.Contains(out, "ok (1 clients)") {
		t.Fatalf("check good registry: %q %v", out, err)
	}
	wide := filepath.Join(dir, "wide.yaml")
	os.WriteFile(wide, []byte("version: 1\nclients:\n  - name: a\n    token_sha256: "+clients.HashToken("x")+"\n    scopes: [{path: /repos/acme/widgets/**}, {graphql: query}]\n"), 0o600)
	if out, _, err := runCapture(t, "", "check", "--clients", wide); err != nil || !strings.Contains(out, "warning: client a: {graphql: query} reads every repository") {
		t.Fatalf("check a registry with a GraphQL scope beside a repo scope: %q %v", out, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nclients: [{name: a}]\n"), 0o600)
	if _, _, err := runCapture(t, "", "check", "--clients", bad); err == nil || !strings.Contains(err.Error(), "token_sha256: missing") {
		t.Fatalf("check bad registry: %v", err)
	}
	cfg := filepath.Join(dir, "glb-proxy.yaml")
	os.WriteFile(cfg, []byte("clients_file: "+good+"\ncredentials: [{name: bot, pat_env: GLB_TEST_UNSET_PAT}]\n"), 0o600)
	if out, _, err := runCapture(t, "", "check", "--config", cfg, "--no-secrets"); err != nil || !strings.Contains(out, "ok (1 clients)") {
		t.Fatalf("check config without secrets: %q %v", out, err)
	}
	if _, _, err := runCapture(t, "", "check", "--config", cfg); err == nil || !strings.Contains(err.Error(), "GLB_TEST_UNSET_PAT") {
		t.Fatalf("check config with an unset secret: %v", err)
	}
	os.WriteFile(cfg, []byte("clients_consul: consul://127.0.0.1:1/glb\ncredentials: [{name: bot, pat_env: GLB_TEST_UNSET_PAT}]\n"), 0o600)
	if out, _, err := runCapture(t, "", "check", "--config", cfg, "--no-secrets"); err != nil || !strings.Contains(out, "consul://127.0.0.1:1/glb/proxy/clients, not checked here") {
		t.Fatalf("check config with clients_consul: %q %v", out, err)
	}
}

// TestSIGHUPBrokenRegistryLogsOnce: a registry that breaks between two
// SIGHUPs is reported by one log line, and the last good one serves on.
func TestSIGHUPBrokenRegistryLogsOnce(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "clients.yaml")
	tok, err := clients.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(reg, []byte("version: 1\nclients:\n  - name: a\n    token_sha256: "+clients.HashToken(tok)+"\n    scopes: [{path: /x}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "glb-proxy.yaml")
	t.Setenv("GLB_TEST_PAT", "ghp_test")
	// clients_poll is long so that only SIGHUP reads the registry.
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nupstream: {rest: \"http://127.0.0.1:1\"}\n"+
		"credentials: [{name: bot, pat_env: GLB_TEST_PAT}]\nclients_file: "+reg+"\nclients_poll: 1h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, cfg)
	if err := os.WriteFile(reg, []byte("version: 1\nclients: [{name: BROKEN}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.sighup()
	nstest.WaitFor(t, 20*time.Second, "the reload to be reported", func() bool {
		r.exited()
		return len(r.lines(`"msg":"reload incomplete"`)) > 0
	})
	if got := r.lines("BROKEN"); len(got) != 1 || !strings.Contains(got[0], "keeping the last good one") {
		t.Errorf("want one line about the broken registry, got %d:\n%s", len(got), strings.Join(got, "\n"))
	}
	if err := r.stop(); err != nil {
		t.Fatalf("run: %v\n%s", err, r.logs.String())
	}
}
