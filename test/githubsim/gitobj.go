package githubsim

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/glb-project/glb/internal/atomicfile"
)

// Git objects are hashed here, in Go, so REST and GraphQL report the same
// shas that `git clone` later sees. The bare repository on disk is written
// from these objects only when git is first asked for it.

const (
	objBlob   = "blob"
	objTree   = "tree"
	objCommit = "commit"
)

type gitObject struct {
	typ  string
	data []byte
}

func hashObject(typ string, data []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", typ, len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// store records an object and returns its sha; when the repository is on
// disk already, the object is written there too.
func (r *repo) store(typ string, data []byte) string {
	sha := hashObject(typ, data)
	if _, ok := r.objects[sha]; !ok {
		r.objects[sha] = gitObject{typ: typ, data: data}
	}
	return sha
}

// buildTree hashes the tree of files (path → content) bottom-up, storing
// every blob and tree, and returns the root tree's sha.
func buildTree(files map[string]string, store func(string, []byte) string) string {
	type entry struct {
		name, mode, sha string
	}
	sub := map[string]map[string]string{}
	var entries []entry
	for p, content := range files {
		if dir, rest, ok := strings.Cut(p, "/"); ok {
			if sub[dir] == nil {
				sub[dir] = map[string]string{}
			}
			sub[dir][rest] = content
			continue
		}
		mode := "100644"
		if strings.HasPrefix(content, "#!") {
			mode = "100755"
		}
		entries = append(entries, entry{name: p, mode: mode, sha: store(objBlob, []byte(content))})
	}
	for dir, fs := range sub {
		entries = append(entries, entry{name: dir, mode: "40000", sha: buildTree(fs, store)})
	}
	// Git sorts tree entries by name, comparing a directory as name + "/".
	key := func(e entry) string {
		if e.mode == "40000" {
			return e.name + "/"
		}
		return e.name
	}
	sort.Slice(entries, func(i, j int) bool { return key(entries[i]) < key(entries[j]) })
	var b bytes.Buffer
	for _, e := range entries {
		raw, _ := hex.DecodeString(e.sha)
		fmt.Fprintf(&b, "%s %s\x00", e.mode, e.name)
		b.Write(raw)
	}
	return store(objTree, b.Bytes())
}

func (c *commit) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "tree %s\n", c.tree)
	for _, p := range c.parents {
		fmt.Fprintf(&b, "parent %s\n", p)
	}
	fmt.Fprintf(&b, "author %s <%s> %d +0000\n", c.author.name, c.author.email, c.author.when.Unix())
	fmt.Fprintf(&b, "committer %s <%s> %d +0000\n", c.committer.name, c.committer.email, c.committer.when.Unix())
	fmt.Fprintf(&b, "\n%s\n", c.message)
	return b.Bytes()
}

// parseCommit reads a commit object's tree, parents, signatures and
// message (other headers, like gpgsig, are skipped).
func parseCommit(data []byte) *commit {
	c := &commit{}
	head, msg, _ := strings.Cut(string(data), "\n\n")
	c.message = strings.TrimSuffix(msg, "\n")
	for _, line := range strings.Split(head, "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "tree":
			c.tree = v
		case "parent":
			c.parents = append(c.parents, v)
		case "author":
			c.author = parseSignature(v)
		case "committer":
			c.committer = parseSignature(v)
		}
	}
	return c
}

// parseSignature reads "Name <email> 1700000000 +0000".
func parseSignature(s string) signature {
	name, rest, _ := strings.Cut(s, " <")
	email, rest, _ := strings.Cut(rest, "> ")
	secs, zone, _ := strings.Cut(rest, " ")
	t, _ := strconv.ParseInt(secs, 10, 64)
	when := time.Unix(t, 0).UTC()
	if tz, err := time.Parse("-0700", zone); err == nil {
		when = when.In(tz.Location())
	}
	return signature{name: name, email: email, when: when}
}

// changesBetween lists what changed from before to after, for REST.
func changesBetween(before, after map[string]string) []fileChange {
	paths := map[string]bool{}
	for p := range before {
		paths[p] = true
	}
	for p := range after {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	var out []fileChange
	for _, p := range sorted {
		old, had := before[p]
		cur, has := after[p]
		fc := fileChange{path: p}
		switch {
		case had && !has:
			fc.status, fc.deletions = "removed", lineCount(old)
		case had && old == cur:
			continue
		case had:
			fc.status = "modified"
		default:
			fc.status = "added"
		}
		if has {
			fc.blob = hashObject(objBlob, []byte(cur))
			fc.additions, fc.deletions, fc.patch = diffLines(old, cur)
		}
		out = append(out, fc)
	}
	return out
}

// writeGit writes (or brings up to date) the bare repository of r under
// root/<owner>/<name>.git: loose objects, branch refs and HEAD.
func (r *repo) writeGit(root string) error {
	dir := filepath.Join(root, r.owner.login, r.name+".git")
	if r.gitDir == "" {
		for _, d := range []string{"objects/info", "objects/pack", "refs/heads", "refs/tags", "info"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				return fmt.Errorf("create git repository %s: %w", r.fullName(), err)
			}
		}
		config := "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n[http]\n\tuploadpack = true\n\treceivepack = true\n"
		if err := writeFileAtomic(filepath.Join(dir, "config"), []byte(config)); err != nil {
			return err
		}
	}
	for sha, obj := range r.objects {
		p := filepath.Join(dir, "objects", sha[:2], sha[2:])
		if _, err := os.Stat(p); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		var b bytes.Buffer
		zw := zlib.NewWriter(&b)
		fmt.Fprintf(zw, "%s %d\x00", obj.typ, len(obj.data))
		zw.Write(obj.data)
		if err := zw.Close(); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(p, b.Bytes()); err != nil {
			return err
		}
	}
	for name, sha := range r.branches {
		p := filepath.Join(dir, "refs", "heads", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(p, []byte(sha+"\n")); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, "HEAD"), []byte("ref: refs/heads/"+r.defaultBranch+"\n")); err != nil {
		return err
	}
	r.gitDir = dir
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o644, false); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
