package githubsim

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestGraphQLQueries(t *testing.T) {
	_, ts := newSim(t)
	tests := []struct {
		name  string
		query string
		vars  map[string]any
		want  string
	}{
		{"viewer and typename", `{viewer{login __typename}}`, nil,
			`{"data":{"viewer":{"login":"bot","__typename":"User"}}}`},
		{"aliases and variables",
			`query Q($o: String!, $n: String!) { a: repository(owner: $o, name: $n) { nameWithOwner isPrivate visibility }
			  b: repository(owner: "octo", name: "hello") { name defaultBranchRef { name } owner { login __typename } } }`,
			map[string]any{"o": "acme", "n": "gadgets"},
			`{"data":{"a":{"nameWithOwner":"acme/gadgets","isPrivate":true,"visibility":"PRIVATE"},
			  "b":{"name":"hello","defaultBranchRef":{"name":"main"},"owner":{"login":"octo","__typename":"User"}}}}`},
		{"inline fragments on a union",
			`{repository(owner:"acme",name:"widgets"){ p: issueOrPullRequest(number:5){ __typename ...on PullRequest{ headRefName isDraft state } ...on Issue{ title } }
			  i: issueOrPullRequest(number:4){ __typename ...on PullRequest{ headRefName } ...on Issue{ state stateReason } } }}`, nil,
			`{"data":{"repository":{"p":{"__typename":"PullRequest","headRefName":"feature/sprockets","isDraft":false,"state":"OPEN"},
			  "i":{"__typename":"Issue","state":"CLOSED","stateReason":"COMPLETED"}}}}`},
		{"named fragments, merged fields",
			`fragment f on Issue { number title } query { repository(owner:"octo",name:"hello"){ issue(number:1){ ...f number author { login } } } }`, nil,
			`{"data":{"repository":{"issue":{"number":1,"title":"Add Japanese","author":{"login":"monalisa"}}}}}`},
		{"skip and include",
			`query($yes: Boolean!) { viewer { login @include(if: $yes) name @skip(if: $yes) } }`, map[string]any{"yes": true},
			`{"data":{"viewer":{"login":"bot"}}}`},
		{"a connection page",
			`{repository(owner:"acme",name:"widgets"){issues(first:2, states:[OPEN], orderBy:{field:CREATED_AT,direction:ASC}){
			  totalCount pageInfo{hasNextPage hasPreviousPage} nodes{number} edges{node{number}}}}}`, nil,
			`{"data":{"repository":{"issues":{"totalCount":32,"pageInfo":{"hasNextPage":true,"hasPreviousPage":false},
			  "nodes":[{"number":1},{"number":2}],"edges":[{"node":{"number":1}},{"node":{"number":2}}]}}}}`},
		{"the last items of a connection",
			`{repository(owner:"acme",name:"widgets"){issue(number:2){comments(last:1){totalCount nodes{body author{login}}}}}}`, nil,
			`{"data":{"repository":{"issue":{"comments":{"totalCount":2,"nodes":[{"body":"Comment 2 on #2.","author":{"login":"hubot"}}]}}}}}`},
		{"gh's filterBy with nulls",
			`query($a: String) {repository(owner:"acme",name:"widgets"){issues(first:1, filterBy:{assignee:$a, createdBy:"hubot"}, orderBy:{field:CREATED_AT,direction:DESC}){nodes{number author{login}}}}}`,
			map[string]any{"a": nil},
			`{"data":{"repository":{"issues":{"nodes":[{"number":43,"author":{"login":"hubot"}}]}}}}`},
		{"pull requests by state",
			`{repository(owner:"acme",name:"widgets"){pullRequests(first:5, states:[MERGED]){nodes{number merged baseRefName}}}}`, nil,
			`{"data":{"repository":{"pullRequests":{"nodes":[{"number":12,"merged":true,"baseRefName":"main"}]}}}}`},
		{"search issues",
			`{search(query:"repo:acme/widgets is:pr is:open", type:ISSUE, first:10){issueCount nodes{__typename ...on PullRequest{number}}}}`, nil,
			`{"data":{"search":{"issueCount":2,"nodes":[{"__typename":"PullRequest","number":20},{"__typename":"PullRequest","number":5}]}}}`},
		{"search repositories",
			`{search(query:"org:acme", type:REPOSITORY, first:5){repositoryCount nodes{...on Repository{nameWithOwner}}}}`, nil,
			`{"data":{"search":{"repositoryCount":2,"nodes":[{"nameWithOwner":"acme/widgets"},{"nameWithOwner":"acme/gadgets"}]}}}`},
		{"git objects",
			`{repository(owner:"octo",name:"hello"){ readme: object(expression:"main:README.md"){ __typename ...on Blob{ text byteSize } }
			  head: object(expression:"main"){ ...on Commit{ messageHeadline parents(first:1){ totalCount } history(first:10){ totalCount } } }
			  tree: object(expression:"main:"){ ...on Tree{ entries{ name type } } } }}`, nil,
			`{"data":{"repository":{"readme":{"__typename":"Blob","text":"# hello\n","byteSize":8},
			  "head":{"messageHeadline":"Say hello in German","parents":{"totalCount":1},"history":{"totalCount":3}},
			  "tree":{"entries":[{"name":"README.md","type":"blob"},{"name":"bonjour.sh","type":"blob"},{"name":"hallo.sh","type":"blob"},{"name":"hello.sh","type":"blob"}]}}}}`},
		{"refs",
			`{repository(owner:"acme",name:"widgets"){refs(refPrefix:"refs/heads/", first:2){totalCount nodes{name}}}}`, nil,
			`{"data":{"repository":{"refs":{"totalCount":4,"nodes":[{"name":"dev"},{"name":"docs-typo"}]}}}}`},
		{"node by id",
			`{node(id:"` + nodeID("R", 100003) + `"){__typename ...on Repository{nameWithOwner}}}`, nil,
			`{"data":{"node":{"__typename":"Repository","nameWithOwner":"octo/hello"}}}`},
		{"users and organisations",
			`{user(login:"octocat"){login name company __typename} organization(login:"acme"){name
			  repositories(first:5, orderBy:{field:NAME,direction:ASC}){totalCount nodes{name}}}}`, nil,
			`{"data":{"user":{"login":"octocat","name":"The Octocat","company":"@github","__typename":"User"},
			  "organization":{"name":"Acme Corp","repositories":{"totalCount":2,"nodes":[{"name":"gadgets"},{"name":"widgets"}]}}}}`},
		{"commit authors",
			`{repository(owner:"acme",name:"widgets"){defaultBranchRef{target{...on Commit{oid abbreviatedOid author{name email user{login}}}}}}}`, nil,
			`{"data":{"repository":{"defaultBranchRef":{"target":{"oid":"8536206bd75452ca68548e4ed3551fecc2484589","abbreviatedOid":"8536206",
			  "author":{"name":"Hubot","email":"hubot@github.com","user":{"login":"hubot"}}}}}}}`},
		{"a user that does not exist",
			`{user(login:"nobody"){login}}`, nil,
			`{"data":{"user":null},"errors":[{"type":"NOT_FOUND","path":["user"],"locations":[{"line":1,"column":2}],
			  "message":"Could not resolve to a User with the login of 'nobody'."}]}`},
		{"introspection",
			`{__schema{queryType{name} mutationType{name}} __type(name:"IssueState"){kind enumValues{name}}
			  t: __type(name:"Node"){kind possibleTypes{name}}}`, nil, ""},
		{"not found",
			`{repository(owner:"acme",name:"nope"){name}}`, nil,
			`{"data":{"repository":null},"errors":[{"type":"NOT_FOUND","path":["repository"],"locations":[{"line":1,"column":2}],
			  "message":"Could not resolve to a Repository with the name 'acme/nope'."}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := gql(t, ts, tokBot, tt.query, tt.vars)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if tt.want == "" {
				v := r.obj(t)
				if v["errors"] != nil || dig(v, "data", "__schema", "queryType", "name") != "Query" ||
					dig(v, "data", "__type", "enumValues", 1, "name") != "CLOSED" || dig(v, "data", "t", "kind") != "INTERFACE" {
					t.Errorf("introspection: %s", r.body)
				}
				return
			}
			jsonEqual(t, r.json(t), tt.want)
		})
	}
}

func TestGraphQLCursors(t *testing.T) {
	_, ts := newSim(t)
	const q = `query($after: String) { repository(owner:"acme",name:"widgets"){ issues(first: 7, after: $after, states: [CLOSED, OPEN]) {
		pageInfo { hasNextPage endCursor } nodes { number } } } }`
	seen := map[float64]bool{}
	var after any
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("cursors loop")
		}
		v := gql(t, ts, tokBot, q, map[string]any{"after": after}).obj(t)
		for _, n := range dig(v, "data", "repository", "issues", "nodes").([]any) {
			seen[dig(n, "number").(float64)] = true
		}
		if dig(v, "data", "repository", "issues", "pageInfo", "hasNextPage") != true {
			break
		}
		after = dig(v, "data", "repository", "issues", "pageInfo", "endCursor")
	}
	if len(seen) != 40 {
		t.Errorf("paged through %d issues, want 40", len(seen))
	}
	r := gql(t, ts, tokBot, q, map[string]any{"after": "not-a-cursor"}).obj(t)
	if dig(r, "errors", 0, "type") != "INVALID_CURSOR_ARGUMENTS" {
		t.Errorf("bad cursor: %v", r)
	}
}

func TestGraphQLErrors(t *testing.T) {
	s, ts := newSim(t)
	tests := []struct {
		name    string
		body    string
		token   string
		status  int
		errType string
		message string
	}{
		{"no token", `{"query":"{viewer{login}}"}`, "", 401, "", "This endpoint requires you to be authenticated."},
		{"bad token", `{"query":"{viewer{login}}"}`, "ghp_bad", 401, "", "Bad credentials"},
		{"bad JSON", `{"query":`, tokBot, 400, "", "Problems parsing JSON"},
		{"no query", `{}`, tokBot, 200, "", "A query attribute must be specified and must be a string."},
		{"parse error", `{"query":"{viewer{login}"}`, tokBot, 200, "", "Expected Name, found <EOF>"},
		{"unknown field", `{"query":"{viewer{nope}}"}`, tokBot, 200, "", `Cannot query field "nope" on type "User".`},
		{"missing variable", `{"query":"query($o:String!){repository(owner:$o,name:\"x\"){id}}"}`, tokBot, 200, "", "must be defined"},
		{"wrong variable type", `{"query":"query($n:Int!){viewer{repository(name:\"x\"){issue(number:$n){id}}}}","variables":{"n":"x"}}`, tokBot, 200, "", "cannot use string as Int"},
		{"unknown operation", `{"query":"query A{viewer{login}}","operationName":"B"}`, tokBot, 200, "", "Unknown operation named 'B'."},
		{"no first or last", `{"query":"{repository(owner:\"acme\",name:\"widgets\"){issues{nodes{number}}}}"}`, tokBot, 200,
			"MISSING_PAGINATION_BOUNDARIES", "You must provide a `first` or `last` value to properly paginate the `issues` connection."},
		{"first over 100", `{"query":"{repository(owner:\"acme\",name:\"widgets\"){issues(first:101){nodes{number}}}}"}`, tokBot, 200,
			"EXCESSIVE_PAGINATION", "Requesting 101 records on the `issues` connection exceeds the `first` limit of 100 records."},
		{"too many nodes", `{"query":"{viewer{repositories(first:100){nodes{issues(first:100){nodes{comments(first:100){nodes{id}}}}}}}}"}`, tokBot, 200,
			"MAX_NODE_LIMIT_EXCEEDED", "This query requests up to 1010100 possible nodes which exceeds the maximum limit of 500000."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.ResetStats()
			r := do(t, ts, "POST", "/graphql", tt.token, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			v := r.obj(t)
			msg, _ := v["message"].(string)
			if tt.status == 200 {
				if v["data"] != nil {
					t.Errorf("data with an error: %s", r.body)
				}
				msg, _ = dig(v, "errors", 0, "message").(string)
				if got := dig(v, "errors", 0, "type"); tt.errType != "" && got != tt.errType {
					t.Errorf("type %v, want %s", got, tt.errType)
				}
				if st := s.Stats().Labels["bot"]; st.Counted != 0 || st.Points != 0 || st.Calls != 1 {
					t.Errorf("an invalid query was charged: %+v", st)
				}
			}
			if !strings.Contains(msg, tt.message) {
				t.Errorf("message %q, want %q", msg, tt.message)
			}
		})
	}
}

func TestGraphQLCost(t *testing.T) {
	s, ts := newSim(t)
	tests := []struct {
		name  string
		query string
		cost  int
		nodes int
	}{
		{"no connection", `{viewer{login}}`, 1, 0},
		{"one connection", `{repository(owner:"acme",name:"widgets"){issues(first:100){nodes{number}}}}`, 1, 100},
		// 1 + 50 requests → 1 point; 50 + 50×10 nodes.
		{"nested connections", `{repository(owner:"acme",name:"widgets"){issues(first:50){nodes{labels(first:10){nodes{name}}}}}}`, 1, 550},
		// 1 + 100 + 100×50 = 5101 requests → 51 points.
		{"GitHub's worked example shape", `{viewer{repositories(first:100){nodes{issues(first:50){nodes{labels(first:60){nodes{name}}}}}}}}`, 51, 305100},
		// Fragments count where they are spread: 1 + 100 + 100 requests → 2.
		{"through fragments", `fragment L on Issue { labels(last:5){nodes{name}} comments(first:1){totalCount} }
			{repository(owner:"acme",name:"widgets"){issues(first:100){nodes{...L}}}}`, 2, 700},
		{"totalCount only needs no bounds", `{repository(owner:"acme",name:"widgets"){issue(number:1){reactionGroups{users{totalCount}}}}}`, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats().Labels["ci"].Points
			q := strings.Replace(tt.query, "{", "{rateLimit{cost nodeCount remaining used limit} ", 1)
			if strings.HasPrefix(tt.query, "fragment") {
				i := strings.Index(tt.query, "}\n")
				q = tt.query[:i+2] + strings.Replace(tt.query[i+2:], "{", "{rateLimit{cost nodeCount remaining used limit} ", 1)
			}
			r := gql(t, ts, tokCI, q, nil)
			v := r.obj(t)
			if v["errors"] != nil {
				t.Fatalf("errors: %s", r.body)
			}
			rl := dig(v, "data", "rateLimit")
			if dig(rl, "cost") != float64(tt.cost) || dig(rl, "nodeCount") != float64(tt.nodes) {
				t.Errorf("cost %v nodes %v, want %d %d", dig(rl, "cost"), dig(rl, "nodeCount"), tt.cost, tt.nodes)
			}
			if got := s.Stats().Labels["ci"].Points - before; got != tt.cost {
				t.Errorf("charged %d points, want %d", got, tt.cost)
			}
			remaining, _ := strconv.Atoi(r.header.Get("X-RateLimit-Remaining"))
			if dig(rl, "remaining") != float64(remaining) || r.header.Get("X-RateLimit-Resource") != "graphql" {
				t.Errorf("rateLimit.remaining %v, header %d (%s)", dig(rl, "remaining"), remaining, r.header.Get("X-RateLimit-Resource"))
			}
		})
	}
	// dryRun prices without charging.
	before := s.Stats().Labels["ci"].Points
	gql(t, ts, tokCI, `{rateLimit(dryRun:true){cost} viewer{repositories(first:100){nodes{name}}}}`, nil)
	if s.Stats().Labels["ci"].Points != before {
		t.Error("a dry run was charged")
	}
}

func TestGraphQLRateLimited(t *testing.T) {
	s, ts := newSim(t)
	s.SetRemaining("bot", "graphql", 1)
	if r := gql(t, ts, tokBot, `{viewer{login}}`, nil); dig(r.json(t), "data", "viewer", "login") != "bot" {
		t.Fatalf("last point: %s", r.body)
	}
	for _, q := range []string{`{viewer{login}}`, `{viewer{repositories(first:100){nodes{issues(first:100){nodes{id}}}}}}`} {
		r := gql(t, ts, tokBot, q, nil)
		if r.status != 200 || r.header.Get("X-RateLimit-Remaining") != "0" {
			t.Errorf("status %d remaining %q", r.status, r.header.Get("X-RateLimit-Remaining"))
		}
		v := r.obj(t)
		if dig(v, "errors", 0, "type") != "RATE_LIMITED" || v["data"] != nil ||
			!strings.HasPrefix(dig(v, "errors", 0, "message").(string), "API rate limit already exceeded for user ID ") {
			t.Errorf("body %s", r.body)
		}
	}
	// A query that costs more than what is left is refused whole.
	s.SetRemaining("ci", "graphql", 50)
	if v := gql(t, ts, tokCI, `{viewer{repositories(first:100){nodes{issues(first:50){nodes{labels(first:60){nodes{name}}}}}}}}`, nil).obj(t); dig(v, "errors", 0, "type") != "RATE_LIMITED" {
		t.Errorf("51 points with 50 left: %v", v)
	}
	if st := s.Stats().Labels["bot"]; st.Limited != 2 || st.Points != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestGraphQLMutations(t *testing.T) {
	_, ts := newSim(t)
	repoID := dig(gql(t, ts, tokBot, `{repository(owner:"octo",name:"hello"){id labels(first:1){nodes{id}}}}`, nil).json(t), "data", "repository")
	r := gql(t, ts, tokBot, `mutation($in: CreateIssueInput!) { createIssue(input: $in) { clientMutationId issue { number title author { login } labels(first:5) { nodes { name } } } } }`,
		map[string]any{"in": map[string]any{"repositoryId": dig(repoID, "id"), "title": "Made by GraphQL", "body": "b",
			"labelIds": []any{dig(repoID, "labels", "nodes", 0, "id")}, "clientMutationId": "m1"}})
	jsonEqual(t, r.json(t), `{"data":{"createIssue":{"clientMutationId":"m1","issue":{"number":5,"title":"Made by GraphQL","author":{"login":"bot"},"labels":{"nodes":[{"name":"bug"}]}}}}}`)
	rest := get(t, ts, "/repos/octo/hello/issues/5", tokBot)
	if dig(rest.json(t), "title") != "Made by GraphQL" {
		t.Errorf("REST does not see the new issue: %s", rest.body)
	}
	issueID := nodeID("I", int64(dig(rest.json(t), "id").(float64)))
	r = gql(t, ts, tokCI, `mutation { addComment(input: {subjectId: "`+issueID+`", body: "via graphql"}) { commentEdge { node { body author { login } } } subject { id } } }`, nil)
	jsonEqual(t, r.json(t), `{"data":{"addComment":{"commentEdge":{"node":{"body":"via graphql","author":{"login":"ci"}}},"subject":{"id":"`+issueID+`"}}}}`)
	r = gql(t, ts, tokCI, `mutation { closeIssue(input: {issueId: "`+issueID+`", stateReason: NOT_PLANNED}) { issue { state stateReason closed } } }`, nil)
	jsonEqual(t, r.json(t), `{"data":{"closeIssue":{"issue":{"state":"CLOSED","stateReason":"NOT_PLANNED","closed":true}}}}`)
	if v := get(t, ts, "/repos/octo/hello/issues/5/comments", tokBot).list(t); len(v) != 1 {
		t.Errorf("REST comments: %v", v)
	}
	r = gql(t, ts, tokCI, `mutation { addComment(input: {subjectId: "nope", body: "x"}) { subject { id } } }`, nil)
	if v := r.obj(t); dig(v, "errors", 0, "type") != "NOT_FOUND" || dig(v, "data", "addComment") != nil {
		t.Errorf("unknown subject: %s", r.body)
	}
}

func TestGraphQLAtGHESPath(t *testing.T) {
	_, ts := newSim(t)
	b, _ := json.Marshal(map[string]string{"query": `{repository(owner:"acme",name:"widgets"){url}}`})
	r := do(t, ts, "POST", "/api/graphql", tokBot, string(b))
	if got := dig(r.json(t), "data", "repository", "url"); got != ts.URL+"/acme/widgets" {
		t.Errorf("url %v", got)
	}
}

func TestGraphQLKeepsSelectionOrder(t *testing.T) {
	_, ts := newSim(t)
	r := gql(t, ts, tokBot, `{viewer{z: login __typename a: login}}`, nil)
	if want := `{"data":{"viewer":{"z":"bot","__typename":"User","a":"bot"}}}`; string(r.body) != want {
		t.Errorf("body %s, want %s", r.body, want)
	}
}
