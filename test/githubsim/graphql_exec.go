package githubsim

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// A small GraphQL executor: gqlparser parses and validates the document
// against schema.graphql; the executor below collects fields (fragments,
// inline fragments, @skip/@include), resolves them on Go objects and
// completes values by the schema's types.

//go:embed schema.graphql
var schemaSDL string

var loadSchema = sync.OnceValues(func() (*ast.Schema, error) {
	return gqlparser.LoadSchema(&ast.Source{Name: "schema.graphql", Input: schemaSDL})
})

// object is a value of a GraphQL object type.
type object interface {
	typeName() string
	field(e *executor, name string, args map[string]any) (any, error)
}

// gqlError is one entry of a response's "errors", in GitHub's shape.
type gqlError struct {
	Type       string         `json:"type,omitempty"`
	Path       []any          `json:"path,omitempty"`
	Locations  []gqlLocation  `json:"locations,omitempty"`
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

type gqlLocation struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// fieldError is what a resolver returns for a GitHub-typed error such as
// NOT_FOUND; the executor adds path and location.
type fieldError struct {
	typ, msg string
}

func (e *fieldError) Error() string { return e.msg }

func notFoundErr(format string, args ...any) error {
	return &fieldError{typ: "NOT_FOUND", msg: fmt.Sprintf(format, args...)}
}

type executor struct {
	s      *Server
	c      *call
	schema *ast.Schema
	doc    *ast.QueryDocument
	vars   map[string]any
	errs   []gqlError
	path   []any

	// For the rateLimit field.
	cost, nodeCount int
	rate            rate
}

// omap is a JSON object that keeps the order of the selection set.
type omap struct {
	keys []string
	vals map[string]any
}

func (m *omap) set(k string, v any) {
	if m.vals == nil {
		m.vals = map[string]any{}
	}
	if _, dup := m.vals[k]; !dup {
		m.keys = append(m.keys, k)
	}
	m.vals[k] = v
}

func (m *omap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSONValue(&b, m); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeJSONValue encodes a completed value in one pass (nested omaps
// marshalled one by one would be re-validated at every level).
func writeJSONValue(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case *omap:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			if err := writeJSONValue(b, x.vals[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSONValue(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		vb, err := json.Marshal(x)
		if err != nil {
			return err
		}
		b.Write(vb)
	}
	return nil
}

type fieldGroup struct {
	key    string
	fields []*ast.Field
}

// skipped evaluates @skip and @include.
func (e *executor) skipped(dirs ast.DirectiveList) bool {
	if d := dirs.ForName("skip"); d != nil {
		if v, _ := d.ArgumentMap(e.vars)["if"].(bool); v {
			return true
		}
	}
	if d := dirs.ForName("include"); d != nil {
		if v, _ := d.ArgumentMap(e.vars)["if"].(bool); !v {
			return true
		}
	}
	return false
}

// applies reports whether a fragment with type condition cond applies to
// an object of type typ.
func (e *executor) applies(typ, cond string) bool {
	if cond == "" || cond == typ {
		return true
	}
	def := e.schema.Types[cond]
	if def == nil {
		return false
	}
	for _, p := range e.schema.GetPossibleTypes(def) {
		if p.Name == typ {
			return true
		}
	}
	return false
}

// collect groups the fields of set that apply to typ by response key.
func (e *executor) collect(typ string, set ast.SelectionSet, groups []fieldGroup, seen map[string]bool) []fieldGroup {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if e.skipped(s.Directives) {
				continue
			}
			key := s.Alias
			if key == "" {
				key = s.Name
			}
			found := false
			for i := range groups {
				if groups[i].key == key {
					groups[i].fields = append(groups[i].fields, s)
					found = true
					break
				}
			}
			if !found {
				groups = append(groups, fieldGroup{key: key, fields: []*ast.Field{s}})
			}
		case *ast.FragmentSpread:
			if e.skipped(s.Directives) || seen[s.Name] {
				continue
			}
			frag := s.Definition
			if frag == nil {
				frag = e.doc.Fragments.ForName(s.Name)
			}
			if frag == nil || !e.applies(typ, frag.TypeCondition) {
				continue
			}
			seen[s.Name] = true
			groups = e.collect(typ, frag.SelectionSet, groups, seen)
		case *ast.InlineFragment:
			if e.skipped(s.Directives) || !e.applies(typ, s.TypeCondition) {
				continue
			}
			groups = e.collect(typ, s.SelectionSet, groups, seen)
		}
	}
	return groups
}

func (e *executor) fail(err error, f *ast.Field) {
	ge := gqlError{Message: err.Error(), Path: append([]any{}, e.path...)}
	var fe *fieldError
	if errors.As(err, &fe) {
		ge.Type = fe.typ
	}
	if f != nil && f.Position != nil {
		ge.Locations = []gqlLocation{{f.Position.Line, f.Position.Column}}
	}
	e.errs = append(e.errs, ge)
}

// selectionSet resolves set on obj.
func (e *executor) selectionSet(obj object, set ast.SelectionSet) *omap {
	out := &omap{}
	for _, g := range e.collect(obj.typeName(), set, nil, map[string]bool{}) {
		f := g.fields[0]
		e.path = append(e.path, g.key)
		if f.Name == "__typename" {
			out.set(g.key, obj.typeName())
			e.path = e.path[:len(e.path)-1]
			continue
		}
		args := f.ArgumentMap(e.vars)
		v, err := obj.field(e, f.Name, args)
		if err != nil {
			e.fail(err, f)
			out.set(g.key, nil)
		} else {
			var sub ast.SelectionSet
			for _, ff := range g.fields {
				sub = append(sub, ff.SelectionSet...)
			}
			var t *ast.Type
			if f.Definition != nil {
				t = f.Definition.Type
			}
			out.set(g.key, e.complete(v, t, sub, f))
		}
		e.path = e.path[:len(e.path)-1]
	}
	return out
}

// complete shapes a resolved value by its schema type.
func (e *executor) complete(v any, t *ast.Type, set ast.SelectionSet, f *ast.Field) any {
	if v == nil || t == nil {
		return nil
	}
	if t.Elem != nil {
		list, ok := v.([]any)
		if !ok {
			e.fail(fmt.Errorf("internal error: %s is not a list", f.Name), f)
			return nil
		}
		out := make([]any, len(list))
		for i, x := range list {
			e.path = append(e.path, i)
			out[i] = e.complete(x, t.Elem, set, f)
			e.path = e.path[:len(e.path)-1]
		}
		return out
	}
	def := e.schema.Types[t.NamedType]
	if def != nil && (def.Kind == ast.Scalar || def.Kind == ast.Enum) {
		return v
	}
	obj, ok := v.(object)
	if !ok {
		e.fail(fmt.Errorf("internal error: %s resolved to %T", f.Name, v), f)
		return nil
	}
	return e.selectionSet(obj, set)
}

// Static analysis: GitHub's pagination rules, node limit and point cost.

const (
	maxConnectionPage = 100
	maxNodes          = 500000
)

// analysis walks the operation before it runs, as GitHub does, and
// computes requests (one per connection per parent) and nodes.
type analysis struct {
	e        *executor
	requests int
	nodes    int
	errs     []gqlError
	path     []any
}

func (a *analysis) walk(set ast.SelectionSet, mult int, seen map[string]bool) {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Definition == nil || a.e.skipped(s.Directives) {
				continue
			}
			a.path = append(a.path, s.Alias)
			m := mult
			if strings.HasSuffix(s.Definition.Type.Name(), "Connection") {
				args := s.ArgumentMap(a.e.vars)
				first, hasFirst := toInt(args["first"])
				last, hasLast := toInt(args["last"])
				n := first
				switch {
				case !hasFirst && !hasLast && !a.selectsItems(s.SelectionSet, map[string]bool{}):
					// Only totalCount or pageInfo: GitHub needs no bounds.
				case !hasFirst && !hasLast:
					a.fail(s, "MISSING_PAGINATION_BOUNDARIES", fmt.Sprintf("You must provide a `first` or `last` value to properly paginate the `%s` connection.", s.Name))
				case hasFirst && (first < 0 || first > maxConnectionPage):
					a.fail(s, "EXCESSIVE_PAGINATION", fmt.Sprintf("Requesting %d records on the `%s` connection exceeds the `first` limit of %d records.", first, s.Name, maxConnectionPage))
				case hasLast && (last < 0 || last > maxConnectionPage):
					a.fail(s, "EXCESSIVE_PAGINATION", fmt.Sprintf("Requesting %d records on the `%s` connection exceeds the `last` limit of %d records.", last, s.Name, maxConnectionPage))
				}
				if !hasFirst {
					n = last
				}
				n = min(max(n, 0), maxConnectionPage)
				a.requests += mult
				a.nodes += mult * n
				m = mult * n
			}
			if a.nodes <= maxNodes {
				a.walk(s.SelectionSet, m, seen)
			}
			a.path = a.path[:len(a.path)-1]
		case *ast.FragmentSpread:
			if seen[s.Name] || s.Definition == nil {
				continue
			}
			seen[s.Name] = true
			a.walk(s.Definition.SelectionSet, mult, seen)
			delete(seen, s.Name)
		case *ast.InlineFragment:
			a.walk(s.SelectionSet, mult, seen)
		}
	}
}

// selectsItems reports whether a connection's selection asks for nodes or
// edges (directly or through fragments).
func (a *analysis) selectsItems(set ast.SelectionSet, seen map[string]bool) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "nodes" || s.Name == "edges" {
				return true
			}
		case *ast.FragmentSpread:
			if !seen[s.Name] && s.Definition != nil {
				seen[s.Name] = true
				if a.selectsItems(s.Definition.SelectionSet, seen) {
					return true
				}
			}
		case *ast.InlineFragment:
			if a.selectsItems(s.SelectionSet, seen) {
				return true
			}
		}
	}
	return false
}

