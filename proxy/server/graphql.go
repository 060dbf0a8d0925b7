package server

import (
	"encoding/json"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/glb-project/glb/proxy/cache"
	"github.com/glb-project/glb/proxy/clients"
	"github.com/glb-project/glb/proxy/route"
)

// graphQLPolicy decides whether a GraphQL request may be shared with
// other clients (coalesced, and stored within the grant's max_age), and
// under which key. Only queries are; a mutation, a query whose answer
// depends on the pool credential that runs it (identityQuery), and a body
// without one canonical form (cache.GraphQLKey) go to GitHub on their own,
// as BYPASS. The scope check has run before: a client only ever reaches
// the cache for operations it may run.
func graphQLPolicy(g route.GraphQLRequest, grant clients.Grant) (cache.Policy, bool) {
	if g.Operation != route.Query {
		return cache.Policy{}, false
	}
	key, err := cache.GraphQLKey(g.Body)
	if err != nil {
		return cache.Policy{}, false
	}
	if identityQuery(g, key) {
		return cache.Policy{}, false
	}
	return cache.Policy{Key: key, MaxAge: grant.MaxAge, GraphQL: true}, true
}

// identityQuery reports whether a GraphQL request's answer describes the
// caller, that is the pool credential that runs it, rather than what it
// names: like REST's identity paths (identityDependent), it is never
// shared. Anywhere in the document, operations and fragments alike
// (unused fragments included: cheaper than resolving which are used, and
// never wrong in the unsafe direction):
//
//   - any field whose name holds "viewer", in any case: viewer, the
//     viewer* fields (viewerPermission, viewerCanUpdate, ...), isViewer,
//     isFollowingViewer, isSponsoringViewer, ...;
//   - any argument, or input object field inside an argument, whose name
//     holds "viewer" (starredRepositories(ownedByViewer: true),
//     marketplaceListings(viewerCanAdmin: true)), and the affiliations
//     and ownerAffiliations arguments (repositories(affiliations: ...)
//     lists what the caller is a collaborator or member of);
//   - the same names as keys of input objects in the variables, at any
//     depth (issues(filterBy: $f) with {"f": {"viewerSubscribed": true}});
//   - rateLimit (the credential's own points);
//   - "@me" in any string: an argument (search(query: "author:@me")), a
//     default value, or a variable (canonicalKey is the canonical body,
//     whose strings are decoded and re-encoded, so an escape like
//     \u0040me is seen as @me).
//
// Names are matched loosely on purpose: a field that merely mentions a
// viewer goes to GitHub unshared, which costs a call; sharing one that
// depends on the caller would show one credential's view to every client.
// It reads the document and variables that route.ParseGraphQL parsed; a
// request without a document, or with variables that do not decode,
// counts as identity-dependent (ParseGraphQL returns neither).
func identityQuery(g route.GraphQLRequest, canonicalKey string) bool {
	if strings.Contains(strings.ToLower(canonicalKey), "@me") {
		return true
	}
	var vars any
	if g.Variables != nil && json.Unmarshal(g.Variables, &vars) != nil || variablesNameIdentity(vars) {
		return true
	}
	doc := g.Document
	if doc == nil {
		return true
	}
	for _, op := range doc.Operations {
		for _, v := range op.VariableDefinitions {
			if v.DefaultValue != nil && namesMe(v.DefaultValue) {
				return true
			}
		}
		if directivesNameMe(op.Directives) || selectsIdentity(op.SelectionSet) {
			return true
		}
	}
	for _, f := range doc.Fragments {
		if directivesNameMe(f.Directives) || selectsIdentity(f.SelectionSet) {
			return true
		}
	}
	return false
}

// variablesNameIdentity reports whether the variables hold, at any depth,
// an input object field that identityArgument names: a filter such as
// issues(filterBy: $f) with {"f": {"viewerSubscribed": true}} depends on
// the caller as much as the same filter written in the query.
func variablesNameIdentity(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			if identityArgument(k) || variablesNameIdentity(c) {
				return true
			}
		}
	case []any:
		for _, c := range v {
			if variablesNameIdentity(c) {
				return true
			}
		}
	}
	return false
}

// identityField reports whether a field's value depends on the caller.
func identityField(name string) bool {
	return name == "rateLimit" || strings.Contains(strings.ToLower(name), "viewer")
}

// identityArgument reports whether an argument (or an input object field)
// makes a field's value depend on the caller.
func identityArgument(name string) bool {
	return name == "affiliations" || name == "ownerAffiliations" || strings.Contains(strings.ToLower(name), "viewer")
}

func selectsIdentity(set ast.SelectionSet) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if identityField(s.Name) || directivesNameMe(s.Directives) {
				return true
			}
			for _, a := range s.Arguments {
				if identityArgument(a.Name) || namesMe(a.Value) {
					return true
				}
			}
			if selectsIdentity(s.SelectionSet) {
				return true
			}
		case *ast.InlineFragment:
			if directivesNameMe(s.Directives) || selectsIdentity(s.SelectionSet) {
				return true
			}
		case *ast.FragmentSpread:
			// Its fragment is checked with doc.Fragments.
			if directivesNameMe(s.Directives) {
				return true
			}
		}
	}
	return false
}

func directivesNameMe(ds ast.DirectiveList) bool {
	for _, d := range ds {
		for _, a := range d.Arguments {
			if namesMe(a.Value) {
				return true
			}
		}
	}
	return false
}

// namesMe reports whether a literal value holds "@me" in a string
// (decoded: the parser has resolved GraphQL's escapes), or an input
// object field that identityArgument names.
func namesMe(v *ast.Value) bool {
	if v == nil {
		return false
	}
	if (v.Kind == ast.StringValue || v.Kind == ast.BlockValue || v.Kind == ast.EnumValue) && strings.Contains(strings.ToLower(v.Raw), "@me") {
		return true
	}
	for _, c := range v.Children {
		if v.Kind == ast.ObjectValue && identityArgument(c.Name) || namesMe(c.Value) {
			return true
		}
	}
	return false
}
