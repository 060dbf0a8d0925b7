package githubsim

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// GitHub App authentication: an App signs a short-lived RS256 JWT with
// its private key, and trades it for installation tokens (ghs_…, one hour)
// that then work like PATs, with their own rate limit per installation.

type app struct {
	id            int64
	key           *rsa.PublicKey
	installations []int64
}

// AddApp registers a GitHub App with its public key and installations.
// Installation tokens it mints are labelled "app-<id>-inst-<installation>";
// the App's own JWT calls are labelled "app-<id>".
func (s *Server) AddApp(appID int64, key *rsa.PublicKey, installationIDs ...int64) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[appID] = &app{id: appID, key: key, installations: slices.Clone(installationIDs)}
}

// JWT claim errors, with GitHub's messages.
var (
	errJWTDecode    = &authError{"A JSON web token could not be decoded"}
	errJWTExp       = &authError{"'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"}
	errJWTExpFar    = &authError{"'Expiration time' claim ('exp') is too far in the future"}
	errJWTIat       = &authError{"'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"}
	errJWTNoApp     = &authError{"Integration not found"}
	maxJWTLifetime  = 10 * time.Minute
	jwtIatClockSkew = 60 * time.Second
)

// verifyJWT checks an App JWT the way GitHub does: RS256 by a registered
// App's key, exp in the future but at most 10 minutes ahead, iat not in the
// future (with a minute's allowance for clock drift).
func (s *Server) verifyJWT(tok string) (*credential, error) {
	var a *app
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation())
	claims := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		id, err := numericClaim(claims["iss"])
		if err != nil {
			return nil, errJWTNoApp
		}
		s.mu.Lock()
		a = s.apps[id]
		s.mu.Unlock()
		if a == nil {
			return nil, errJWTNoApp
		}
		return a.key, nil
	})
	if err != nil {
		if errors.Is(err, errJWTNoApp) {
			return nil, errJWTNoApp
		}
		return nil, errJWTDecode
	}
	now := s.now()
	exp, err := numericClaim(claims["exp"])
	if err != nil || !now.Before(time.Unix(exp, 0)) {
		return nil, errJWTExp
	}
	if time.Unix(exp, 0).Sub(now) > maxJWTLifetime {
		return nil, errJWTExpFar
	}
	iat, err := numericClaim(claims["iat"])
	if err != nil || time.Unix(iat, 0).After(now.Add(jwtIatClockSkew)) || iat > exp {
		return nil, errJWTIat
	}
	label := fmt.Sprintf("app-%d", a.id)
	return &credential{label: label, kind: kindApp, bucket: label, appID: a.id, login: label + "[bot]"}, nil
}

// numericClaim reads a JSON number or a decimal string (GitHub accepts the
// App id as either in iss).
func numericClaim(v any) (int64, error) {
	switch x := v.(type) {
	case float64:
		return int64(x), nil
	case json.Number:
		return x.Int64()
	case string:
		return strconv.ParseInt(x, 10, 64)
	}
	return 0, errors.New("not a number")
}