func (a *analysis) fail(f *ast.Field, typ, msg string) {
	ge := gqlError{Type: typ, Message: msg, Path: append([]any{}, a.path...)}
	if f.Position != nil {
		ge.Locations = []gqlLocation{{f.Position.Line, f.Position.Column}}
	}
	a.errs = append(a.errs, ge)
}

// cost is GitHub's primary-limit cost: requests / 100, rounded, at least 1.
func (a *analysis) cost() int {
	return max(1, int(math.Round(float64(a.requests)/100)))
}

func toInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case int32:
		return int(x), true
	case float64:
		return int(x), true
	case json.Number:
		n, err := x.Int64()
		return int(n), err == nil
	}
	return 0, false
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

// toStrings reads a list of strings; a single value counts as a list of
// one, as GraphQL's input coercion says.
func toStrings(v any) []string {
	if s, ok := v.(string); ok {
		return []string{s}
	}
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Connections.

// conn is any XxxConnection: a page of items with Relay cursors.
type conn struct {
	typ   string
	items []any
	extra map[string]any
	lo    int
	hi    int
}

func encodeCursor(i int) string {
	return base64.StdEncoding.EncodeToString([]byte("cursor:v2:" + strconv.Itoa(i)))
}

func decodeCursor(s string) (int, bool) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return 0, false
	}
	n, ok := strings.CutPrefix(string(b), "cursor:v2:")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil && i >= 0
}

