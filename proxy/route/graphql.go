package route

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// ErrBadGraphQL is wrapped by every GraphQL classification failure; the
// server answers it with a 400.
var ErrBadGraphQL = errors.New("bad GraphQL request")

// Operation is the type of the GraphQL operation a request executes.
type Operation string

// Operation types. Subscriptions are not served by GitHub and are refused.
const (
	Query    Operation = "query"
	Mutation Operation = "mutation"
)

// maxGraphQLTokens bounds the work of parsing one document. GitHub's
// documents are a few hundred tokens; this is far above any real one.
const maxGraphQLTokens = 20000

// GraphQLRequest is a classified GraphQL request.
type GraphQLRequest struct {
	Operation Operation
	// Name is the executed operation's name ("" for an anonymous one).
	Name string
	// Body is the canonical JSON body to forward: query, operationName
	// and variables as parsed, nothing else.
	Body []byte
	// Document is Body's query, parsed (for callers that inspect it
	// without parsing it again).
	Document *ast.QueryDocument
	// Variables is Body's variables object as sent; nil without one.
	Variables json.RawMessage
}

type graphQLBody struct {
	Query         string          `json:"query"`
	OperationName string          `json:"operationName,omitempty"`
	Variables     json.RawMessage `json:"variables,omitempty"`
}

// ParseGraphQL classifies a GraphQL POST body. It picks the operation
// GitHub would execute (the one named by operationName, or the only one)
// and refuses anything ambiguous: duplicate keys, several operations with
// no name to choose, subscriptions, batches.
func ParseGraphQL(body []byte) (GraphQLRequest, error) {
	fields, err := TopLevelFields(body)
	if err != nil {
		return GraphQLRequest{}, err
	}
	var in graphQLBody
	for k, v := range fields {
		switch k {
		case "query":
			if err := json.Unmarshal(v, &in.Query); err != nil {
				return GraphQLRequest{}, fmt.Errorf("%w: query must be a string", ErrBadGraphQL)
			}
		case "operationName":
			if string(v) != "null" {
				if err := json.Unmarshal(v, &in.OperationName); err != nil {
					return GraphQLRequest{}, fmt.Errorf("%w: operationName must be a string", ErrBadGraphQL)
				}
			}
		case "variables":
			if string(v) != "null" {
				if len(v) == 0 || v[0] != '{' {
					return GraphQLRequest{}, fmt.Errorf("%w: variables must be an object", ErrBadGraphQL)
				}
				in.Variables = v
			}
		case "extensions":
			// Client hints (persisted queries, tracing) that GitHub
			// ignores; not forwarded.
		default:
			return GraphQLRequest{}, fmt.Errorf("%w: unknown field %q (want query, operationName, variables)", ErrBadGraphQL, k)
		}
	}
	if in.Query == "" {
		return GraphQLRequest{}, fmt.Errorf("%w: query is missing", ErrBadGraphQL)
	}
	doc, perr := parser.ParseQueryWithTokenLimit(&ast.Source{Input: in.Query}, maxGraphQLTokens)
	if perr != nil {
		return GraphQLRequest{}, fmt.Errorf("%w: %v", ErrBadGraphQL, perr)
	}
	var op *ast.OperationDefinition
	switch {
	case in.OperationName != "":
		for _, o := range doc.Operations {
			if o.Name == in.OperationName {
				if op != nil {
					return GraphQLRequest{}, fmt.Errorf("%w: two operations are named %q", ErrBadGraphQL, in.OperationName)
				}
				op = o
			}
		}
		if op == nil {
			return GraphQLRequest{}, fmt.Errorf("%w: no operation named %q", ErrBadGraphQL, in.OperationName)
		}
	case len(doc.Operations) == 1:
		op = doc.Operations[0]
	case len(doc.Operations) == 0:
		return GraphQLRequest{}, fmt.Errorf("%w: the document has no operation", ErrBadGraphQL)
	default:
		return GraphQLRequest{}, fmt.Errorf("%w: the document has %d operations: set operationName", ErrBadGraphQL, len(doc.Operations))
	}
	var kind Operation
	switch op.Operation {
	case ast.Query:
		kind = Query
	case ast.Mutation:
		kind = Mutation
	default:
		return GraphQLRequest{}, fmt.Errorf("%w: %s operations are not served", ErrBadGraphQL, op.Operation)
	}
	out, err := json.Marshal(in)
	if err != nil {
		return GraphQLRequest{}, fmt.Errorf("%w: encode: %v", ErrBadGraphQL, err)
	}
	return GraphQLRequest{Operation: kind, Name: op.Name, Body: out, Document: doc, Variables: in.Variables}, nil
}

// TopLevelFields decodes a JSON object into its raw fields, refusing
// duplicate keys, a non-object and trailing data (errors wrap
// ErrBadGraphQL). The proxy's cache uses it for GraphQL answers too.
func TopLevelFields(body []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	t, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: body is not JSON", ErrBadGraphQL)
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: body must be a JSON object (batches are not served)", ErrBadGraphQL)
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: body is not JSON", ErrBadGraphQL)
		}
		k, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf("%w: body is not JSON", ErrBadGraphQL)
		}
		if _, dup := fields[k]; dup {
			return nil, fmt.Errorf("%w: duplicate field %q", ErrBadGraphQL, k)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: body is not JSON", ErrBadGraphQL)
		}
		fields[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: body is not JSON", ErrBadGraphQL)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrBadGraphQL)
	}
	return fields, nil
}
