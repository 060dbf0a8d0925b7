package chatops

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAllowListTeams checks who BySlack accepts for each shape of the
// allow-list: no teams, a served-teams list, and users pinned to a team.
func TestAllowListTeams(t *testing.T) {
	for _, tc := range []struct {
		name       string
		list       string
		team, user string
		want       string // the user's name, or "" for nobody
		served     bool   // TeamAllowed
	}{
		{"no teams: the user ID decides", "users:\n  - {id: U1, name: alice}\n", "T9", "U1", "alice", true},
		{"no teams: unknown user", "users:\n  - {id: U1, name: alice}\n", "T9", "U2", "", true},
		{"served team", "teams: [T1]\nusers:\n  - {id: U1, name: alice}\n", "T1", "U1", "alice", true},
		{"other team is not served", "teams: [T1]\nusers:\n  - {id: U1, name: alice}\n", "T2", "U1", "", false},
		{"empty team is not served", "teams: [T1]\nusers:\n  - {id: U1, name: alice}\n", "", "U1", "", false},
		{"user pinned to its team", "users:\n  - {id: U1, team: T1, name: alice}\n", "T1", "U1", "alice", true},
		{"user pinned to another team", "users:\n  - {id: U1, team: T1, name: alice}\n", "T2", "U1", "", true},
		{"pinned user among served teams", "teams: [T1, T2]\nusers:\n  - {id: U1, team: T2, name: alice}\n", "T1", "U1", "", true},
		{"pinned user in its served team", "teams: [T1, T2]\nusers:\n  - {id: U1, team: T2, name: alice}\n", "T2", "U1", "alice", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAllowList([]byte(tc.list))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if u := a.BySlack(tc.team, tc.user); u != nil {
				got = u.Name
			}
			if got != tc.want || a.TeamAllowed(tc.team) != tc.served {
				t.Fatalf("BySlack(%q, %q) = %q, TeamAllowed = %v; want %q, %v", tc.team, tc.user, got, a.TeamAllowed(tc.team), tc.want, tc.served)
			}
		})
	}
}

func teamForm(team, user, text string) string {
	return url.Values{"team_id": {team}, "user_id": {user}, "user_name": {"x"}, "command": {"/glb"}, "text": {text},
		"response_url": {"https://hooks.slack.com/commands/1"}}.Encode()
}

