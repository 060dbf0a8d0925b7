package githubsim

import (
	"fmt"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"strings"
)

// Git smart HTTP, served by `git http-backend` over bare repositories that
// the server writes from its own objects on first use. Like GitHub, public
// repositories clone without credentials, private ones need Basic auth
// with a token as the password, and a bad token gets 401.

// gitPath splits a smart-HTTP path into owner, repository and the service
// part ("info/refs", "git-upload-pack", "git-receive-pack").
func gitPath(p string) (owner, name, rest string, ok bool) {
	segs := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 3)
	if len(segs) != 3 || segs[0] == "" || segs[1] == "" {
		return "", "", "", false
	}
	switch segs[0] {
	case "api", "repos", "users", "orgs", "search", "app", "_sim", "user", "installation":
		return "", "", "", false
	}
	rest = segs[2]
	switch rest {
	case "info/refs", "git-upload-pack", "git-receive-pack", "HEAD":
	default:
		// Not a smart-HTTP service (the dumb protocol is not served):
		// the REST router answers 404.
		return "", "", "", false
	}
	return segs[0], strings.TrimSuffix(segs[1], ".git"), rest, true
}

func isGitPath(p string) bool {
	_, _, _, ok := gitPath(p)
	return ok
}

func gitError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
	}
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// gitRoot returns the directory holding the bare repositories, creating a
// temporary one if DataDir is empty. s.dataMu must be held for writing.
func (s *Server) gitRootLocked() (string, error) {
	if s.DataDir != "" {
		return s.DataDir, os.MkdirAll(s.DataDir, 0o755)
	}
	if s.tmpDir == "" {
		d, err := os.MkdirTemp("", "githubsim-git-")
		if err != nil {
			return "", fmt.Errorf("create git data dir: %w", err)
		}
		s.tmpDir = d
	}
	return s.tmpDir, nil
}

// WriteRepositories writes every repository to disk now (otherwise each is
// written when git first asks for it). The binary calls it at startup so
// the data dir can be inspected.
func (s *Server) WriteRepositories() error {
	s.init()
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	root, err := s.gitRootLocked()
	if err != nil {
		return err
	}
	for _, r := range s.world.order {
		if err := r.writeGit(root); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) serveGit(w http.ResponseWriter, r *http.Request) {
	owner, name, rest, _ := gitPath(r.URL.Path)
	var cred *credential
	if r.Header.Get("Authorization") != "" {
		c, err := s.authenticate(r, false)
		if err != nil {
			s.mu.Lock()
			s.stats.BadCredentials++
			s.mu.Unlock()
			gitError(w, http.StatusUnauthorized, "remote: Invalid username or password.")
			return
		}
		cred = c
	} else {
		cred = &credential{label: "anonymous", kind: kindAnonymous}
	}
	s.dataMu.Lock()
	repo := s.world.repo(owner, name)
	if repo == nil || (repo.private && cred.anonymous()) {
		s.dataMu.Unlock()
		if cred.anonymous() {
			// GitHub asks for credentials rather than reveal that a
			// private repository exists.
			gitError(w, http.StatusUnauthorized, "Repository not found.")
			return
		}
		gitError(w, http.StatusNotFound, "Repository not found.")
		return
	}
	root, err := s.gitRootLocked()
	if err == nil && repo.gitDir == "" {
		err = repo.writeGit(root)
	}
	fullName := repo.fullName() // canonical case, as on disk
	s.dataMu.Unlock()
	if err != nil {
		s.log().Error("write git repository", "repo", fullName, "err", err)
		gitError(w, http.StatusInternalServerError, "githubsim: "+err.Error())
		return
	}
	s.record(outcome{label: cred.label, git: true})
	if rest == "git-receive-pack" || r.URL.Query().Get("service") == "git-receive-pack" {
		gitError(w, http.StatusForbidden, "githubsim: pushing over git is not supported; use PushCommit or POST /_sim/push")
		return
	}
	if !s.pause(r, false) {
		return
	}
	bin := s.Git
	if bin == "" {
		if bin, err = exec.LookPath("git"); err != nil {
			gitError(w, http.StatusInternalServerError, "githubsim: git is not installed")
			return
		}
	}
	// http-backend wants the canonical <owner>/<repo>.git path.
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = "/"+fullName+".git/"+rest, ""
	r2.URL = &u
	h := &cgi.Handler{
		Path: bin,
		Args: []string{"http-backend"},
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"REMOTE_USER=" + cred.label,
			"HOME=" + root,
			"GIT_CONFIG_NOSYSTEM=1",
		},
		Stderr: logWriter{s},
	}
	h.ServeHTTP(w, r2)
	s.log().Info("git", "method", r.Method, "repo", fullName, "service", rest, "label", cred.label)
}

// logWriter sends http-backend's stderr to the logger.
type logWriter struct{ s *Server }

func (l logWriter) Write(b []byte) (int, error) {
	l.s.log().Warn("git http-backend", "stderr", strings.TrimSpace(string(b)))
	return len(b), nil
}