// newConn pages items by first/after/last/before.
func newConn(typ string, items []any, args map[string]any) (*conn, error) {
	c := &conn{typ: typ, items: items, lo: 0, hi: len(items)}
	if a, ok := args["after"].(string); ok && a != "" {
		i, valid := decodeCursor(a)
		if !valid {
			return nil, &fieldError{typ: "INVALID_CURSOR_ARGUMENTS", msg: fmt.Sprintf("`%s` does not appear to be a valid cursor.", a)}
		}
		c.lo = min(i+1, len(items))
	}
	if b, ok := args["before"].(string); ok && b != "" {
		i, valid := decodeCursor(b)
		if !valid {
			return nil, &fieldError{typ: "INVALID_CURSOR_ARGUMENTS", msg: fmt.Sprintf("`%s` does not appear to be a valid cursor.", b)}
		}
		c.hi = max(min(i, len(items)), c.lo)
	}
	if n, ok := toInt(args["first"]); ok && n >= 0 && c.hi-c.lo > n {
		c.hi = c.lo + n
	}
	if n, ok := toInt(args["last"]); ok && n >= 0 && c.hi-c.lo > n {
		c.lo = c.hi - n
	}
	return c, nil
}

func (c *conn) typeName() string { return c.typ }

func (c *conn) edgeType() string {
	if c.typ == "CommitHistoryConnection" {
		return "CommitEdge"
	}
	return strings.TrimSuffix(c.typ, "Connection") + "Edge"
}

func (c *conn) field(e *executor, name string, args map[string]any) (any, error) {
	switch name {
	case "totalCount":
		return len(c.items), nil
	case "nodes":
		return c.items[c.lo:c.hi], nil
	case "edges":
		out := make([]any, 0, c.hi-c.lo)
		for i := c.lo; i < c.hi; i++ {
			out = append(out, &mapObj{typ: c.edgeType(), fields: map[string]any{"cursor": encodeCursor(i), "node": c.items[i]}})
		}
		return out, nil
	case "pageInfo":
		var start, end any
		if c.hi > c.lo {
			start, end = encodeCursor(c.lo), encodeCursor(c.hi-1)
		}
		return &mapObj{typ: "PageInfo", fields: map[string]any{
			"startCursor": start, "endCursor": end, "hasNextPage": c.hi < len(c.items), "hasPreviousPage": c.lo > 0,
		}}, nil
	}
	if v, ok := c.extra[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("internal error: no field %s on %s", name, c.typ)
}

// mapObj is an object whose fields are fixed values, or functions of the
// field's arguments.
type mapObj struct {
	typ    string
	fields map[string]any
}

func (m *mapObj) typeName() string { return m.typ }

func (m *mapObj) field(e *executor, name string, args map[string]any) (any, error) {
	v, ok := m.fields[name]
	if !ok {
		return nil, nil
	}
	if fn, ok := v.(func(map[string]any) (any, error)); ok {
		return fn(args)
	}
	return v, nil
}