// TestSlackTeams sends signed requests from served and foreign workspaces:
// a foreign workspace may not read or change anything, and an allow-listed
// user ID from the wrong workspace is a stranger.
func TestSlackTeams(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	allow, err := ParseAllowList([]byte("teams: [T1, T2]\nusers:\n  - {id: U1, name: alice}\n  - {id: U2, team: T2, name: bob}\n"))
	if err != nil {
		t.Fatal(err)
	}
	fe := &fakeExec{}
	reg := prometheus.NewPedanticRegistry()
	s, err := New(Config{SigningSecret: []byte("s3cret"), Allow: allow, Exec: fe.exec, Now: func() time.Time { return now },
		AnswerWithin: time.Hour, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, team, user, text string
		ran                    string // what fakeExec saw, "" for nothing
		refusal                string // in the answer when nothing ran
	}{
		{"served team, listed user", "T1", "U1", "drain proxy-2 a", "alice: drain proxy-2 a", ""},
		{"foreign team, listed user", "T3", "U1", "drain proxy-2 b", "", "Slack workspace T3 is not on the glb ChatOps allow-list"},
		{"foreign team may not read", "T3", "U9", "status", "", "Slack workspace T3 is not on the glb ChatOps allow-list"},
		{"foreign team still gets help", "T3", "U9", "help", "", "/glb drain HOST REASON"},
		{"pinned user from its team", "T2", "U2", "drain proxy-2 c", "bob: drain proxy-2 c", ""},
		{"pinned user from another served team", "T1", "U2", "drain proxy-2 d", "", "Slack user U2 is not on the glb ChatOps allow-list"},
		{"served team, stranger reads", "T1", "U9", "status", "slack:U9: status", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fe.count()
			resp, m := post(t, s.Handler(), slackReq{teamForm(tc.team, tc.user, tc.text), now.Unix(), "s3cret"})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			fe.mu.Lock()
			calls := fe.calls[before:]
			fe.mu.Unlock()
			if tc.ran == "" {
				if len(calls) != 0 {
					t.Fatalf("ran %v", calls)
				}
				var text strings.Builder
				for _, b := range m.Blocks {
					text.WriteString(b.Text.Text)
				}
				if !strings.Contains(m.Text+text.String(), tc.refusal) {
					t.Fatalf("answer lacks %q: %+v", tc.refusal, m)
				}
				return
			}
			if len(calls) != 1 || calls[0] != tc.ran {
				t.Fatalf("ran %v, want %q", calls, tc.ran)
			}
		})
	}
	// Changes are counted, refused ones too; a refused read is not a
	// change (it shows in glb_chatops_requests_total as denied).
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP glb_chatops_changes_total Host state changes asked for in chat, by verb and result (ok, refused, error, denied).
# TYPE glb_chatops_changes_total counter
glb_chatops_changes_total{result="denied",verb="drain"} 2
glb_chatops_changes_total{result="ok",verb="drain"} 2
`), "glb_chatops_changes_total"); err != nil {
		t.Error(err)
	}
}

// TestReplaySurvivesRestart: with a replay file, a second server on the
// same file refuses a request the first one served, until the window ends.
func TestReplaySurvivesRestart(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	file := filepath.Join(t.TempDir(), "replay")
	allow, _ := ParseAllowList([]byte("users:\n  - {id: U1, name: alice}\n"))
	newServer := func() (*Server, *fakeExec) {
		t.Helper()
		fe := &fakeExec{}
		s, err := New(Config{SigningSecret: []byte("s3cret"), Allow: allow, Exec: fe.exec, Now: clock, AnswerWithin: time.Hour, ReplayFile: file})
		if err != nil {
			t.Fatal(err)
		}
		return s, fe
	}
	req := slackReq{form("U1", "drain proxy-2 once", "https://hooks.slack.com/commands/1"), now.Unix(), "s3cret"}

	s1, fe1 := newServer()
	if resp, _ := post(t, s1.Handler(), req); resp.StatusCode != 200 || fe1.count() != 1 {
		t.Fatalf("first request: %d, %d runs", resp.StatusCode, fe1.count())
	}
	s2, fe2 := newServer() // a restart
	if resp, _ := post(t, s2.Handler(), req); resp.StatusCode != 409 || fe2.count() != 0 {
		t.Fatalf("replay after a restart: %d, %d runs; want 409 and none", resp.StatusCode, fe2.count())
	}

	// After the window the entry is gone from the file; the timestamp
	// check now refuses the old request on its own.
	now = now.Add(2*MaxSkew + time.Second)
	s3, _ := newServer()
	if n := len(s3.seen); n != 0 {
		t.Fatalf("%d entries loaded after the window, want 0", n)
	}
}

func TestReplayFileErrors(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	allow, _ := ParseAllowList([]byte("users:\n  - {id: U1, name: alice}\n"))
	dir := t.TempDir()

	// A corrupt file stops New with a message that says what to do.
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("1800000000 v0=ab\nnot a line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{SigningSecret: []byte("k"), Allow: allow, Exec: (&fakeExec{}).exec, ReplayFile: bad})
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "delete the file") {
		t.Fatalf("New with a corrupt file: %v", err)
	}

	// A file that cannot be written refuses the request (503) and runs
	// nothing: it could otherwise be replayed after a restart.
	fe := &fakeExec{}
	s, err := New(Config{SigningSecret: []byte("k"), Allow: allow, Exec: fe.exec, Now: func() time.Time { return now },
		ReplayFile: filepath.Join(dir, "no-such-dir", "replay")})
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := post(t, s.Handler(), slackReq{form("U1", "drain proxy-2 x", "https://hooks.slack.com/commands/1"), now.Unix(), "k"})
	if resp.StatusCode != 503 || fe.count() != 0 {
		t.Fatalf("unwritable replay file: %d, %d runs; want 503 and none", resp.StatusCode, fe.count())
	}
}
