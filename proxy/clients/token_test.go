package clients

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// goldenToken was computed outside Go (Python's zlib.crc32 and hashlib), so
// a change to the token format or checksum shows up here.
const (
	goldenToken  = "glbp_abcdefghijklmnopqrstuvwxyz01232LolCm"
	goldenSHA256 = "086b826b5b4785a4cf9eea1d1accecff61106b36e656830d498474b22e8d90cb"
)

func TestTokenGolden(t *testing.T) {
	if err := CheckToken(goldenToken); err != nil {
		t.Fatalf("CheckToken(golden): %v", err)
	}
	if got := HashToken(goldenToken); got != goldenSHA256 {
		t.Errorf("HashToken = %s, want %s", got, goldenSHA256)
	}
}

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckToken(tok); err != nil {
			t.Fatalf("fresh token %q fails CheckToken: %v", tok, err)
		}
		if seen[tok] {
			t.Fatalf("token %q minted twice", tok)
		}
		seen[tok] = true
	}
}

func TestCheckTokenRefuses(t *testing.T) {
	flip := []byte(goldenToken)
	flip[10] = 'Z'
	for _, s := range []string{
		"", "glbp_", "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
		string(flip),                     // checksum no longer matches
		goldenToken + "x",                // too long
		goldenToken[:len(goldenToken)-1], // too short
		strings.Replace(goldenToken, "a", "-", 1),
	} {
		if err := CheckToken(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("CheckToken(%q) = %v, want ErrMalformed", s, err)
		}
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		name, header string
		wantErr      error
	}{
		{"token scheme", "token " + goldenToken, nil},
		{"Token any case", "TOKEN " + goldenToken, nil},
		{"bearer", "Bearer " + goldenToken, nil},
		{"bearer lower and extra spaces", "  bearer   " + goldenToken + " ", nil},
		{"basic password", basic("x-access-token", goldenToken), nil},
		{"basic any user", basic("git", goldenToken), nil},
		{"basic user is the token", basic(goldenToken, ""), nil},
		{"basic github style", basic(goldenToken, "x-oauth-basic"), nil},
		{"empty", "", ErrNoCredentials},
		{"scheme only", "token", ErrMalformed},
		{"unknown scheme", "Digest " + goldenToken, ErrMalformed},
		{"github pat", "token ghp_1234567890abcdefghijklmnopqrstuvwxyzAB", ErrMalformed},
		{"bad checksum", "token " + goldenToken[:len(goldenToken)-1] + "X", ErrMalformed},
		{"basic not base64", "Basic !!!", ErrMalformed},
		{"basic without colon", "Basic " + base64.StdEncoding.EncodeToString([]byte(goldenToken)), ErrMalformed},
		{"basic user token with a password", basic(goldenToken, "hunter2"), ErrMalformed},
		{"basic without token", basic("u", "p"), ErrMalformed},
		{"two tokens", "token " + goldenToken + " " + goldenToken, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseAuthorization(tt.header)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), "glbp_a") {
					t.Errorf("error %q repeats the token", err)
				}
				return
			}
			if err != nil || tok != goldenToken {
				t.Fatalf("got %q, %v", tok, err)
			}
		})
	}
}

// FuzzParseAuthorization: never panics, what it accepts is a well-formed
// token, and no error message carries any part of the header.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"token " + goldenToken, "Bearer " + goldenToken, basic("x", goldenToken), basic(goldenToken, ""), "Basic", "token ", "basic Og=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := ParseAuthorization(h)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoCredentials) {
				t.Fatalf("unexpected error class %v", err)
			}
			if th := strings.TrimSpace(h); len(th) >= 12 && strings.Contains(err.Error(), th) {
				t.Fatalf("error %q contains the header", err)
			}
			return
		}
		if CheckToken(tok) != nil || !strings.Contains(h, tok) && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(h)), "basic") {
			t.Fatalf("accepted %q from %q", tok, h)
		}
	})
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"GET /repos/" + goldenToken + "/x":         "GET /repos/glbp_[REDACTED]/x",
		"ghp_16C7e42F292c6912E7710c838347Ae178B4a": "ghp_[REDACTED]",
		"github_pat_11ABCDEFG_xyz":                 "github_pat_[REDACTED]",
		"ghs_abcdefgh and gho_12345678":            "ghs_[REDACTED] and gho_[REDACTED]",
		"glbp_ alone, ghp_x":                       "glbp_ alone, ghp_x",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
