package githubsim

import (
	"fmt"
	"html"
	"sort"
	"strings"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
)

// Resolvers: the GitHub objects of schema.graphql over the simulated
// world. The executor holds Server.dataMu (read for queries, write for
// mutations) while they run.

func gqlTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

func (e *executor) userObj(u *user) any {
	if u == nil {
		return nil
	}
	return &gqlUser{u}
}

func (e *executor) repoObj(r *repo) any {
	if r == nil {
		return nil
	}
	return &gqlRepo{r}
}

// Query root.

type queryRoot struct{}

func (queryRoot) typeName() string { return "Query" }

func (queryRoot) field(e *executor, name string, args map[string]any) (any, error) {
	w := e.s.world
	switch name {
	case "__schema":
		return introSchema{e.schema}, nil
	case "__type":
		n := toString(args["name"])
		if e.schema.Types[n] == nil {
			return nil, nil
		}
		return introType{e.schema, &ast.Type{NamedType: n}}, nil
	case "viewer":
		u := e.s.viewer(e.c)
		if u == nil {
			return nil, &fieldError{typ: "FORBIDDEN", msg: "Resource not accessible by integration"}
		}
		return e.userObj(u), nil
	case "rateLimit":
		return &mapObj{typ: "RateLimit", fields: map[string]any{
			"cost": e.cost, "limit": e.rate.limit, "nodeCount": e.nodeCount, "remaining": e.rate.remaining(),
			"resetAt": gqlTime(e.rate.reset), "used": e.rate.used,
		}}, nil
	case "repository":
		owner, n := toString(args["owner"]), toString(args["name"])
		r := w.repo(owner, n)
		if r == nil {
			return nil, notFoundErr("Could not resolve to a Repository with the name '%s/%s'.", owner, n)
		}
		return e.repoObj(r), nil
	case "repositoryOwner":
		u := e.s.lookupUser(toString(args["login"]))
		return e.userObj(u), nil
	case "user":
		login := toString(args["login"])
		u := e.s.lookupUser(login)
		if u == nil || u.typ != "User" {
			return nil, notFoundErr("Could not resolve to a User with the login of '%s'.", login)
		}
		return e.userObj(u), nil
	case "organization":
		login := toString(args["login"])
		u := w.user(login)
		if u == nil || u.typ != "Organization" {
			return nil, notFoundErr("Could not resolve to an Organization with the login of '%s'.", login)
		}
		return e.userObj(u), nil
	case "search":
		return e.search(args)
	case "node":
		return e.node(toString(args["id"]))
	case "nodes":
		var out []any
		for _, id := range toStrings(args["ids"]) {
			n, err := e.node(id)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, nil
	}
	return nil, fmt.Errorf("internal error: no field %s on Query", name)
}

func (e *executor) search(args map[string]any) (any, error) {
	q := toString(args["query"])
	var items []any
	extra := map[string]any{"codeCount": 0, "discussionCount": 0, "issueCount": 0, "repositoryCount": 0, "userCount": 0, "wikiCount": 0}
	switch toString(args["type"]) {
	case "ISSUE", "ISSUE_ADVANCED":
		hits := e.s.matchIssues(false, q)
		by, order := "", "desc"
		for _, t := range searchTerms(q) {
			if v, ok := strings.CutPrefix(t, "sort:"); ok {
				f, dir, _ := strings.Cut(v, "-")
				by, order = f, dir
			}
		}
		sortHits(hits, by, order)
		for _, h := range hits {
			items = append(items, &gqlIssue{h.r, h.is})
		}
		extra["issueCount"] = len(items)
	case "REPOSITORY":
		for _, r := range e.s.matchRepos(false, q) {
			items = append(items, &gqlRepo{r})
		}
		extra["repositoryCount"] = len(items)
	case "USER":
		for _, t := range searchTerms(q) {
			for _, login := range sortedLogins(e.s.world) {
				if u := e.s.world.user(login); textMatch(u.login+" "+u.name, t) {
					items = append(items, &gqlUser{u})
				}
			}
		}
		extra["userCount"] = len(items)
	}
	c, err := newConn("SearchResultItemConnection", items, args)
	if err != nil {
		return nil, err
	}
	c.extra = extra
	return c, nil
}

func sortedLogins(w *world) []string {
	out := make([]string, 0, len(w.users))
	for l := range w.users {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// node resolves a global id.
func (e *executor) node(id string) (any, error) {
	prefix, n, ok := parseNodeID(id)
	if ok {
		w := e.s.world
		for _, r := range w.order {
			switch prefix {
			case "R":
				if r.id == n {
					return &gqlRepo{r}, nil
				}
			case "I", "PR":
				for _, is := range r.issues {
					if (prefix == "I" && is.pull == nil && is.id == n) || (prefix == "PR" && is.pull != nil && is.pull.id == n) {
						return &gqlIssue{r, is}, nil
					}
				}
			case "IC":
				for _, is := range r.issues {
					for _, cm := range is.comments {
						if cm.id == n {
							return &gqlComment{r, is, cm}, nil
						}
					}
				}
			case "LA":
				for _, l := range r.labels {
					if l.id == n {
						return &gqlLabel{r, l}, nil
					}
				}
			}
		}
		if prefix == "U" || prefix == "O" {
			for _, u := range w.users {
				if u.id == n {
					return &gqlUser{u}, nil
				}
			}
		}
	}
	return nil, notFoundErr("Could not resolve to a node with the global id of '%s'", id)
}

// Users and organisations.

type gqlUser struct{ u *user }

func (g *gqlUser) typeName() string {
	switch g.u.typ {
	case "Organization":
		return "Organization"
	case "Bot":
		return "Bot"
	}
	return "User"
}

func (g *gqlUser) field(e *executor, name string, args map[string]any) (any, error) {
	u := g.u
	switch name {
	case "id":
		return u.nodeID(), nil
	case "databaseId":
		return u.id, nil
	case "login":
		return u.login, nil
	case "name":
		return nullable(u.name), nil
	case "email":
		if g.typeName() == "User" {
			return u.email, nil
		}
		return nullable(u.email), nil
	case "bio", "description":
		return nullable(u.bio), nil
	case "company":
		return nullable(u.company), nil
	case "location":
		return nullable(u.location), nil
	case "avatarUrl":
		return e.c.web("/avatars/u/%d?v=4", u.id), nil
	case "url":
		return e.c.web("/%s", u.login), nil
	case "resourcePath":
		return "/" + u.login, nil
	case "websiteUrl", "twitterUsername":
		return nil, nil
	case "isSiteAdmin":
		return false, nil
	case "createdAt", "updatedAt":
		return gqlTime(u.created), nil
	case "repository":
		r := e.s.world.repo(u.login, toString(args["name"]))
		return e.repoObj(r), nil
	case "repositories":
		var items []any
		privacy := toString(args["privacy"])
		for _, r := range e.s.world.order {
			if !strings.EqualFold(r.owner.login, u.login) {
				continue
			}
			if (privacy == "PUBLIC" && r.private) || (privacy == "PRIVATE" && !r.private) {
				continue
			}
			items = append(items, &gqlRepo{r})
		}
		orderRepos(items, args["orderBy"])
		c, err := newConn("RepositoryConnection", items, args)
		if err != nil {
			return nil, err
		}
		c.extra = map[string]any{"totalDiskUsage": 108 * len(items)}
		return c, nil
	}
	return nil, fmt.Errorf("internal error: no field %s on %s", name, g.typeName())
}

func orderRepos(items []any, orderBy any) {
	o, _ := orderBy.(map[string]any)
	if o == nil {
		return
	}
	key := func(r *repo) string {
		switch o["field"] {
		case "NAME":
			return strings.ToLower(r.name)
		case "UPDATED_AT":
			return r.updated.Format(time.RFC3339)
		case "PUSHED_AT":
			return r.pushed.Format(time.RFC3339)
		case "STARGAZERS":
			return fmt.Sprintf("%010d", r.stars)
		}
		return r.created.Format(time.RFC3339)
	}
	desc := o["direction"] == "DESC"
	sort.SliceStable(items, func(i, j int) bool {
		a, b := key(items[i].(*gqlRepo).r), key(items[j].(*gqlRepo).r)
		if desc {
			return a > b
		}
		return a < b
	})
}

// Repositories.

type gqlRepo struct{ r *repo }

func (*gqlRepo) typeName() string { return "Repository" }

func (g *gqlRepo) field(e *executor, name string, args map[string]any) (any, error) {
	r := g.r
	switch name {
	case "id":
		return r.nodeID(), nil
	case "databaseId":
		return r.id, nil
	case "name":
		return r.name, nil
	case "nameWithOwner":
		return r.fullName(), nil
	case "description":
		return nullable(r.description), nil
	case "homepageUrl":
		return nullable(r.homepage), nil
	case "url":
		return e.c.web("/%s", r.fullName()), nil
	case "resourcePath":
		return "/" + r.fullName(), nil
	case "sshUrl":
		return "git@" + strings.TrimPrefix(strings.TrimPrefix(e.c.webBase, "https://"), "http://") + ":" + r.fullName() + ".git", nil
	case "isPrivate":
		return r.private, nil
	case "visibility":
		if r.private {
			return "PRIVATE", nil
		}
		return "PUBLIC", nil
	case "isFork", "isArchived", "isTemplate", "isDisabled", "isEmpty", "hasDiscussionsEnabled", "deleteBranchOnMerge":
		return false, nil
	case "isInOrganization":
		return r.owner.typ == "Organization", nil
	case "hasIssuesEnabled", "hasWikiEnabled", "hasProjectsEnabled", "mergeCommitAllowed", "rebaseMergeAllowed", "squashMergeAllowed", "viewerCanAdminister":
		return true, nil
	case "viewerPermission":
		return "ADMIN", nil
	case "parent":
		return nil, nil
	case "createdAt":
		return gqlTime(r.created), nil
	case "updatedAt":
		return gqlTime(r.updated), nil
	case "pushedAt":
		return gqlTime(r.pushed), nil
	case "stargazerCount":
		return r.stars, nil
	case "forkCount":
		return 0, nil
	case "owner":
		return &gqlUser{r.owner}, nil
	case "primaryLanguage":
		if r.language == "" {
			return nil, nil
		}
		return &mapObj{typ: "Language", fields: map[string]any{"name": r.language, "id": nodeID("L", int64(len(r.language))), "color": "#00ADD8"}}, nil
	case "defaultBranchRef":
		return &gqlRef{r, r.defaultBranch}, nil
	case "repositoryTopics":
		var items []any
		for i, t := range r.topics {
			items = append(items, &mapObj{typ: "RepositoryTopic", fields: map[string]any{
				"id": nodeID("RT", r.id*100+int64(i)), "resourcePath": "/topics/" + t, "url": e.c.web("/topics/%s", t),
				"topic": &mapObj{typ: "Topic", fields: map[string]any{"id": nodeID("T", int64(i)), "name": t}},
			}})
		}
		return newConn("RepositoryTopicConnection", items, args)
	case "watchers":
		return newConn("UserConnection", nil, args)
	case "issue", "pullRequest", "issueOrPullRequest":
		n, _ := toInt(args["number"])
		is := r.issue(n)
		kind := map[string]string{"issue": "Issue", "pullRequest": "PullRequest", "issueOrPullRequest": "issue or pull request"}[name]
		if is == nil || (name == "issue" && is.pull != nil) || (name == "pullRequest" && is.pull == nil) {
			return nil, notFoundErr("Could not resolve to an %s with the number of %d.", kind, n)
		}
		return &gqlIssue{r, is}, nil
	case "issues", "pullRequests":
		return e.issueConn(r, name == "pullRequests", args)
	case "label":
		l := r.label(toString(args["name"]))
		if l == nil {
			return nil, nil
		}
		return &gqlLabel{r, l}, nil
	case "labels":
		var items []any
		q := toString(args["query"])
		for _, l := range r.labels {
			if q == "" || textMatch(l.name+" "+l.description, q) {
				items = append(items, &gqlLabel{r, l})
			}
		}
		if o, _ := args["orderBy"].(map[string]any); o != nil && o["field"] == "NAME" {
			sort.SliceStable(items, func(i, j int) bool {
				a, b := items[i].(*gqlLabel).l.name, items[j].(*gqlLabel).l.name
				if o["direction"] == "DESC" {
					return a > b
				}
				return a < b
			})
		}
		return newConn("LabelConnection", items, args)
	case "ref":
		n := toString(args["qualifiedName"])
		n = strings.TrimPrefix(n, "refs/heads/")
		if _, ok := r.branches[n]; !ok {
			return nil, nil
		}
		return &gqlRef{r, n}, nil
	case "refs":
		var items []any
		if toString(args["refPrefix"]) == "refs/heads/" {
			q := toString(args["query"])
			names := r.sortedBranches()
			if toString(args["direction"]) == "DESC" {
				sort.Sort(sort.Reverse(sort.StringSlice(names)))
			}
			for _, n := range names {
				if q == "" || strings.Contains(n, q) {
					items = append(items, &gqlRef{r, n})
				}
			}
		}
		return newConn("RefConnection", items, args)
	case "object":
		return e.gitObject(r, toString(args["expression"]), toString(args["oid"]))
	}
	return nil, fmt.Errorf("internal error: no field %s on Repository", name)
}

// issueConn lists a repository's issues or pull requests with GitHub's
// filters; the default order is oldest first.
func (e *executor) issueConn(r *repo, pulls bool, args map[string]any) (any, error) {
	filters, _ := args["filterBy"].(map[string]any)
	states := toStrings(args["states"])
	labels := toStrings(args["labels"])
	if filters != nil {
		if s := toStrings(filters["states"]); len(s) > 0 {
			states = s
		}
		labels = append(labels, toStrings(filters["labels"])...)
	}
	var list []*issue
	for _, is := range r.issues {
		if (is.pull != nil) != pulls {
			continue
		}
		if len(states) > 0 && !containsFold(states, gqlState(is)) {
			continue
		}
		if len(labels) > 0 {
			match := false
			for _, l := range labels {
				match = match || hasLabel(is, l)
			}
			if !match {
				continue
			}
		}
		if pulls {
			if h := toString(args["headRefName"]); h != "" && is.pull.head != h {
				continue
			}
			if b := toString(args["baseRefName"]); b != "" && is.pull.base != b {
				continue
			}
		}
		if filters != nil {
			if a := toString(filters["assignee"]); a != "" && !matchAssignee(is, a) {
				continue
			}
			if c := toString(filters["createdBy"]); c != "" && !strings.EqualFold(is.user.login, c) {
				continue
			}
			if m := toString(filters["mentioned"]); m != "" && !textMatch(is.body, "@"+m) {
				continue
			}
			if m := toString(filters["milestone"]); m != "" && m != "*" {
				continue // nothing has a milestone
			}
			if since, err := time.Parse(time.RFC3339, toString(filters["since"])); err == nil && is.updated.Before(since) {
				continue
			}
		}
		list = append(list, is)
	}
	by, dir := "", "asc"
	if o, _ := args["orderBy"].(map[string]any); o != nil {
		by = map[any]string{"CREATED_AT": "created", "UPDATED_AT": "updated", "COMMENTS": "comments"}[o["field"]]
		dir = strings.ToLower(toString(o["direction"]))
	}
	sortIssues(list, by, dir)
	items := make([]any, len(list))
	for i, is := range list {
		items[i] = &gqlIssue{r, is}
	}
	typ := "IssueConnection"
	if pulls {
		typ = "PullRequestConnection"
	}
	return newConn(typ, items, args)
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func gqlState(is *issue) string {
	if is.pull != nil && is.pull.merged {
		return "MERGED"
	}
	return strings.ToUpper(is.state)
}

// Issues and pull requests.

type gqlIssue struct {
	r  *repo
	is *issue
}

func (g *gqlIssue) typeName() string {
	if g.is.pull != nil {
		return "PullRequest"
	}
	return "Issue"
}

func (g *gqlIssue) field(e *executor, name string, args map[string]any) (any, error) {
	r, is := g.r, g.is
	kind := "issues"
	if is.pull != nil {
		kind = "pull"
	}
	switch name {
	case "id":
		return is.nodeID(), nil
	case "databaseId":
		if is.pull != nil {
			return is.pull.id, nil
		}
		return is.id, nil
	case "number":
		return is.number, nil
	case "title":
		return is.title, nil
	case "body", "bodyText":
		return is.body, nil
	case "bodyHTML":
		if is.body == "" {
			return "", nil
		}
		return "<p>" + html.EscapeString(is.body) + "</p>", nil
	case "url":
		return e.c.web("/%s/%s/%d", r.fullName(), kind, is.number), nil
	case "resourcePath":
		return fmt.Sprintf("/%s/%s/%d", r.fullName(), kind, is.number), nil
	case "state":
		return gqlState(is), nil
	case "stateReason":
		if is.stateReason == "" {
			return nil, nil
		}
		return strings.ToUpper(is.stateReason), nil
	case "closed":
		return is.state == "closed", nil
	case "closedAt":
		return gqlTime(is.closed), nil
	case "createdAt":
		return gqlTime(is.created), nil
	case "updatedAt":
		return gqlTime(is.updated), nil
	case "locked", "isCrossRepository", "maintainerCanModify":
		return false, nil
	case "viewerCanUpdate":
		return true, nil
	case "author":
		return e.userObj(is.user), nil
	case "authorAssociation":
		return authorAssociation(r, is.user), nil
	case "milestone", "reviewDecision":
		return nil, nil
	case "reactionGroups":
		return []any{}, nil
	case "repository", "baseRepository", "headRepository":
		return &gqlRepo{r}, nil
	case "headRepositoryOwner":
		return &gqlUser{r.owner}, nil
	case "assignees":
		items := make([]any, 0, len(is.assignees))
		for _, u := range is.assignees {
			items = append(items, &gqlUser{u})
		}
		return newConn("UserConnection", items, args)
	case "labels":
		items := make([]any, 0, len(is.labels))
		for _, l := range is.labels {
			items = append(items, &gqlLabel{r, l})
		}
		return newConn("LabelConnection", items, args)
	case "projectCards":
		return newConn("ProjectCardConnection", nil, args)
	case "comments":
		items := make([]any, 0, len(is.comments))
		for _, cm := range is.comments {
			items = append(items, &gqlComment{r, is, cm})
		}
		return newConn("IssueCommentConnection", items, args)
	}
	p := is.pull
	if p == nil {
		return nil, fmt.Errorf("internal error: no field %s on Issue", name)
	}
	switch name {
	case "isDraft":
		return p.draft, nil
	case "merged":
		return p.merged, nil
	case "mergedAt":
		return gqlTime(p.mergedAt), nil
	case "mergeable":
		if is.state == "open" {
			return "MERGEABLE", nil
		}
		return "UNKNOWN", nil
	case "headRefName":
		return p.head, nil
	case "baseRefName":
		return p.base, nil
	case "headRefOid":
		return p.headSHA, nil
	case "baseRefOid":
		return r.branches[p.base], nil
	case "additions":
		return p.additions, nil
	case "deletions":
		return p.deletions, nil
	case "changedFiles":
		return p.files, nil
	case "reviewRequests":
		return newConn("ReviewRequestConnection", nil, args)
	case "reviews":
		return newConn("PullRequestReviewConnection", nil, args)
	case "mergeCommit":
		if c := r.commits[p.mergeSHA]; c != nil {
			return &gqlCommit{r, c}, nil
		}
		return nil, nil
	case "commits":
		var items []any
		if c := r.commits[p.headSHA]; c != nil {
			items = append(items, &mapObj{typ: "PullRequestCommit", fields: map[string]any{
				"id": nodeID("PURC", p.id), "commit": &gqlCommit{r, c}, "pullRequest": g,
				"resourcePath": fmt.Sprintf("/%s/pull/%d/commits/%s", r.fullName(), is.number, c.sha),
				"url":          e.c.web("/%s/pull/%d/commits/%s", r.fullName(), is.number, c.sha),
			}})
		}
		return newConn("PullRequestCommitConnection", items, args)
	}
	return nil, fmt.Errorf("internal error: no field %s on PullRequest", name)
}

type gqlComment struct {
	r  *repo
	is *issue
	cm *comment
}

func (*gqlComment) typeName() string { return "IssueComment" }

func (g *gqlComment) field(e *executor, name string, args map[string]any) (any, error) {
	cm := g.cm
	kind := "issues"
	if g.is.pull != nil {
		kind = "pull"
	}
	switch name {
	case "id":
		return nodeID("IC", cm.id), nil
	case "databaseId":
		return cm.id, nil
	case "body", "bodyText":
		return cm.body, nil
	case "bodyHTML":
		return "<p>" + html.EscapeString(cm.body) + "</p>", nil
	case "author":
		return e.userObj(cm.user), nil
	case "authorAssociation":
		return authorAssociation(g.r, cm.user), nil
	case "createdAt":
		return gqlTime(cm.created), nil
	case "updatedAt":
		return gqlTime(cm.updated), nil
	case "includesCreatedEdit", "isMinimized":
		return false, nil
	case "minimizedReason":
		return nil, nil
	case "viewerDidAuthor":
		v := e.s.viewer(e.c)
		return v != nil && v == cm.user, nil
	case "issue":
		return &gqlIssue{g.r, g.is}, nil
	case "pullRequest":
		if g.is.pull == nil {
			return nil, nil
		}
		return &gqlIssue{g.r, g.is}, nil
	case "repository":
		return &gqlRepo{g.r}, nil
	case "reactionGroups":
		return []any{}, nil
	case "url":
		return e.c.web("/%s/%s/%d#issuecomment-%d", g.r.fullName(), kind, g.is.number, cm.id), nil
	case "resourcePath":
		return fmt.Sprintf("/%s/%s/%d#issuecomment-%d", g.r.fullName(), kind, g.is.number, cm.id), nil
	}
	return nil, fmt.Errorf("internal error: no field %s on IssueComment", name)
}

type gqlLabel struct {
	r *repo
	l *label
}

func (*gqlLabel) typeName() string { return "Label" }

func (g *gqlLabel) field(e *executor, name string, args map[string]any) (any, error) {
	l := g.l
	switch name {
	case "id":
		return nodeID("LA", l.id), nil
	case "name":
		return l.name, nil
	case "color":
		return l.color, nil
	case "description":
		return nullable(l.description), nil
	case "isDefault":
		return l.name == "bug" || l.name == "enhancement" || l.name == "documentation", nil
	case "createdAt":
		return gqlTime(g.r.created), nil
	case "url":
		return e.c.web("/%s/labels/%s", g.r.fullName(), strings.ReplaceAll(l.name, " ", "%20")), nil
	case "resourcePath":
		return fmt.Sprintf("/%s/labels/%s", g.r.fullName(), strings.ReplaceAll(l.name, " ", "%20")), nil
	}
	return nil, fmt.Errorf("internal error: no field %s on Label", name)
}

// Git objects.

type gqlRef struct {
	r    *repo
	name string
}

func (*gqlRef) typeName() string { return "Ref" }

func (g *gqlRef) field(e *executor, name string, args map[string]any) (any, error) {
	switch name {
	case "id":
		return nodeID("REF", g.r.id*1000+int64(len(g.name))), nil
	case "name":
		return g.name, nil
	case "prefix":
		return "refs/heads/", nil
	case "repository":
		return &gqlRepo{g.r}, nil
	case "target":
		if c := g.r.commits[g.r.branches[g.name]]; c != nil {
			return &gqlCommit{g.r, c}, nil
		}
		return nil, nil
	}
	return nil, fmt.Errorf("internal error: no field %s on Ref", name)
}

type gqlCommit struct {
	r *repo
	c *commit
}

func (*gqlCommit) typeName() string { return "Commit" }

func gitActor(e *executor, s signature) any {
	return &mapObj{typ: "GitActor", fields: map[string]any{
		"name": s.name, "email": s.email, "date": gqlTime(s.when), "user": e.userObj(s.user),
		"avatarUrl": e.c.web("/avatars/u/%d?v=4", 0),
	}}
}

func (g *gqlCommit) field(e *executor, name string, args map[string]any) (any, error) {
	c := g.c
	switch name {
	case "id":
		return nodeID("C", int64(shaPrefix(c.sha))), nil
	case "oid":
		return c.sha, nil
	case "abbreviatedOid":
		return c.sha[:7], nil
	case "message":
		return c.message, nil
	case "messageHeadline":
		h, _, _ := strings.Cut(c.message, "\n")
		return h, nil
	case "messageBody":
		_, b, _ := strings.Cut(c.message, "\n")
		return strings.TrimSpace(b), nil
	case "committedDate":
		return gqlTime(c.committer.when), nil
	case "authoredDate":
		return gqlTime(c.author.when), nil
	case "author":
		return gitActor(e, c.author), nil
	case "committer":
		return gitActor(e, c.committer), nil
	case "url", "commitUrl":
		return e.c.web("/%s/commit/%s", g.r.fullName(), c.sha), nil
	case "resourcePath":
		return fmt.Sprintf("/%s/commit/%s", g.r.fullName(), c.sha), nil
	case "repository":
		return &gqlRepo{g.r}, nil
	case "additions", "deletions", "changedFilesIfAvailable":
		a, d := 0, 0
		for _, ch := range c.changes {
			a += ch.additions
			d += ch.deletions
		}
		return map[string]int{"additions": a, "deletions": d, "changedFilesIfAvailable": len(c.changes)}[name], nil
	case "tree":
		return &gqlTree{g.r, c, ""}, nil
	case "statusCheckRollup":
		return nil, nil // no checks run in the simulator
	case "parents":
		var items []any
		for _, p := range c.parents {
			if pc := g.r.commits[p]; pc != nil {
				items = append(items, &gqlCommit{g.r, pc})
			}
		}
		return newConn("CommitConnection", items, args)
	case "history":
		var items []any
		p := toString(args["path"])
		since, _ := time.Parse(time.RFC3339, toString(args["since"]))
		until, _ := time.Parse(time.RFC3339, toString(args["until"]))
		for _, hc := range g.r.history(c) {
			if p != "" && !touches(hc, p) {
				continue
			}
			if (!since.IsZero() && hc.committer.when.Before(since)) || (!until.IsZero() && hc.committer.when.After(until)) {
				continue
			}
			items = append(items, &gqlCommit{g.r, hc})
		}
		return newConn("CommitHistoryConnection", items, args)
	}
	return nil, fmt.Errorf("internal error: no field %s on Commit", name)
}

type gqlTree struct {
	r   *repo
	c   *commit
	dir string
}

func (*gqlTree) typeName() string { return "Tree" }

func (g *gqlTree) oid() string {
	sub := map[string]string{}
	for p, body := range g.c.files {
		if g.dir == "" {
			sub[p] = body
		} else if rest, ok := strings.CutPrefix(p, g.dir+"/"); ok {
			sub[rest] = body
		}
	}
	return buildTree(sub, hashObject)
}

func (g *gqlTree) field(e *executor, name string, args map[string]any) (any, error) {
	switch name {
	case "id":
		return nodeID("TREE", int64(shaPrefix(g.oid()))), nil
	case "oid":
		return g.oid(), nil
	case "abbreviatedOid":
		return g.oid()[:7], nil
	case "commitUrl":
		return e.c.web("/%s/commit/%s", g.r.fullName(), g.c.sha), nil
	case "repository":
		return &gqlRepo{g.r}, nil
	case "entries":
		files, dirs := dirEntries(g.c, g.dir)
		var out []any
		for _, d := range dirs {
			t := &gqlTree{g.r, g.c, d}
			out = append(out, &mapObj{typ: "TreeEntry", fields: map[string]any{
				"name": d[strings.LastIndex(d, "/")+1:], "path": d, "type": "tree", "mode": 16384, "oid": t.oid(),
				"object": t, "repository": &gqlRepo{g.r}, "size": 0, "extension": nil,
			}})
		}
		for _, f := range files {
			body := g.c.files[f]
			base := f[strings.LastIndex(f, "/")+1:]
			var ext any
			if i := strings.LastIndex(base, "."); i > 0 {
				ext = base[i:]
			}
			out = append(out, &mapObj{typ: "TreeEntry", fields: map[string]any{
				"name": base, "path": f, "type": "blob", "mode": 33188, "oid": hashObject(objBlob, []byte(body)),
				"object": blobObj(e, g.r, g.c, body), "repository": &gqlRepo{g.r}, "size": len(body), "extension": ext,
			}})
		}
		return out, nil
	}
	return nil, fmt.Errorf("internal error: no field %s on Tree", name)
}

func blobObj(e *executor, r *repo, c *commit, body string) *mapObj {
	oid := hashObject(objBlob, []byte(body))
	return &mapObj{typ: "Blob", fields: map[string]any{
		"id": nodeID("B", int64(shaPrefix(oid))), "oid": oid, "abbreviatedOid": oid[:7], "byteSize": len(body),
		"isBinary": false, "isTruncated": false, "text": body, "repository": &gqlRepo{r},
		"commitUrl": e.c.web("/%s/commit/%s", r.fullName(), c.sha),
	}}
}

// gitObject resolves Repository.object: "REF", "REF:PATH" or an oid.
func (e *executor) gitObject(r *repo, expr, oid string) (any, error) {
	if oid != "" {
		if c := r.commits[oid]; c != nil {
			return &gqlCommit{r, c}, nil
		}
		return nil, nil
	}
	ref, p, hasPath := strings.Cut(expr, ":")
	if ref == "HEAD" {
		ref = ""
	}
	c := r.resolve(ref)
	if c == nil {
		return nil, nil
	}
	if !hasPath {
		return &gqlCommit{r, c}, nil
	}
	p = strings.Trim(p, "/")
	if p == "" {
		return &gqlTree{r, c, ""}, nil
	}
	if body, ok := c.files[p]; ok {
		return blobObj(e, r, c, body), nil
	}
	if files, dirs := dirEntries(c, p); len(files)+len(dirs) > 0 {
		return &gqlTree{r, c, p}, nil
	}
	return nil, nil
}

// Mutations.

type mutationRoot struct{}

func (mutationRoot) typeName() string { return "Mutation" }

func (mutationRoot) field(e *executor, name string, args map[string]any) (any, error) {
	in, _ := args["input"].(map[string]any)
	w := e.s.world
	payload := func(typ string, fields map[string]any) *mapObj {
		fields["clientMutationId"] = in["clientMutationId"]
		return &mapObj{typ: typ, fields: fields}
	}
	switch name {
	case "createIssue":
		id := toString(in["repositoryId"])
		n, err := e.node(id)
		if err != nil {
			return nil, err
		}
		gr, ok := n.(*gqlRepo)
		if !ok {
			return nil, notFoundErr("Could not resolve to a Repository with the global id of '%s'", id)
		}
		title := toString(in["title"])
		if strings.TrimSpace(title) == "" {
			return nil, &fieldError{typ: "UNPROCESSABLE", msg: "Title can't be blank"}
		}
		is := w.addIssue(gr.r, title, toString(in["body"]), e.s.author(e.c), e.c.now)
		for _, lid := range toStrings(in["labelIds"]) {
			if l, _ := e.node(lid); l != nil {
				if gl, ok := l.(*gqlLabel); ok {
					is.labels = append(is.labels, gl.l)
				}
			}
		}
		for _, uid := range toStrings(in["assigneeIds"]) {
			if u, _ := e.node(uid); u != nil {
				if gu, ok := u.(*gqlUser); ok {
					is.assignees = append(is.assignees, gu.u)
				}
			}
		}
		return payload("CreateIssuePayload", map[string]any{"issue": &gqlIssue{gr.r, is}}), nil
	case "addComment":
		id := toString(in["subjectId"])
		n, err := e.node(id)
		if err != nil {
			return nil, err
		}
		gi, ok := n.(*gqlIssue)
		if !ok {
			return nil, notFoundErr("Could not resolve to a node with the global id of '%s'", id)
		}
		body := toString(in["body"])
		if strings.TrimSpace(body) == "" {
			return nil, &fieldError{typ: "UNPROCESSABLE", msg: "Body can't be blank"}
		}
		cm := w.addComment(gi.is, body, e.s.author(e.c), e.c.now)
		edge := &mapObj{typ: "IssueCommentEdge", fields: map[string]any{
			"cursor": encodeCursor(len(gi.is.comments) - 1), "node": &gqlComment{gi.r, gi.is, cm}}}
		return payload("AddCommentPayload", map[string]any{"commentEdge": edge, "subject": gi}), nil
	case "closeIssue", "reopenIssue", "updateIssue":
		idKey := "issueId"
		if name == "updateIssue" {
			idKey = "id"
		}
		id := toString(in[idKey])
		n, err := e.node(id)
		if err != nil {
			return nil, err
		}
		gi, ok := n.(*gqlIssue)
		if !ok || gi.is.pull != nil {
			return nil, notFoundErr("Could not resolve to an Issue with the global id of '%s'", id)
		}
		is := gi.is
		is.updated = e.c.now
		switch name {
		case "closeIssue":
			reason := strings.ToLower(toString(in["stateReason"]))
			if reason == "" {
				reason = "completed"
			}
			w.closeIssue(is, e.c.now, reason)
		case "reopenIssue":
			is.state, is.closed, is.stateReason = "open", time.Time{}, "reopened"
		case "updateIssue":
			if t, ok := in["title"].(string); ok {
				is.title = t
			}
			if b, ok := in["body"].(string); ok {
				is.body = b
			}
			switch in["state"] {
			case "CLOSED":
				w.closeIssue(is, e.c.now, "completed")
			case "OPEN":
				is.state, is.closed, is.stateReason = "open", time.Time{}, "reopened"
			}
			if ids, ok := in["labelIds"].([]any); ok {
				is.labels = nil
				for _, lid := range ids {
					if l, _ := e.node(toString(lid)); l != nil {
						if gl, ok := l.(*gqlLabel); ok {
							is.labels = append(is.labels, gl.l)
						}
					}
				}
			}
		}
		typ := map[string]string{"closeIssue": "CloseIssuePayload", "reopenIssue": "ReopenIssuePayload", "updateIssue": "UpdateIssuePayload"}[name]
		return payload(typ, map[string]any{"issue": gi}), nil
	}
	return nil, fmt.Errorf("internal error: no field %s on Mutation", name)
}
