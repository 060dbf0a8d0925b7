package route

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParseGraphQL(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantOp   Operation
		wantName string
		wantErr  bool
	}{
		{name: "anonymous query shorthand", body: `{"query":"{ viewer { login } }"}`, wantOp: Query},
		{name: "named query", body: `{"query":"query Me { viewer { login } }","variables":{"a":1}}`, wantOp: Query, wantName: "Me"},
		{name: "mutation", body: `{"query":"mutation M($id: ID!) { addStar(input:{starrableId:$id}) { clientMutationId } }","variables":{"id":"x"}}`, wantOp: Mutation, wantName: "M"},
		{name: "operationName picks the mutation", body: `{"query":"query A { viewer { login } } mutation B { x }","operationName":"B"}`, wantOp: Mutation, wantName: "B"},
		{name: "operationName picks the query", body: `{"query":"query A { viewer { login } } mutation B { x }","operationName":"A"}`, wantOp: Query, wantName: "A"},
		{name: "null operationName and variables", body: `{"query":"{ a }","operationName":null,"variables":null}`, wantOp: Query},
		{name: "extensions are dropped", body: `{"query":"{ a }","extensions":{"persistedQuery":{}}}`, wantOp: Query},
		{name: "comment does not hide a mutation", body: `{"query":"# query\nmutation { x }"}`, wantOp: Mutation},
		{name: "two operations without a name", body: `{"query":"query A { a } mutation B { b }"}`, wantErr: true},
		{name: "unknown operationName", body: `{"query":"query A { a }","operationName":"Z"}`, wantErr: true},
		{name: "duplicate query key", body: `{"query":"{ a }","query":"mutation { b }"}`, wantErr: true},
		{name: "key in other case", body: `{"Query":"mutation { b }"}`, wantErr: true},
		{name: "subscription", body: `{"query":"subscription { a }"}`, wantErr: true},
		{name: "batch", body: `[{"query":"{ a }"}]`, wantErr: true},
		{name: "not json", body: `query { a }`, wantErr: true},
		{name: "trailing data", body: `{"query":"{ a }"} {"query":"mutation { b }"}`, wantErr: true},
		{name: "syntax error", body: `{"query":"query { a "}`, wantErr: true},
		{name: "missing query", body: `{"variables":{}}`, wantErr: true},
		{name: "variables not an object", body: `{"query":"{ a }","variables":[1]}`, wantErr: true},
		{name: "only fragments", body: `{"query":"fragment F on User { login }"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := ParseGraphQL([]byte(tt.body))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("accepted %s as %+v", tt.body, g)
				}
				if !errors.Is(err, ErrBadGraphQL) {
					t.Errorf("error %v does not wrap ErrBadGraphQL", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseGraphQL: %v", err)
			}
			if g.Operation != tt.wantOp || g.Name != tt.wantName {
				t.Errorf("got %s %q, want %s %q", g.Operation, g.Name, tt.wantOp, tt.wantName)
			}
			if g.Document == nil || len(g.Document.Operations) == 0 {
				t.Errorf("no parsed document for %s", tt.body)
			}
			// The forwarded body classifies the same way.
			again, err := ParseGraphQL(g.Body)
			if err != nil || again.Operation != g.Operation || again.Name != g.Name {
				t.Errorf("canonical body %s reclassified as %+v, %v", g.Body, again, err)
			}
		})
	}
}

// FuzzParseGraphQL checks that whatever is accepted is classified as query
// or mutation and that the forwarded body is a JSON object with only the
// known fields, which classifies the same way again.
func FuzzParseGraphQL(f *testing.F) {
	for _, s := range []string{
		`{"query":"{ viewer { login } }"}`,
		`{"query":"query A { a } mutation B { b }","operationName":"B"}`,
		`{"query":"mutation { x }","variables":{"a":[1,2]}}`,
		`{"query":"query ($n: Int = 3) { repository(owner:\"a\", name:\"b\") { issues(first:$n) { nodes { title } } } }"}`,
		`{"query":"{ a }","query":"mutation { b }"}`,
		`[{"query":"{ a }"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		g, err := ParseGraphQL(body)
		if err != nil {
			return
		}
		if g.Operation != Query && g.Operation != Mutation {
			t.Fatalf("operation %q", g.Operation)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(g.Body, &m); err != nil {
			t.Fatalf("forwarded body %q is not an object: %v", g.Body, err)
		}
		for k := range m {
			if k != "query" && k != "operationName" && k != "variables" {
				t.Fatalf("forwarded body has field %q", k)
			}
		}
		again, err := ParseGraphQL(g.Body)
		if err != nil || again.Operation != g.Operation || again.Name != g.Name {
			t.Fatalf("forwarded body %q reclassified as %+v, %v", g.Body, again, err)
		}
	})
}
