package githubsim

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v75/github"

	"github.com/glb-project/glb/internal/testenv"
)

// TestGoGitHub drives the simulator with go-github configured for an
// enterprise server, as CI jobs do.
func TestGoGitHub(t *testing.T) {
	s, ts := newSim(t, func(s *Server) { s.Limits = map[string]Limit{"search": {N: 1}} })
	ctx := context.Background()
	c, err := github.NewClient(ts.Client()).WithAuthToken(tokBot).WithEnterpriseURLs(ts.URL, ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	repo, resp, err := c.Repositories.Get(ctx, "acme", "widgets")
	if err != nil || repo.GetFullName() != "acme/widgets" || repo.GetDefaultBranch() != "main" || repo.GetOwner().GetLogin() != "acme" {
		t.Fatalf("Get: %v %v", repo, err)
	}
	if resp.Rate.Limit != 5000 || resp.Rate.Remaining != 4999 || resp.Rate.Resource != "core" {
		t.Errorf("rate %+v", resp.Rate)
	}

	var all []*github.Issue
	opt := &github.IssueListByRepoOptions{State: "all", ListOptions: github.ListOptions{PerPage: 20}}
	for {
		page, resp, err := c.Issues.ListByRepo(ctx, "acme", "widgets", opt)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if resp.NextPage == 0 {
			if resp.FirstPage != 1 || resp.PrevPage != 2 {
				t.Errorf("last page links: first %d prev %d", resp.FirstPage, resp.PrevPage)
			}
			break
		}
		if resp.LastPage != 3 && resp.NextPage != 3 {
			t.Errorf("last page %d", resp.LastPage)
		}
		opt.ListOptions.Page = resp.NextPage
	}
	if len(all) != 43 {
		t.Errorf("%d issues", len(all))
	}

	is, _, err := c.Issues.Create(ctx, "acme", "widgets", &github.IssueRequest{Title: github.Ptr("from go-github"), Labels: &[]string{"bug"}})
	if err != nil || is.GetNumber() != 44 || is.GetUser().GetLogin() != "bot" || is.Labels[0].GetName() != "bug" {
		t.Fatalf("Create: %v %v", is, err)
	}
	if _, _, err := c.Issues.CreateComment(ctx, "acme", "widgets", 44, &github.IssueComment{Body: github.Ptr("hi")}); err != nil {
		t.Fatal(err)
	}
	pr, _, err := c.PullRequests.Get(ctx, "acme", "widgets", 5)
	if err != nil || pr.GetHead().GetRef() != "feature/sprockets" || pr.GetMerged() {
		t.Errorf("PR: %v %v", pr, err)
	}
	file, _, _, err := c.Repositories.GetContents(ctx, "octo", "hello", "hello.sh", nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := file.GetContent(); err != nil || body != "#!/bin/sh\necho hello\n" {
		t.Errorf("contents %q %v", body, err)
	}
	commits, _, err := c.Repositories.ListCommits(ctx, "acme", "widgets", &github.CommitsListOptions{SHA: "dev"})
	if err != nil || len(commits) != 6 || commits[0].GetCommit().GetMessage() != "Experiment with gears" {
		t.Errorf("commits %d %v", len(commits), err)
	}
	limits, _, err := c.RateLimit.Get(ctx)
	if err != nil || limits.GetCore().Limit != 5000 || limits.GetSearch().Limit != 1 || limits.GetGraphQL().Limit != 5000 {
		t.Errorf("rate limits %+v %v", limits, err)
	}
	if _, _, err := c.Search.Issues(ctx, "repo:acme/widgets is:open", nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Search.Issues(ctx, "repo:acme/widgets is:open", nil)
	var rle *github.RateLimitError
	if !errors.As(err, &rle) || rle.Rate.Resource != "search" {
		t.Errorf("exhausted search: %v", err)
	}
	// go-github files an enterprise search limit under core, so a fresh
	// client sees the secondary limit.
	s.TriggerSecondaryLimit("bot", 42*time.Second)
	c2, _ := github.NewClient(ts.Client()).WithAuthToken(tokBot).WithEnterpriseURLs(ts.URL, ts.URL)
	_, _, err = c2.Repositories.Get(ctx, "acme", "gadgets")
	var abuse *github.AbuseRateLimitError
	if !errors.As(err, &abuse) || abuse.GetRetryAfter() != 42*time.Second {
		t.Errorf("secondary limit: %v", err)
	}
}

// ghEnv starts the simulator with TLS, trusts its certificate and returns
// the environment gh needs to use it as an enterprise host.
func ghEnv(t *testing.T) (*Server, *httptest.Server, []string) {
	t.Helper()
	testenv.RequireBinary(t, "gh")
	s := &Server{}
	s.AddToken(tokBot, "bot")
	ts := httptest.NewTLSServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(ts.URL, "https://")
	env := []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "GH_CONFIG_DIR=" + filepath.Join(dir, "gh"),
		"GH_HOST=" + host, "GH_ENTERPRISE_TOKEN=" + tokBot, "SSL_CERT_FILE=" + ca, "GH_PROMPT_DISABLED=1",
		"GH_NO_UPDATE_NOTIFIER=1", "NO_COLOR=1", "GH_PAGER=cat"}
	return s, ts, env
}

func runGH(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("gh", args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimRight(string(out), "\n")
}

func TestGH(t *testing.T) {
	s, ts, env := ghEnv(t)
	host := strings.TrimPrefix(ts.URL, "https://")
	repo := host + "/acme/widgets"
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"gh api REST", []string{"api", "repos/acme/widgets", "--jq", ".full_name"}, func(t *testing.T, out string) {
			if out != "acme/widgets" {
				t.Errorf("out %q", out)
			}
		}},
		{"gh api --paginate", []string{"api", "--paginate", "repos/acme/widgets/issues?per_page=10", "--jq", ".[].number"}, func(t *testing.T, out string) {
			if n := len(strings.Split(out, "\n")); n != 34 {
				t.Errorf("%d open issues and pulls, want 34", n)
			}
		}},
		{"gh api graphql", []string{"api", "graphql", "-f", "query=query($o:String!){viewer{login} repository(owner:$o,name:\"widgets\"){issues(first:1,states:OPEN){totalCount}}}", "-f", "o=acme", "--jq", ".data.viewer.login, .data.repository.issues.totalCount"}, func(t *testing.T, out string) {
			if out != "bot\n32" {
				t.Errorf("out %q", out)
			}
		}},
		{"gh issue list", []string{"issue", "list", "-R", repo}, func(t *testing.T, out string) {
			lines := strings.Split(out, "\n")
			if len(lines) != 30 || !strings.HasPrefix(lines[0], "43\tOPEN\tDocument the build\t") {
				t.Errorf("%d lines, first %q", len(lines), lines[0])
			}
		}},
		{"gh issue list with filters", []string{"issue", "list", "-R", repo, "--state", "closed", "--label", "bug", "--limit", "100"}, func(t *testing.T, out string) {
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Split(l, "\t"); len(f) < 4 || f[1] != "CLOSED" || !strings.Contains(f[3], "bug") {
					t.Errorf("line %q", l)
				}
			}
		}},
		{"gh issue view", []string{"issue", "view", "2", "-R", repo}, func(t *testing.T, out string) {
			if !strings.Contains(out, "title:\tImprove error messages") || !strings.Contains(out, "comments:\t2") {
				t.Errorf("out %q", out)
			}
		}},
		{"gh issue list --search", []string{"issue", "list", "-R", repo, "--search", "sizing"}, func(t *testing.T, out string) {
			if lines := strings.Split(out, "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "30\tOPEN\tTest widget sizing") {
				t.Errorf("out %q", out)
			}
		}},
		{"gh pr view", []string{"pr", "view", "12", "-R", repo, "--json", "number,state,headRefName"}, func(t *testing.T, out string) {
			if out != `{"headRefName":"docs-typo","number":12,"state":"MERGED"}` {
				t.Errorf("out %q", out)
			}
		}},
		{"gh search issues", []string{"search", "issues", "--repo", "acme/widgets", "--state", "closed", "sizing"}, func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "acme/widgets\t40\tclosed\tFix widget sizing") {
				t.Errorf("out %q", out)
			}
		}},
		{"gh issue create", []string{"issue", "create", "-R", repo, "-t", "Filed by gh", "-b", "body"}, func(t *testing.T, out string) {
			if !strings.HasSuffix(out, "/acme/widgets/issues/44") {
				t.Errorf("out %q", out)
			}
		}},
		{"gh issue comment", []string{"issue", "comment", "44", "-R", repo, "-b", "commented by gh"}, nil},
		{"gh pr list", []string{"pr", "list", "-R", repo}, func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "20\tExperiment with gears\tdev\tDRAFT") {
				t.Errorf("out %q", out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := runGH(t, env, tt.args...)
			if tt.check != nil {
				tt.check(t, out)
			}
		})
	}
	if got := runGH(t, env, "api", "repos/acme/widgets/issues/44/comments", "--jq", ".[0].body"); got != "commented by gh" {
		t.Errorf("comment %q", got)
	}
	st := s.Stats().Labels["bot"]
	if st.Resources["graphql"].Counted == 0 || st.Resources["core"].Counted == 0 {
		t.Errorf("stats %+v", st)
	}
}
