package githubsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzGraphQL sends arbitrary queries and variables through the whole
// handler: every answer must be GitHub-shaped JSON, and nothing may panic
// or reach the "something went wrong" fallback.
func FuzzGraphQL(f *testing.F) {
	seeds := []struct{ query, vars string }{
		{`{viewer{login}}`, ``},
		{`query($o:String!,$n:String!){repository(owner:$o,name:$n){issues(first:5,states:[OPEN],orderBy:{field:CREATED_AT,direction:DESC}){totalCount pageInfo{endCursor hasNextPage} nodes{number title labels(first:3){nodes{name}}}}}}`, `{"o":"acme","n":"widgets"}`},
		{`fragment f on Issue{number} {repository(owner:"acme",name:"widgets"){issueOrPullRequest(number:5){__typename ...f ...on PullRequest{headRefName}}}}`, ``},
		{`{search(query:"is:open",type:ISSUE,first:3){issueCount nodes{...on Issue{title}}}}`, ``},
		{`{__schema{types{name kind fields(includeDeprecated:true){name args{name type{name kind ofType{name}}}}}}}`, ``},
		{`{__type(name:"Issue"){fields{name type{kind ofType{kind ofType{name}}}}}}`, ``},
		{`mutation($t:String!){createIssue(input:{repositoryId:"R_kwDOAAAAAAABhqM",title:$t}){issue{number}}}`, `{"t":"x"}`},
		{`{repository(owner:"acme",name:"widgets"){object(expression:"main:docs"){...on Tree{entries{name object{...on Blob{text}}}}}}}`, ``},
		{`{viewer{login @skip(if:true) repositories(last:2, after:"Y3Vyc29yOnYyOjA="){nodes{name}}}}`, ``},
		{`{repository(owner:"acme",name:"widgets"){issues(first:99999999999999999999){totalCount}}}`, ``},
		{`query{rateLimit(dryRun:true){cost}}`, `"{}"`},
		{`{`, ``},
		{``, `[]`},
	}
	for _, s := range seeds {
		f.Add(s.query, s.vars)
	}
	newServer := func() *Server {
		s := &Server{Limits: map[string]Limit{"graphql": {N: 1 << 30}}}
		s.AddToken(tokBot, "bot")
		return s
	}
	s := newServer()
	f.Fuzz(func(t *testing.T, query, vars string) {
		// Mutations grow the world; start afresh now and then so the
		// fuzzer stays fast.
		s.dataMu.RLock()
		grown := len(s.world.repo("octo", "hello").issues) > 100
		s.dataMu.RUnlock()
		if grown {
			s = newServer()
		}
		body, _ := json.Marshal(map[string]any{"query": query, "variables": json.RawMessage("null")})
		if json.Valid([]byte(vars)) && strings.TrimSpace(vars) != "" {
			body, _ = json.Marshal(map[string]any{"query": query, "variables": json.RawMessage(vars)})
		}
		for _, b := range [][]byte{body, []byte(query)} {
			req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(string(b)))
			req.Header.Set("Authorization", "token "+tokBot)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != 200 && rec.Code != 400 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var out map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("not JSON: %q", rec.Body)
			}
			if out["data"] == nil && out["errors"] == nil && out["message"] == nil {
				t.Fatalf("neither data, errors nor message: %s", rec.Body)
			}
			if strings.Contains(rec.Body.String(), "Something went wrong") || strings.Contains(rec.Body.String(), "internal error") {
				t.Fatalf("internal failure for %q %q: %s", query, vars, rec.Body)
			}
		}
	})
}
