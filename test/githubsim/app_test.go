package githubsim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func appJWT(t testing.TB, key any, method jwt.SigningMethod, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAppAuth(t *testing.T) {
	clock := newClock()
	s, ts := newSim(t, withClock(clock))
	key, other := rsaKey(t), rsaKey(t)
	s.AddApp(12345, &key.PublicKey, 678, 679)
	now := clock.Now()
	good := jwt.MapClaims{"iss": "12345", "iat": now.Add(-60 * time.Second).Unix(), "exp": now.Add(9 * time.Minute).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	tests := []struct {
		name    string
		token   string
		status  int
		message string
	}{
		{"good JWT, iss as a string", appJWT(t, key, jwt.SigningMethodRS256, good), 201, ""},
		{"good JWT, iss as a number", appJWT(t, key, jwt.SigningMethodRS256, with("iss", 12345)), 201, ""},
		{"exp exactly ten minutes ahead", appJWT(t, key, jwt.SigningMethodRS256, with("exp", now.Add(10*time.Minute).Unix())), 201, ""},
		{"exp too far ahead", appJWT(t, key, jwt.SigningMethodRS256, with("exp", now.Add(10*time.Minute+time.Second).Unix())), 401,
			"'Expiration time' claim ('exp') is too far in the future"},
		{"expired", appJWT(t, key, jwt.SigningMethodRS256, with("exp", now.Add(-time.Second).Unix())), 401,
			"'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"},
		{"no exp", appJWT(t, key, jwt.SigningMethodRS256, with("exp", nil)), 401, "'Expiration time' claim ('exp') must be a numeric value"},
		{"iat in the future", appJWT(t, key, jwt.SigningMethodRS256, with("iat", now.Add(2*time.Minute).Unix())), 401,
			"'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"},
		{"no iat", appJWT(t, key, jwt.SigningMethodRS256, with("iat", nil)), 401, "'Issued at' claim ('iat')"},
		{"signed by another key", appJWT(t, other, jwt.SigningMethodRS256, good), 401, "A JSON web token could not be decoded"},
		{"HS256", appJWT(t, []byte("secret"), jwt.SigningMethodHS256, good), 401, "A JSON web token could not be decoded"},
		{"unknown app", appJWT(t, key, jwt.SigningMethodRS256, with("iss", "999")), 401, "Integration not found"},
		{"a PAT cannot mint", tokBot, 401, "A JSON web token could not be decoded"},
		{"garbage", "eyJ.eyJ.x", 401, "A JSON web token could not be decoded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, ts, "POST", "/app/installations/678/access_tokens", "", "", "Authorization: Bearer "+tt.token)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.status != 201 {
				if m := dig(r.json(t), "message").(string); !strings.HasPrefix(m, tt.message) {
					t.Errorf("message %q, want %q", m, tt.message)
				}
				return
			}
			v := r.obj(t)
			if tok := v["token"].(string); !strings.HasPrefix(tok, "ghs_") || len(tok) != 40 {
				t.Errorf("token %q", tok)
			}
			if v["expires_at"] != now.Add(time.Hour).UTC().Format(time.RFC3339) {
				t.Errorf("expires_at %v", v["expires_at"])
			}
		})
	}
	if n := s.Stats().Mints["app-12345-inst-678"]; n != 3 {
		t.Errorf("mints %d, want 3", n)
	}

	jwtTok := appJWT(t, key, jwt.SigningMethodRS256, good)
	if r := do(t, ts, "POST", "/app/installations/1/access_tokens", "", "", "Authorization: Bearer "+jwtTok); r.status != 404 {
		t.Errorf("someone else's installation: %d", r.status)
	}
	if r := get(t, ts, "/app", "", "Authorization: Bearer "+jwtTok); r.status != 200 || dig(r.json(t), "id") != 12345.0 {
		t.Errorf("GET /app: %d %s", r.status, r.body)
	}
	if r := get(t, ts, "/app/installations", "", "Authorization: Bearer "+jwtTok); len(r.list(t)) != 2 {
		t.Errorf("installations: %s", r.body)
	}
	if r := get(t, ts, "/repos/acme/widgets/installation", "", "Authorization: Bearer "+jwtTok); dig(r.json(t), "id") != 678.0 {
		t.Errorf("repo installation: %s", r.body)
	}
	if r := get(t, ts, "/repos/acme/widgets", "", "Authorization: Bearer "+jwtTok); r.status != 401 {
		t.Errorf("a JWT on a repository endpoint: %d", r.status)
	}
	if r := do(t, ts, "POST", "/app/installations/678/access_tokens", "", "{not json", "Authorization: Bearer "+jwtTok); r.status != 400 {
		t.Errorf("bad body: %d", r.status)
	}
	// Two JWTs from the same App share the App's rate limit.
	if st := s.Stats().Labels["app-12345"]; st.Calls < 5 {
		t.Errorf("app stats %+v", st)
	}

	// The installation token works like a PAT, with its own limit and label.
	r := do(t, ts, "POST", "/app/installations/679/access_tokens", "", `{"repositories":["widgets"]}`, "Authorization: Bearer "+jwtTok)
	inst := dig(r.json(t), "token").(string)
	s.ResetStats()
	r = get(t, ts, "/repos/acme/gadgets", inst)
	if r.status != 200 || r.header.Get("X-RateLimit-Limit") != "5000" || r.header.Get("X-RateLimit-Used") != "1" {
		t.Errorf("installation token: %d %v", r.status, r.header)
	}
	if r := get(t, ts, "/installation/repositories", inst); dig(r.json(t), "total_count") != 2.0 {
		t.Errorf("installation repositories: %s", r.body)
	}
	if r := get(t, ts, "/user", inst); r.status != 403 {
		t.Errorf("/user with an installation token: %d", r.status)
	}
	if v := gql(t, ts, inst, `{repository(owner:"acme",name:"widgets"){name}}`, nil).obj(t); dig(v, "data", "repository", "name") != "widgets" {
		t.Errorf("graphql with an installation token: %v", v)
	}
	if st := s.Stats().Labels["app-12345-inst-679"]; st.Calls != 4 || st.Counted != 4 {
		t.Errorf("installation stats %+v", st)
	}
	clock.Advance(time.Hour)
	if r := get(t, ts, "/repos/acme/gadgets", inst); r.status != 401 {
		t.Errorf("expired installation token: %d", r.status)
	}
}

func TestParsePublicKey(t *testing.T) {
	key := rsaKey(t)
	pkix, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	tests := []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"PKIX public", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), true},
		{"PKCS#1 public", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&key.PublicKey)}), true},
		{"PKCS#1 private", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), true},
		{"PKCS#8 private", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), true},
		{"not PEM", []byte("hello"), false},
		{"a certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), false},
		{"broken DER", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2}}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePublicKey(tt.pem)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
			if tt.ok && !k.Equal(&key.PublicKey) {
				t.Error("wrong key")
			}
		})
	}
}
