package githubsim

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestControlEndpoints(t *testing.T) {
	clock := newClock()
	s, ts := newSim(t, withClock(clock))
	key := rsaKey(t)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM, _ := json.Marshal(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		want   string // a substring of the answer
	}{
		{"health", "GET", "/_sim/health", "", 200, `"ok"`},
		{"add a token", "POST", "/_sim/tokens", `{"token":"ghp_ctl","label":"ctl"}`, 200, `"ctl"`},
		{"add tokens", "POST", "/_sim/tokens", `{"tokens":[{"token":"ghp_a","label":"a"},{"token":"ghp_b","label":"b"}]}`, 200, `["a","b"]`},
		{"a token needs a label", "POST", "/_sim/tokens", `{"token":"ghp_x"}`, 400, "label"},
		{"tokens need JSON", "POST", "/_sim/tokens", `nope`, 400, "decode JSON"},
		{"create an issue", "POST", "/_sim/issues", `{"owner":"acme","repo":"widgets","title":"ctl issue"}`, 200, `{"number":44}`},
		{"an issue in a missing repository", "POST", "/_sim/issues", `{"owner":"acme","repo":"nope","title":"x"}`, 422, "no repository"},
		{"push", "POST", "/_sim/push", `{"owner":"octo","repo":"hello","branch":"main","message":"ctl push"}`, 200, `"sha":"`},
		{"push files", "POST", "/_sim/push", `{"owner":"octo","repo":"hello","message":"files","files":{"a.txt":"a\n"}}`, 200, `"sha":"`},
		{"push needs a message", "POST", "/_sim/push", `{"owner":"octo","repo":"hello"}`, 422, "message"},
		{"add a repository", "POST", "/_sim/repos", `{"owner":"newco","name":"thing","private":true}`, 200, "newco/thing"},
		{"remaining", "POST", "/_sim/remaining", `{"label":"ctl","resource":"search","remaining":0}`, 200, `"remaining":0`},
		{"remaining needs a number", "POST", "/_sim/remaining", `{"label":"ctl"}`, 400, "remaining"},
		{"limit", "POST", "/_sim/limit", `{"label":"ctl","limit":15000}`, 200, `"limit":15000`},
		{"secondary", "POST", "/_sim/secondary", `{"label":"a","retry_after":"30s"}`, 200, `"retry_after_seconds":30`},
		{"secondary in seconds", "POST", "/_sim/secondary", `{"label":"b","retry_after_seconds":5}`, 200, `"retry_after_seconds":5`},
		{"secondary needs a duration", "POST", "/_sim/secondary", `{"label":"b"}`, 400, "retry_after"},
		{"an app", "POST", "/_sim/apps", `{"app_id":42,"key_pem":` + string(pubPEM) + `,"installations":[7]}`, 200, `"app_id":42`},
		{"an app needs a key", "POST", "/_sim/apps", `{"app_id":42,"key_pem":"x"}`, 400, "PEM"},
		{"wrong method", "GET", "/_sim/tokens", "", 405, "use POST"},
		{"unknown", "GET", "/_sim/nope", "", 404, "Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, ts, tt.method, tt.path, "", tt.body)
			if r.status != tt.status || !strings.Contains(string(r.body), tt.want) {
				t.Errorf("%s %s = %d %s, want %d with %q", tt.method, tt.path, r.status, r.body, tt.status, tt.want)
			}
		})
	}
	// The effects are visible through the API.
	if r := get(t, ts, "/search/issues?q=x", "ghp_ctl"); r.status != 403 || r.header.Get("X-RateLimit-Resource") != "search" {
		t.Errorf("search after remaining=0: %d", r.status)
	}
	if r := get(t, ts, "/repos/acme/widgets", "ghp_ctl"); r.header.Get("X-RateLimit-Limit") != "15000" {
		t.Errorf("limit: %v", r.header.Get("X-RateLimit-Limit"))
	}
	if r := get(t, ts, "/repos/acme/widgets", "ghp_a"); r.status != 403 || r.header.Get("Retry-After") != "30" {
		t.Errorf("secondary: %d %q", r.status, r.header.Get("Retry-After"))
	}
	if r := get(t, ts, "/repos/newco/thing/contents/README.md", "ghp_ctl"); r.status != 200 {
		t.Errorf("new repository: %d", r.status)
	}
	if r := get(t, ts, "/repos/octo/hello/commits?per_page=1", "ghp_ctl"); dig(r.list(t), 0, "commit", "message") != "files" {
		t.Errorf("push: %s", r.body)
	}
	now := clock.Now()
	tok := appJWT(t, key, jwt.SigningMethodRS256, jwt.MapClaims{"iss": 42, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	if r := do(t, ts, "POST", "/app/installations/7/access_tokens", "", "", "Authorization: Bearer "+tok); r.status != 201 {
		t.Errorf("mint with an app added over HTTP: %d", r.status)
	}
	var st Stats
	if err := json.Unmarshal(get(t, ts, "/_sim/stats", "").body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Labels["ctl"].Limited != 1 || st.Mints["app-42-inst-7"] != 1 || st.Labels["a"].Limited != 1 {
		t.Errorf("stats over HTTP %+v", st)
	}
	if fmt.Sprint(st) != fmt.Sprint(s.Stats()) {
		t.Errorf("HTTP stats %+v differ from Stats() %+v", st, s.Stats())
	}
	for _, p := range []string{"/_sim/reset-stats", "/_sim/reset-limits"} {
		if r := do(t, ts, "POST", p, "", ""); r.status != 200 {
			t.Errorf("%s: %d", p, r.status)
		}
	}
	if st := s.Stats(); st.Total.Calls != 0 || len(st.Labels) != 0 {
		t.Errorf("after reset-stats: %+v", st)
	}
	if r := get(t, ts, "/repos/acme/widgets", "ghp_a"); r.status != 200 || r.header.Get("X-RateLimit-Used") != "1" {
		t.Errorf("after reset-limits: %d used %s", r.status, r.header.Get("X-RateLimit-Used"))
	}
}

func TestStream(t *testing.T) {
	_, ts := newSim(t)
	resp, err := http.Get(ts.URL + "/_sim/stream?chunks=4&interval=5ms&size=64")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		if line := sc.Text(); !strings.HasPrefix(line, fmt.Sprintf("chunk %d ", n)) || len(line) != 63 {
			t.Errorf("line %d = %q", n, line)
		}
		n++
	}
	if n != 4 || sc.Err() != nil {
		t.Errorf("%d chunks, %v", n, sc.Err())
	}
	if r := get(t, ts, "/_sim/stream?chunks=x", ""); r.status != 400 {
		t.Errorf("bad chunks: %d", r.status)
	}
}

// TestStreamFlushesEachChunk reads the first chunk while the server is
// still waiting to send the second: it must have been flushed.
func TestStreamFlushesEachChunk(t *testing.T) {
	_, ts := newSim(t)
	resp, err := http.Get(ts.URL + "/_sim/stream?chunks=2&interval=1h")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "chunk 0\n" {
		t.Errorf("first chunk %q %v", line, err)
	}
}
