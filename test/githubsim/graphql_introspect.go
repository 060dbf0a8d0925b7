package githubsim

import (
	"fmt"
	"sort"

	"github.com/vektah/gqlparser/v2/ast"
)

// Introspection (__schema, __type) over the parsed schema, which gh uses
// to detect the features of an enterprise server.

type introSchema struct{ s *ast.Schema }

func (introSchema) typeName() string { return "__Schema" }

func (i introSchema) field(e *executor, name string, args map[string]any) (any, error) {
	switch name {
	case "description":
		return nil, nil
	case "types":
		names := make([]string, 0, len(i.s.Types))
		for n := range i.s.Types {
			names = append(names, n)
		}
		sort.Strings(names)
		out := make([]any, 0, len(names))
		for _, n := range names {
			out = append(out, introType{i.s, &ast.Type{NamedType: n}})
		}
		return out, nil
	case "queryType":
		return introNamed(i.s, i.s.Query), nil
	case "mutationType":
		return introNamed(i.s, i.s.Mutation), nil
	case "subscriptionType":
		return introNamed(i.s, i.s.Subscription), nil
	case "directives":
		names := make([]string, 0, len(i.s.Directives))
		for n := range i.s.Directives {
			names = append(names, n)
		}
		sort.Strings(names)
		out := make([]any, 0, len(names))
		for _, n := range names {
			out = append(out, introDirective{i.s, i.s.Directives[n]})
		}
		return out, nil
	}
	return nil, nil
}

func introNamed(s *ast.Schema, d *ast.Definition) any {
	if d == nil {
		return nil
	}
	return introType{s, &ast.Type{NamedType: d.Name}}
}

// introType is a __Type: a named type, or a list/non-null wrapper.
type introType struct {
	s *ast.Schema
	t *ast.Type
}

func (introType) typeName() string { return "__Type" }

func (i introType) def() *ast.Definition {
	if i.t.NamedType == "" {
		return nil
	}
	return i.s.Types[i.t.NamedType]
}

func (i introType) field(e *executor, name string, args map[string]any) (any, error) {
	if i.t.NonNull {
		switch name {
		case "kind":
			return "NON_NULL", nil
		case "ofType":
			inner := *i.t
			inner.NonNull = false
			return introType{i.s, &inner}, nil
		}
		return nil, nil
	}
	if i.t.Elem != nil {
		switch name {
		case "kind":
			return "LIST", nil
		case "ofType":
			return introType{i.s, i.t.Elem}, nil
		}
		return nil, nil
	}
	d := i.def()
	if d == nil {
		return nil, fmt.Errorf("unknown type %s", i.t.NamedType)
	}
	includeDeprecated, _ := args["includeDeprecated"].(bool)
	switch name {
	case "kind":
		return string(d.Kind), nil
	case "name":
		return d.Name, nil
	case "description":
		return nullable(d.Description), nil
	case "specifiedByURL", "ofType":
		return nil, nil
	case "isOneOf":
		return false, nil
	case "fields":
		if d.Kind != ast.Object && d.Kind != ast.Interface {
			return nil, nil
		}
		var out []any
		for _, f := range d.Fields {
			if len(f.Name) > 1 && f.Name[:2] == "__" {
				continue
			}
			if !includeDeprecated && f.Directives.ForName("deprecated") != nil {
				continue
			}
			out = append(out, introField{i.s, f})
		}
		return out, nil
	case "interfaces":
		if d.Kind != ast.Object && d.Kind != ast.Interface {
			return nil, nil
		}
		out := []any{}
		for _, n := range d.Interfaces {
			out = append(out, introType{i.s, &ast.Type{NamedType: n}})
		}
		return out, nil
	case "possibleTypes":
		if d.Kind != ast.Interface && d.Kind != ast.Union {
			return nil, nil
		}
		var out []any
		for _, p := range i.s.GetPossibleTypes(d) {
			out = append(out, introType{i.s, &ast.Type{NamedType: p.Name}})
		}
		return out, nil
	case "enumValues":
		if d.Kind != ast.Enum {
			return nil, nil
		}
		var out []any
		for _, v := range d.EnumValues {
			if !includeDeprecated && v.Directives.ForName("deprecated") != nil {
				continue
			}
			out = append(out, introEnumValue{v})
		}
		return out, nil
	case "inputFields":
		if d.Kind != ast.InputObject {
			return nil, nil
		}
		var out []any
		for _, f := range d.Fields {
			out = append(out, introInput{i.s, f.Name, f.Description, f.Type, f.DefaultValue})
		}
		return out, nil
	}
	return nil, nil
}

type introField struct {
	s *ast.Schema
	f *ast.FieldDefinition
}

func (introField) typeName() string { return "__Field" }

func (i introField) field(e *executor, name string, args map[string]any) (any, error) {
	switch name {
	case "name":
		return i.f.Name, nil
	case "description":
		return nullable(i.f.Description), nil
	case "args":
		out := []any{}
		for _, a := range i.f.Arguments {
			out = append(out, introInput{i.s, a.Name, a.Description, a.Type, a.DefaultValue})
		}
		return out, nil
	case "type":
		return introType{i.s, i.f.Type}, nil
	case "isDeprecated":
		return i.f.Directives.ForName("deprecated") != nil, nil
	case "deprecationReason":
		return deprecationReason(i.f.Directives), nil
	}
	return nil, nil
}

func deprecationReason(d ast.DirectiveList) any {
	dep := d.ForName("deprecated")
	if dep == nil {
		return nil
	}
	if a := dep.Arguments.ForName("reason"); a != nil {
		return a.Value.Raw
	}
	return "No longer supported"
}

type introInput struct {
	s    *ast.Schema
	name string
	desc string
	t    *ast.Type
	def  *ast.Value
}

func (introInput) typeName() string { return "__InputValue" }

func (i introInput) field(e *executor, name string, args map[string]any) (any, error) {
	switch name {
	case "name":
		return i.name, nil
	case "description":
		return nullable(i.desc), nil
	case "type":
		return introType{i.s, i.t}, nil
	case "defaultValue":
		if i.def == nil {
			return nil, nil
		}
		return i.def.String(), nil
	case "isDeprecated":
		return false, nil
	}
	return nil, nil
}

type introEnumValue struct{ v *ast.EnumValueDefinition }

func (introEnumValue) typeName() string { return "__EnumValue" }

func (i introEnumValue) field(e *executor, name string, args map[string]any) (any, error) {
	switch name {
	case "name":
		return i.v.Name, nil
	case "description":
		return nullable(i.v.Description), nil
	case "isDeprecated":
		return i.v.Directives.ForName("deprecated") != nil, nil
	case "deprecationReason":
		return deprecationReason(i.v.Directives), nil
	}
	return nil, nil
}

type introDirective struct {
	s *ast.Schema
	d *ast.DirectiveDefinition
}

func (introDirective) typeName() string { return "__Directive" }

func (i introDirective) field(e *executor, name string, args map[string]any) (any, error) {
	switch name {
	case "name":
		return i.d.Name, nil
	case "description":
		return nullable(i.d.Description), nil
	case "locations":
		out := []any{}
		for _, l := range i.d.Locations {
			out = append(out, string(l))
		}
		return out, nil
	case "args":
		out := []any{}
		for _, a := range i.d.Arguments {
			out = append(out, introInput{i.s, a.Name, a.Description, a.Type, a.DefaultValue})
		}
		return out, nil
	case "isRepeatable":
		return i.d.IsRepeatable, nil
	}
	return nil, nil
}
