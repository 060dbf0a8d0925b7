package route

import "strings"

// words are the literal segments of GitHub REST paths that a template
// keeps. Every other segment becomes a placeholder, so a client cannot
// create metric series by inventing paths.
var words = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`
		actions actors app apps archive artifacts assets assignees autolinks
		blobs branches caches check-runs check-suites checks codeowners
		collaborators comments commits compare contents contributors
		code-scanning dependabot deployments dispatches emojis environments
		events feeds followers following forks gists git hooks installation
		installations invitations issues jobs keys labels languages license
		licenses logs markdown members memberships merge merges meta
		milestones notifications octocat orgs organizations packages pages
		projects protection public_members pulls rate_limit reactions readme
		refs releases repos repositories requested_reviewers reviews runners
		runs search secrets stargazers starred stats status statuses
		subscribers subscription tags teams timeline topics traffic trees
		user users variables workflows zen code labels latest ref heads
		matching-refs files jobs attempts usage timing required_status_checks
		access_tokens teams
	`) {
		m[w] = true
	}
	return m
}()

const maxTemplateDepth = 8

// Template returns a bounded route template for decoded REST segments,
// such as /repos/{owner}/{repo}/issues/{number}/comments.
func Template(segs []string) string {
	if len(segs) == 0 {
		return "/"
	}
	var b strings.Builder
	names := NamePositions(segs)
	for i, s := range segs {
		if i == maxTemplateDepth {
			b.WriteString("/...")
			break
		}
		b.WriteByte('/')
		switch {
		case i == 0 && !words[s]:
			b.WriteString("{other}")
			return b.String()
		case i >= 1 && i <= names && segs[0] == "repos":
			if i == 1 {
				b.WriteString("{owner}")
			} else {
				b.WriteString("{repo}")
			}
		case i == 1 && names == 1:
			b.WriteString("{" + strings.TrimSuffix(segs[0], "s") + "}")
		case words[s]:
			b.WriteString(s)
		case isNumber(s):
			b.WriteString("{number}")
		default:
			b.WriteString("{name}")
		}
	}
	return b.String()
}

func isNumber(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