func (s *Server) appOf(c *call) (*app, *response) {
	if c.cred.kind != kindApp {
		return nil, errResp(http.StatusUnauthorized, "A JSON web token could not be decoded")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[c.cred.appID]
	if a == nil {
		return nil, errResp(http.StatusUnauthorized, "Integration not found")
	}
	return a, nil
}

var appPermissions = map[string]string{"contents": "read", "issues": "write", "metadata": "read", "pull_requests": "write"}

func (s *Server) getApp(c *call) *response {
	a, resp := s.appOf(c)
	if resp != nil {
		return resp
	}
	s.dataMu.RLock()
	defer s.dataMu.RUnlock()
	slug := fmt.Sprintf("app-%d", a.id)
	return ok(map[string]any{
		"id": a.id, "slug": slug, "node_id": nodeID("A", a.id), "client_id": fmt.Sprintf("Iv1.%016x", a.id),
		"owner": c.user(s.world.user("acme")), "name": slug, "description": "A simulated GitHub App",
		"external_url": c.web("/apps/%s", slug), "html_url": c.web("/apps/%s", slug),
		"created_at": ts(seedEpoch), "updated_at": ts(seedEpoch), "permissions": appPermissions,
		"events": []string{"issues", "pull_request", "push"}, "installations_count": len(a.installations),
	}, seedEpoch)
}

func (s *Server) installation(c *call, a *app, id int64) map[string]any {
	return map[string]any{
		"id": id, "account": c.user(s.world.user("acme")), "repository_selection": "all",
		"access_tokens_url": c.api("/app/installations/%d/access_tokens", id),
		"repositories_url":  c.api("/installation/repositories"),
		"html_url":          c.web("/organizations/acme/settings/installations/%d", id),
		"app_id":            a.id, "app_slug": fmt.Sprintf("app-%d", a.id), "target_id": s.world.user("acme").id,
		"target_type": "Organization", "permissions": appPermissions, "events": []string{"issues", "pull_request", "push"},
		"created_at": ts(seedEpoch), "updated_at": ts(seedEpoch), "single_file_name": nil,
		"has_multiple_single_files": false, "single_file_paths": []string{}, "suspended_by": nil, "suspended_at": nil,
	}
}

func (s *Server) listInstallations(c *call) *response {
	a, resp := s.appOf(c)
	if resp != nil {
		return resp
	}
	s.dataMu.RLock()
	defer s.dataMu.RUnlock()
	out := make([]any, 0, len(a.installations))
	for _, id := range a.installations {
		out = append(out, s.installation(c, a, id))
	}
	page, link := paginate(c, out)
	return &response{status: http.StatusOK, body: page, link: link}
}

func (s *Server) installationOf(c *call) (*app, int64, *response) {
	a, resp := s.appOf(c)
	if resp != nil {
		return nil, 0, resp
	}
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	if err != nil || !slices.Contains(a.installations, id) {
		return nil, 0, notFound()
	}
	return a, id, nil
}

func (s *Server) getRepoInstallation(c *call) *response {
	a, resp := s.appOf(c)
	if resp != nil {
		return resp
	}
	s.dataMu.RLock()
	defer s.dataMu.RUnlock()
	if s.world.repo(c.r.PathValue("owner"), c.r.PathValue("repo")) == nil || len(a.installations) == 0 {
		return notFound()
	}
	return ok(s.installation(c, a, a.installations[0]), seedEpoch)
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomToken(prefix string) string {
	b := make([]byte, 36)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(tokenAlphabet))))
		if err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
		b[i] = tokenAlphabet[n.Int64()]
	}
	return prefix + string(b)
}

// mintToken answers POST /app/installations/{id}/access_tokens.
func (s *Server) mintToken(c *call) *response {
	a, id, resp := s.installationOf(c)
	if resp != nil {
		return resp
	}
	// The body (repositories, permissions) is optional; if present it
	// must be JSON.
	if b, err := io.ReadAll(io.LimitReader(c.r.Body, 1<<20)); err != nil {
		return errResp(http.StatusBadRequest, "Problems parsing JSON")
	} else if len(bytes.TrimSpace(b)) > 0 {
		var in map[string]any
		if json.Unmarshal(b, &in) != nil {
			return errResp(http.StatusBadRequest, "Problems parsing JSON")
		}
	}
	label := fmt.Sprintf("app-%d-inst-%d", a.id, id)
	tok := randomToken("ghs_")
	expires := c.now.Add(time.Hour).Truncate(time.Second)
	s.mu.Lock()
	s.tokens[tok] = &credential{label: label, kind: kindInstallation, bucket: label, appID: a.id,
		installation: id, expires: expires, login: fmt.Sprintf("app-%d[bot]", a.id)}
	s.stats.Mints[label]++
	s.mu.Unlock()
	s.log().Info("installation token minted", "label", label, "expires_at", expires)
	return &response{status: http.StatusCreated, body: map[string]any{
		"token": tok, "expires_at": expires.UTC().Format(time.RFC3339), "permissions": appPermissions,
		"repository_selection": "all",
	}}
}

func (s *Server) listInstallationRepos(c *call) *response {
	if c.cred.kind != kindInstallation {
		return errResp(http.StatusForbidden, "This endpoint can only be accessed with an installation token")
	}
	s.dataMu.RLock()
	defer s.dataMu.RUnlock()
	repos := s.visibleRepos(c, "acme")
	page, link := paginate(c, repos)
	out := make([]any, 0, len(page))
	for _, r := range page {
		out = append(out, c.repo(r, false))
	}
	return &response{status: http.StatusOK, link: link, body: map[string]any{
		"total_count": len(repos), "repository_selection": "all", "repositories": out}}
}
