package githubsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Benchmarks report the simulator's cost per request. Compare each with
// BenchmarkBaselineHTTP, a handler that writes a fixed body of the same
// size as a repository, run the same way in the same process.

func benchSim(b *testing.B) (*Server, *httptest.Server) {
	s := &Server{Limits: map[string]Limit{"core": {N: 1 << 30}, "graphql": {N: 1 << 30}}}
	s.AddToken(tokBot, "bot")
	ts := httptest.NewServer(s)
	b.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts
}

// benchDo sends the request newReq makes until the benchmark ends.
func benchDo(b *testing.B, client *http.Client, newReq func() *http.Request, want int) {
	for b.Loop() {
		resp, err := client.Do(newReq())
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

func BenchmarkBaselineHTTP(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 5800)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer ts.Close()
	req, _ := http.NewRequest("GET", ts.URL+"/repos/acme/widgets", nil)
	benchGet(b, ts.Client(), req, 200)
}

func BenchmarkRESTRepo(b *testing.B) {
	_, ts := benchSim(b)
	req, _ := http.NewRequest("GET", ts.URL+"/repos/acme/widgets", nil)
	req.Header.Set("Authorization", "token "+tokBot)
	benchGet(b, ts.Client(), req, 200)
}

func BenchmarkRESTRepoNotModified(b *testing.B) {
	_, ts := benchSim(b)
	req, _ := http.NewRequest("GET", ts.URL+"/repos/acme/widgets", nil)
	req.Header.Set("Authorization", "token "+tokBot)
	resp, err := ts.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	benchGet(b, ts.Client(), req, 304)
}

func BenchmarkRESTIssues100(b *testing.B) {
	_, ts := benchSim(b)
	req, _ := http.NewRequest("GET", ts.URL+"/repos/acme/widgets/issues?state=all&per_page=100", nil)
	req.Header.Set("Authorization", "token "+tokBot)
	benchGet(b, ts.Client(), req, 200)
}

func benchGet(b *testing.B, client *http.Client, req *http.Request, want int) {
	benchDo(b, client, func() *http.Request { return req }, want)
}

// BenchmarkGraphQLIssueList runs the query `gh issue list` sends.
func BenchmarkGraphQLIssueList(b *testing.B) {
	_, ts := benchSim(b)
	q := `fragment issue on Issue {number,title,url,state,updatedAt,labels(first:100){nodes{id,name,description,color},totalCount},stateReason}
	query IssueList($owner: String!, $repo: String!, $limit: Int, $endCursor: String, $states: [IssueState!] = OPEN, $assignee: String, $author: String, $mention: String) {
		repository(owner: $owner, name: $repo) { hasIssuesEnabled
			issues(first: $limit, after: $endCursor, orderBy: {field: CREATED_AT, direction: DESC}, states: $states, filterBy: {assignee: $assignee, createdBy: $author, mentioned: $mention}) {
				totalCount nodes { ...issue } pageInfo { hasNextPage endCursor } } } }`
	body, _ := json.Marshal(map[string]any{"query": q, "variables": map[string]any{"owner": "acme", "repo": "widgets", "limit": 30, "states": []string{"OPEN"}}})
	benchDo(b, ts.Client(), func() *http.Request {
		req, _ := http.NewRequest("POST", ts.URL+"/graphql", bytes.NewReader(body))
		req.Header.Set("Authorization", "token "+tokBot)
		return req
	}, 200)
}

// BenchmarkNewWorld is the start-up cost: seeding the data and hashing
// every git object.
func BenchmarkNewWorld(b *testing.B) {
	for b.Loop() {
		newWorld()
	}
}
