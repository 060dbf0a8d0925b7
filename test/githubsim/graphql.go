package githubsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
	"github.com/vektah/gqlparser/v2/validator/rules"
)

// POST /graphql and /api/graphql. A request is parsed, validated, checked
// against GitHub's pagination rules and priced before it runs; the points
// come out of the credential's graphql bucket. When they are gone GitHub
// still answers 200, with a RATE_LIMITED error: so does this.

const docsGraphQL = "https://docs.github.com/graphql"

type gqlRequest struct {
	Query         *string         `json:"query"`
	OperationName string          `json:"operationName"`
	Variables     json.RawMessage `json:"variables"`
}

// gqlResult is a prepared operation, ready to be charged and run.
type gqlResult struct {
	doc      *ast.QueryDocument
	op       *ast.OperationDefinition
	vars     map[string]any
	cost     int
	nodes    int
	dryRun   bool
	errs     []gqlError
	mutation bool
}

// prepareGraphQL parses, validates and prices a request body. It never
// panics on bad input; every problem becomes a GitHub-shaped error.
func prepareGraphQL(body []byte) (res gqlResult, status int, msg string) {
	defer func() {
		if p := recover(); p != nil {
			res = gqlResult{errs: []gqlError{{Message: fmt.Sprintf("Something went wrong while executing your query: %v", p)}}}
		}
	}()
	var req gqlRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return res, http.StatusBadRequest, "Problems parsing JSON"
	}
	if req.Query == nil || strings.TrimSpace(*req.Query) == "" {
		res.errs = []gqlError{{Message: "A query attribute must be specified and must be a string."}}
		return res, http.StatusOK, ""
	}
	vars := map[string]any{}
	if v := strings.TrimSpace(string(req.Variables)); v != "" && v != "null" {
		if strings.HasPrefix(v, `"`) {
			var s string
			if json.Unmarshal(req.Variables, &s) == nil && strings.TrimSpace(s) != "" {
				req.Variables = json.RawMessage(s)
			}
		}
		if err := json.Unmarshal(req.Variables, &vars); err != nil {
			res.errs = []gqlError{{Message: "Variables are invalid JSON."}}
			return res, http.StatusOK, ""
		}
	}
	schema, err := loadSchema()
	if err != nil {
		panic("githubsim: schema.graphql does not load: " + err.Error())
	}
	doc, perr := parser.ParseQuery(&ast.Source{Name: "query", Input: *req.Query})
	if perr != nil {
		res.errs = fromGQLErrors(toList(perr))
		return res, http.StatusOK, ""
	}
	if errs := lenient(validator.ValidateWithRules(schema, doc, rules.NewDefaultRules())); len(errs) > 0 {
		res.errs = fromGQLErrors(errs)
		return res, http.StatusOK, ""
	}
	var op *ast.OperationDefinition
	switch {
	case req.OperationName != "":
		op = doc.Operations.ForName(req.OperationName)
		if op == nil {
			res.errs = []gqlError{{Message: fmt.Sprintf("Unknown operation named '%s'.", req.OperationName)}}
			return res, http.StatusOK, ""
		}
	case len(doc.Operations) == 1:
		op = doc.Operations[0]
	default:
		res.errs = []gqlError{{Message: "An operation name is required when the document has more than one operation."}}
		return res, http.StatusOK, ""
	}
	if op.Operation == ast.Subscription {
		res.errs = []gqlError{{Message: "Subscriptions are not supported."}}
		return res, http.StatusOK, ""
	}
	coerced, verr := validator.VariableValues(schema, op, vars)
	if verr != nil {
		res.errs = fromGQLErrors(toList(verr))
		return res, http.StatusOK, ""
	}
	e := &executor{schema: schema, doc: doc, vars: coerced}
	a := &analysis{e: e}
	a.walk(op.SelectionSet, 1, map[string]bool{})
	if a.nodes > maxNodes {
		a.errs = append(a.errs, gqlError{Type: "MAX_NODE_LIMIT_EXCEEDED",
			Message: fmt.Sprintf("This query requests up to %d possible nodes which exceeds the maximum limit of %d.", a.nodes, maxNodes)})
	}
	if len(a.errs) > 0 {
		res.errs = a.errs
		return res, http.StatusOK, ""
	}
	res = gqlResult{doc: doc, op: op, vars: coerced, cost: a.cost(), nodes: a.nodes, mutation: op.Operation == ast.Mutation}
	for _, sel := range op.SelectionSet {
		if f, ok := sel.(*ast.Field); ok && f.Name == "rateLimit" {
			if d, _ := f.ArgumentMap(coerced)["dryRun"].(bool); d {
				res.dryRun = true
			}
		}
	}
	return res, http.StatusOK, ""
}

// lenient drops the one validation error GitHub does not raise: fields of
// the same name with different enum types in fragments on different types
// (gh asks for Issue.state and PullRequest.state side by side).
func lenient(errs gqlerror.List) gqlerror.List {
	var out gqlerror.List
	for _, e := range errs {
		if e.Rule == "OverlappingFieldsCanBeMerged" && strings.Contains(e.Message, "conflicting types") {
			continue
		}
		out = append(out, e)
	}
	return out
}

