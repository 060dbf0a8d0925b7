package githubsim

import (
	"bytes"
	"encoding/json"
	"github.com/glb-project/glb/internal/fakeclock"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)) }

// Tokens used throughout the tests; each test gets its own Server.
const (
	tokBot   = "ghp_botbotbotbotbotbotbotbotbotbotbot01"
	tokCI    = "ghp_cicicicicicicicicicicicicicicicici02"
	tokOther = "ghp_otherotherotherotherotherotherot03"
)

// newSim starts a Server with two PATs ("bot", "ci") behind httptest.
func newSim(t testing.TB, opts ...func(*Server)) (*Server, *httptest.Server) {
	t.Helper()
	s := &Server{}
	for _, o := range opts {
		o(s)
	}
	s.AddToken(tokBot, "bot")
	s.AddToken(tokCI, "ci")
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, ts
}

func withClock(c *fakeclock.Clock) func(*Server) { return func(s *Server) { s.Now = c.Now } }

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t testing.TB) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	return v
}

func (r reply) obj(t testing.TB) map[string]any {
	t.Helper()
	m, ok := r.json(t).(map[string]any)
	if !ok {
		t.Fatalf("want a JSON object, got %s", r.body)
	}
	return m
}

func (r reply) list(t testing.TB) []any {
	t.Helper()
	l, ok := r.json(t).([]any)
	if !ok {
		t.Fatalf("want a JSON array, got %s", r.body)
	}
	return l
}

// do sends one request. token "" sends none; headers are "Name: value".
func do(t testing.TB, ts *httptest.Server, method, path, token string, body string, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func get(t testing.TB, ts *httptest.Server, path, token string, headers ...string) reply {
	t.Helper()
	return do(t, ts, http.MethodGet, path, token, "", headers...)
}

// gql posts a GraphQL query with variables.
func gql(t testing.TB, ts *httptest.Server, token, query string, vars map[string]any) reply {
	t.Helper()
	b, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	return do(t, ts, http.MethodPost, "/graphql", token, string(b))
}

// jsonEqual compares a value with the JSON text want.
func jsonEqual(t testing.TB, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON %q: %v", want, err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("JSON mismatch\n got: %s\nwant: %s", gb, wb)
	}
}

// dig walks a decoded JSON value by keys and indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k < 0 || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}
