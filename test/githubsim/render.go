package githubsim

import (
	"encoding/base64"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// JSON shapes of GitHub's REST API, with the fields gh, go-github and
// octokit read. URLs point back at the simulator (the host and the
// /api/v3 prefix of the request), as GitHub's point at api.github.com.

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

func (c *call) api(format string, args ...any) string {
	return c.apiBase + fmt.Sprintf(format, args...)
}

func (c *call) web(format string, args ...any) string {
	return c.webBase + fmt.Sprintf(format, args...)
}

func (u *user) nodeID() string {
	switch u.typ {
	case "Organization":
		return nodeID("O", u.id)
	case "Bot":
		return nodeID("BOT", u.id)
	}
	return nodeID("U", u.id)
}

func (c *call) user(u *user) map[string]any {
	if u == nil {
		return nil
	}
	l := u.login
	base := c.api("/users/%s", l)
	return map[string]any{
		"login": l, "id": u.id, "node_id": u.nodeID(),
		"avatar_url":          c.web("/avatars/u/%d?v=4", u.id),
		"gravatar_id":         "",
		"url":                 base,
		"html_url":            c.web("/%s", l),
		"followers_url":       base + "/followers",
		"following_url":       base + "/following{/other_user}",
		"gists_url":           base + "/gists{/gist_id}",
		"starred_url":         base + "/starred{/owner}{/repo}",
		"subscriptions_url":   base + "/subscriptions",
		"organizations_url":   base + "/orgs",
		"repos_url":           base + "/repos",
		"events_url":          base + "/events{/privacy}",
		"received_events_url": base + "/received_events",
		"type":                u.typ,
		"user_view_type":      "public",
		"site_admin":          false,
	}
}

func (c *call) fullUser(u *user, publicRepos int) map[string]any {
	m := c.user(u)
	str := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	m["name"] = str(u.name)
	m["company"] = str(u.company)
	m["blog"] = ""
	m["location"] = str(u.location)
	m["email"] = str(u.email)
	m["hireable"] = nil
	m["bio"] = str(u.bio)
	m["twitter_username"] = nil
	m["public_repos"] = publicRepos
	m["public_gists"] = 0
	m["followers"] = 10
	m["following"] = 0
	m["created_at"] = ts(u.created)
	m["updated_at"] = ts(u.created)
	return m
}

func (c *call) org(u *user, publicRepos int) map[string]any {
	base := c.api("/orgs/%s", u.login)
	return map[string]any{
		"login": u.login, "id": u.id, "node_id": u.nodeID(), "url": base,
		"repos_url": base + "/repos", "events_url": base + "/events", "hooks_url": base + "/hooks",
		"issues_url": base + "/issues", "members_url": base + "/members{/member}",
		"public_members_url": base + "/public_members{/member}",
		"avatar_url":         c.web("/avatars/u/%d?v=4", u.id), "description": u.name,
		"name": u.name, "company": nil, "blog": "", "location": u.location, "email": u.email,
		"twitter_username": nil, "is_verified": false, "has_organization_projects": true,
		"has_repository_projects": true, "public_repos": publicRepos, "public_gists": 0,
		"followers": 0, "following": 0, "html_url": c.web("/%s", u.login),
		"created_at": ts(u.created), "updated_at": ts(u.created), "archived_at": nil, "type": "Organization",
	}
}

func (r *repo) nodeID() string { return nodeID("R", r.id) }

func (c *call) repo(r *repo, full bool) map[string]any {
	fn := r.fullName()
	base := c.api("/repos/%s", fn)
	visibility := "public"
	if r.private {
		visibility = "private"
	}
	open := 0
	for _, is := range r.issues {
		if is.state == "open" {
			open++
		}
	}
	m := map[string]any{
		"id": r.id, "node_id": r.nodeID(), "name": r.name, "full_name": fn, "private": r.private,
		"owner": c.user(r.owner), "html_url": c.web("/%s", fn), "description": r.description, "fork": false,
		"url": base, "forks_url": base + "/forks", "keys_url": base + "/keys{/key_id}",
		"collaborators_url": base + "/collaborators{/collaborator}", "teams_url": base + "/teams",
		"hooks_url": base + "/hooks", "issue_events_url": base + "/issues/events{/number}",
		"events_url": base + "/events", "assignees_url": base + "/assignees{/user}",
		"branches_url": base + "/branches{/branch}", "tags_url": base + "/tags",
		"blobs_url": base + "/git/blobs{/sha}", "git_tags_url": base + "/git/tags{/sha}",
		"git_refs_url": base + "/git/refs{/sha}", "trees_url": base + "/git/trees{/sha}",
		"statuses_url": base + "/statuses/{sha}", "languages_url": base + "/languages",
		"stargazers_url": base + "/stargazers", "contributors_url": base + "/contributors",
		"subscribers_url": base + "/subscribers", "subscription_url": base + "/subscription",
		"commits_url": base + "/commits{/sha}", "git_commits_url": base + "/git/commits{/sha}",
		"comments_url": base + "/comments{/number}", "issue_comment_url": base + "/issues/comments{/number}",
		"contents_url": base + "/contents/{+path}", "compare_url": base + "/compare/{base}...{head}",
		"merges_url": base + "/merges", "archive_url": base + "/{archive_format}{/ref}",
		"downloads_url": base + "/downloads", "issues_url": base + "/issues{/number}",
		"pulls_url": base + "/pulls{/number}", "milestones_url": base + "/milestones{/number}",
		"notifications_url": base + "/notifications{?since,all,participating}",
		"labels_url":        base + "/labels{/name}", "releases_url": base + "/releases{/id}",
		"deployments_url": base + "/deployments",
		"created_at":      ts(r.created), "updated_at": ts(r.updated), "pushed_at": ts(r.pushed),
		"git_url":   strings.Replace(c.webBase, "http", "git", 1) + "/" + fn + ".git",
		"ssh_url":   "git@" + strings.TrimPrefix(strings.TrimPrefix(c.webBase, "https://"), "http://") + ":" + fn + ".git",
		"clone_url": c.web("/%s.git", fn), "svn_url": c.web("/%s", fn),
		"homepage": r.homepage, "size": 108, "stargazers_count": r.stars, "watchers_count": r.stars,
		"language": r.language, "has_issues": true, "has_projects": true, "has_downloads": true,
		"has_wiki": true, "has_pages": false, "has_discussions": false, "forks_count": 0,
		"mirror_url": nil, "archived": false, "disabled": false, "open_issues_count": open,
		"license": nil, "allow_forking": true, "is_template": false,
		"web_commit_signoff_required": false, "topics": append([]string{}, r.topics...),
		"visibility": visibility, "forks": 0, "open_issues": open, "watchers": r.stars,
		"default_branch": r.defaultBranch,
	}
	if !c.cred.anonymous() {
		m["permissions"] = map[string]any{"admin": true, "maintain": true, "push": true, "triage": true, "pull": true}
	}
	if full {
		m["network_count"] = 0
		m["subscribers_count"] = 2
		m["temp_clone_token"] = ""
		m["allow_squash_merge"] = true
		m["allow_merge_commit"] = true
		m["allow_rebase_merge"] = true
		m["allow_auto_merge"] = false
		m["delete_branch_on_merge"] = false
		if r.owner.typ == "Organization" {
			m["organization"] = c.user(r.owner)
		}
	}
	return m
}

func (l *label) json(c *call, r *repo) map[string]any {
	return map[string]any{
		"id": l.id, "node_id": nodeID("LA", l.id),
		"url":  c.api("/repos/%s/labels/%s", r.fullName(), strings.ReplaceAll(l.name, " ", "%20")),
		"name": l.name, "color": l.color, "default": l.name == "bug" || l.name == "enhancement" || l.name == "documentation",
		"description": l.description,
	}
}

func (is *issue) nodeID() string {
	if is.pull != nil {
		return nodeID("PR", is.pull.id)
	}
	return nodeID("I", is.id)
}

func authorAssociation(r *repo, u *user) string {
	if u == r.owner {
		return "OWNER"
	}
	switch u.login {
	case "octocat", "hubot", "monalisa":
		return "MEMBER"
	}
	return "NONE"
}

func reactions(url string) map[string]any {
	return map[string]any{"url": url + "/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0,
		"hooray": 0, "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}
}

func (c *call) issue(r *repo, is *issue) map[string]any {
	fn := r.fullName()
	base := c.api("/repos/%s/issues/%d", fn, is.number)
	labels := make([]any, 0, len(is.labels))
	for _, l := range is.labels {
		labels = append(labels, l.json(c, r))
	}
	assignees := make([]any, 0, len(is.assignees))
	var assignee any
	for i, a := range is.assignees {
		if i == 0 {
			assignee = c.user(a)
		}
		assignees = append(assignees, c.user(a))
	}
	kind := "issues"
	if is.pull != nil {
		kind = "pull"
	}
	m := map[string]any{
		"url": base, "repository_url": c.api("/repos/%s", fn), "labels_url": base + "/labels{/name}",
		"comments_url": base + "/comments", "events_url": base + "/events",
		"html_url": c.web("/%s/%s/%d", fn, kind, is.number), "id": is.id, "node_id": is.nodeID(),
		"number": is.number, "title": is.title, "user": c.user(is.user), "labels": labels,
		"state": is.state, "locked": false, "assignee": assignee, "assignees": assignees,
		"milestone": nil, "comments": len(is.comments), "created_at": ts(is.created),
		"updated_at": ts(is.updated), "closed_at": ts(is.closed),
		"author_association": authorAssociation(r, is.user), "active_lock_reason": nil,
		"body": nullable(is.body), "reactions": reactions(base), "timeline_url": base + "/timeline",
		"performed_via_github_app": nil, "state_reason": nullable(is.stateReason),
	}
	if is.pull != nil {
		pbase := c.api("/repos/%s/pulls/%d", fn, is.number)
		m["draft"] = is.pull.draft
		m["pull_request"] = map[string]any{"url": pbase, "html_url": c.web("/%s/pull/%d", fn, is.number),
			"diff_url": c.web("/%s/pull/%d.diff", fn, is.number), "patch_url": c.web("/%s/pull/%d.patch", fn, is.number),
			"merged_at": ts(is.pull.mergedAt)}
	}
	return m
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (c *call) comment(r *repo, is *issue, cm *comment) map[string]any {
	fn := r.fullName()
	kind := "issues"
	if is.pull != nil {
		kind = "pull"
	}
	url := c.api("/repos/%s/issues/comments/%d", fn, cm.id)
	return map[string]any{
		"id": cm.id, "node_id": nodeID("IC", cm.id), "url": url,
		"html_url": c.web("/%s/%s/%d#issuecomment-%d", fn, kind, is.number, cm.id),
		"body":     cm.body, "user": c.user(cm.user), "created_at": ts(cm.created), "updated_at": ts(cm.updated),
		"issue_url": c.api("/repos/%s/issues/%d", fn, is.number), "author_association": authorAssociation(r, cm.user),
		"reactions": reactions(url), "performed_via_github_app": nil,
	}
}

func (c *call) pullRequest(r *repo, is *issue, full bool) map[string]any {
	fn := r.fullName()
	p := is.pull
	base := c.api("/repos/%s/pulls/%d", fn, is.number)
	ibase := c.api("/repos/%s/issues/%d", fn, is.number)
	html := c.web("/%s/pull/%d", fn, is.number)
	issueJSON := c.issue(r, is)
	ref := func(branch, sha string) map[string]any {
		return map[string]any{"label": r.owner.login + ":" + branch, "ref": branch, "sha": sha,
			"user": c.user(r.owner), "repo": c.repo(r, false)}
	}
	baseSHA := r.branches[p.base]
	m := map[string]any{
		"url": base, "id": p.id, "node_id": is.nodeID(), "html_url": html,
		"diff_url": html + ".diff", "patch_url": html + ".patch", "issue_url": ibase,
		"number": is.number, "state": is.state, "locked": false, "title": is.title,
		"user": c.user(is.user), "body": nullable(is.body), "created_at": ts(is.created),
		"updated_at": ts(is.updated), "closed_at": ts(is.closed), "merged_at": ts(p.mergedAt),
		"merge_commit_sha": nullable(p.mergeSHA), "assignee": issueJSON["assignee"],
		"assignees": issueJSON["assignees"], "requested_reviewers": []any{}, "requested_teams": []any{},
		"labels": issueJSON["labels"], "milestone": nil, "draft": p.draft,
		"commits_url": base + "/commits", "review_comments_url": base + "/comments",
		"review_comment_url": c.api("/repos/%s/pulls/comments{/number}", fn),
		"comments_url":       ibase + "/comments", "statuses_url": c.api("/repos/%s/statuses/%s", fn, p.headSHA),
		"head": ref(p.head, p.headSHA), "base": ref(p.base, baseSHA),
		"_links": map[string]any{
			"self": map[string]string{"href": base}, "html": map[string]string{"href": html},
			"issue": map[string]string{"href": ibase}, "comments": map[string]string{"href": ibase + "/comments"},
			"review_comments": map[string]string{"href": base + "/comments"},
			"review_comment":  map[string]string{"href": c.api("/repos/%s/pulls/comments{/number}", fn)},
			"commits":         map[string]string{"href": base + "/commits"},
			"statuses":        map[string]string{"href": c.api("/repos/%s/statuses/%s", fn, p.headSHA)},
		},
		"author_association": authorAssociation(r, is.user), "auto_merge": nil, "active_lock_reason": nil,
	}
	if full {
		m["merged"] = p.merged
		m["mergeable"] = !p.merged && is.state == "open"
		m["rebaseable"] = !p.merged && is.state == "open"
		m["mergeable_state"] = "clean"
		m["merged_by"] = nil
		if p.merged {
			m["merged_by"] = c.user(r.owner)
		}
		m["comments"] = len(is.comments)
		m["review_comments"] = 0
		m["maintainer_can_modify"] = false
		m["commits"] = p.commits
		m["additions"] = p.additions
		m["deletions"] = p.deletions
		m["changed_files"] = p.files
	}
	return m
}

func (c *call) sig(s signature) map[string]any {
	return map[string]any{"name": s.name, "email": s.email, "date": ts(s.when)}
}

func (c *call) commit(r *repo, cm *commit, full bool) map[string]any {
	fn := r.fullName()
	base := c.api("/repos/%s/commits/%s", fn, cm.sha)
	parents := make([]any, 0, len(cm.parents))
	for _, p := range cm.parents {
		parents = append(parents, map[string]any{"sha": p, "url": c.api("/repos/%s/commits/%s", fn, p),
			"html_url": c.web("/%s/commit/%s", fn, p)})
	}
	m := map[string]any{
		"sha": cm.sha, "node_id": nodeID("C", int64(shaPrefix(cm.sha))),
		"commit": map[string]any{
			"author": c.sig(cm.author), "committer": c.sig(cm.committer), "message": cm.message,
			"tree":          map[string]any{"sha": cm.tree, "url": c.api("/repos/%s/git/trees/%s", fn, cm.tree)},
			"url":           c.api("/repos/%s/git/commits/%s", fn, cm.sha),
			"comment_count": 0,
			"verification":  map[string]any{"verified": false, "reason": "unsigned", "signature": nil, "payload": nil, "verified_at": nil},
		},
		"url": base, "html_url": c.web("/%s/commit/%s", fn, cm.sha), "comments_url": base + "/comments",
		"author": c.user(cm.author.user), "committer": c.user(cm.committer.user), "parents": parents,
	}
	if full {
		files := make([]any, 0, len(cm.changes))
		adds, dels := 0, 0
		for _, f := range cm.changes {
			adds += f.additions
			dels += f.deletions
			files = append(files, map[string]any{
				"sha": f.blob, "filename": f.path, "status": f.status, "additions": f.additions,
				"deletions": f.deletions, "changes": f.additions + f.deletions,
				"blob_url":     c.web("/%s/blob/%s/%s", fn, cm.sha, f.path),
				"raw_url":      c.web("/%s/raw/%s/%s", fn, cm.sha, f.path),
				"contents_url": c.api("/repos/%s/contents/%s?ref=%s", fn, f.path, cm.sha),
				"patch":        f.patch,
			})
		}
		m["stats"] = map[string]any{"total": adds + dels, "additions": adds, "deletions": dels}
		m["files"] = files
	}
	return m
}

func shaPrefix(sha string) uint32 {
	var v uint32
	fmt.Sscanf(sha[:8], "%08x", &v)
	return v
}

func (c *call) branch(r *repo, name string, full bool) map[string]any {
	sha := r.branches[name]
	fn := r.fullName()
	if !full {
		return map[string]any{"name": name, "commit": map[string]any{"sha": sha,
			"url": c.api("/repos/%s/commits/%s", fn, sha)}, "protected": name == r.defaultBranch}
	}
	return map[string]any{
		"name": name, "commit": c.commit(r, r.commits[sha], false),
		"_links": map[string]any{"self": c.api("/repos/%s/branches/%s", fn, name),
			"html": c.web("/%s/tree/%s", fn, name)},
		"protected": name == r.defaultBranch,
		"protection": map[string]any{"enabled": name == r.defaultBranch,
			"required_status_checks": map[string]any{"enforcement_level": "off", "contexts": []any{}, "checks": []any{}}},
		"protection_url": c.api("/repos/%s/branches/%s/protection", fn, name),
	}
}

// content renders a file or directory entry of the contents API.
func (c *call) content(r *repo, cm *commit, ref, p string, isDir bool, withBody bool) map[string]any {
	fn := r.fullName()
	self := c.api("/repos/%s/contents/%s?ref=%s", fn, p, ref)
	kind, size, sha := "file", 0, ""
	var gitURL, download any
	htmlKind := "blob"
	if isDir {
		kind, htmlKind = "dir", "tree"
		sub := map[string]string{}
		for fp, body := range cm.files {
			if rest, ok := strings.CutPrefix(fp, p+"/"); ok {
				sub[rest] = body
			}
		}
		sha = buildTree(sub, hashObject)
		gitURL = c.api("/repos/%s/git/trees/%s", fn, sha)
	} else {
		body := cm.files[p]
		size = len(body)
		sha = hashObject(objBlob, []byte(body))
		gitURL = c.api("/repos/%s/git/blobs/%s", fn, sha)
		download = c.web("/%s/raw/%s/%s", fn, ref, p)
	}
	html := c.web("/%s/%s/%s/%s", fn, htmlKind, ref, p)
	m := map[string]any{
		"type": kind, "size": size, "name": path.Base(p), "path": p, "sha": sha, "url": self,
		"git_url": gitURL, "html_url": html, "download_url": download,
		"_links": map[string]any{"self": self, "git": gitURL, "html": html},
	}
	if withBody && !isDir {
		m["encoding"] = "base64"
		m["content"] = wrap60(base64.StdEncoding.EncodeToString([]byte(cm.files[p])))
	}
	return m
}

// wrap60 breaks base64 into lines of 60 characters, as GitHub does.
func wrap60(s string) string {
	var b strings.Builder
	for len(s) > 60 {
		b.WriteString(s[:60] + "\n")
		s = s[60:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

// dirEntries lists the direct children of dir ("" is the root) in cm.
func dirEntries(cm *commit, dir string) (files, dirs []string) {
	seenDir := map[string]bool{}
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	for p := range cm.files {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		if d, _, isSub := strings.Cut(rest, "/"); isSub {
			if !seenDir[d] {
				seenDir[d] = true
				dirs = append(dirs, prefix+d)
			}
			continue
		}
		files = append(files, p)
	}
	sort.Strings(files)
	sort.Strings(dirs)
	return files, dirs
}