func toList(err error) gqlerror.List {
	var list gqlerror.List
	if errors.As(err, &list) {
		return list
	}
	var one *gqlerror.Error
	if errors.As(err, &one) {
		return gqlerror.List{one}
	}
	return gqlerror.List{gqlerror.Wrap(err)}
}

func fromGQLErrors(list gqlerror.List) []gqlError {
	out := make([]gqlError, 0, len(list))
	for _, e := range list {
		ge := gqlError{Message: e.Message}
		for _, l := range e.Locations {
			ge.Locations = append(ge.Locations, gqlLocation{l.Line, l.Column})
		}
		for _, p := range e.Path {
			switch x := p.(type) {
			case ast.PathName:
				ge.Path = append(ge.Path, string(x))
			case ast.PathIndex:
				ge.Path = append(ge.Path, int(x))
			}
		}
		if e.Rule != "" {
			ge.Extensions = map[string]any{"code": e.Rule}
		}
		out = append(out, ge)
	}
	return out
}

func (s *Server) serveGraphQL(w http.ResponseWriter, r *http.Request, rid string) {
	start := time.Now()
	h := w.Header()
	setCommon(h)
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusNotFound, errorBody(404, "Not Found", docsGraphQL))
		return
	}
	cred, err := s.authenticate(r, false)
	if err != nil {
		s.mu.Lock()
		s.stats.BadCredentials++
		s.mu.Unlock()
		writeJSON(w, http.StatusUnauthorized, errorBody(401, err.Error(), docsGraphQL))
		return
	}
	if cred.anonymous() {
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"message":           "This endpoint requires you to be authenticated.",
			"documentation_url": docsGraphQL + "/guides/forming-calls-with-graphql#authenticating-with-graphql"})
		return
	}
	if s.injectFault(w, cred, ResourceGraphQL, "/graphql", rid) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(400, "Problems parsing JSON", docsGraphQL))
		return
	}
	prep, status, msg := prepareGraphQL(body)
	if status != http.StatusOK {
		s.record(outcome{label: cred.label, resource: ResourceGraphQL})
		writeJSON(w, status, errorBody(status, msg, docsGraphQL))
		return
	}
	cost := prep.cost
	if len(prep.errs) > 0 || prep.dryRun {
		cost = 0
	}
	a := s.admit(cred, ResourceGraphQL, cost)
	defer a.release()
	setRate(h, a.rate)
	logDone := func(status string, points int) {
		s.log().Info("graphql", "request_id", rid, "path", r.URL.Path, "status", status, "label", cred.label,
			"points", points, "remaining", a.rate.remaining(), "duration", time.Since(start))
	}
	if a.secondary > 0 {
		s.record(outcome{label: cred.label, resource: ResourceGraphQL, limited: true})
		logDone("secondary_limited", 0)
		s.writeLimited(w, cred, a, rid)
		return
	}
	if a.limited {
		s.record(outcome{label: cred.label, resource: ResourceGraphQL, limited: true})
		h.Set("X-RateLimit-Remaining", "0")
		who := fmt.Sprintf("user ID %d", cred.userID)
		if cred.kind == kindInstallation {
			who = fmt.Sprintf("installation ID %d", cred.installation)
		}
		logDone("rate_limited", 0)
		writeJSON(w, http.StatusOK, map[string]any{"errors": []gqlError{{Type: "RATE_LIMITED",
			Message: "API rate limit already exceeded for " + who + "."}}})
		return
	}
	if len(prep.errs) > 0 {
		s.record(outcome{label: cred.label, resource: ResourceGraphQL})
		logDone("invalid", 0)
		writeJSON(w, http.StatusOK, map[string]any{"errors": prep.errs})
		return
	}
	s.pause(r, true)
	c := &call{s: s, r: r, cred: cred, resource: ResourceGraphQL, now: s.now()}
	c.apiBase, c.webBase = baseURLs(r, strings.HasPrefix(r.URL.Path, "/api/"))
	schema, _ := loadSchema()
	e := &executor{s: s, c: c, schema: schema, doc: prep.doc, vars: prep.vars, cost: prep.cost, nodeCount: prep.nodes, rate: a.rate}
	data := s.execute(e, prep)
	out := map[string]any{"data": data}
	if len(e.errs) > 0 {
		out["errors"] = e.errs
	}
	s.record(outcome{label: cred.label, resource: ResourceGraphQL, counted: cost > 0, points: cost})
	logDone("ok", cost)
	h.Set("X-GitHub-Request-Id", rid)
	h.Set("X-RateLimit-Used", strconv.Itoa(a.rate.used))
	writeJSON(w, http.StatusOK, out)
}

// execute runs a prepared operation under the data lock.
func (s *Server) execute(e *executor, prep gqlResult) (data any) {
	if prep.mutation {
		s.dataMu.Lock()
		defer s.dataMu.Unlock()
	} else {
		s.dataMu.RLock()
		defer s.dataMu.RUnlock()
	}
	defer func() {
		if p := recover(); p != nil {
			e.errs = append(e.errs, gqlError{Message: fmt.Sprintf("Something went wrong while executing your query: %v", p)})
			data = nil
		}
	}()
	var root object = queryRoot{}
	if prep.mutation {
		root = mutationRoot{}
	}
	return e.selectionSet(root, prep.op.SelectionSet)
}
