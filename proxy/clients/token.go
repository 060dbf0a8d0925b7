package clients

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"regexp"
	"strings"
)

// TokenPrefix starts every client token.
const TokenPrefix = "glbp_"

const (
	tokenRandom   = 30 // base62 characters of entropy (~178 bits)
	tokenChecksum = 6  // base62 characters of CRC-32
	tokenLen      = len(TokenPrefix) + tokenRandom + tokenChecksum
	base62        = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// Errors from ParseAuthorization and CheckToken. The server answers all of
// them with a 401; the distinction is for the log and the metrics.
var (
	ErrNoCredentials = errors.New("no credentials")
	ErrMalformed     = errors.New("malformed credentials")
)

// NewToken mints a client token from crypto/rand.
func NewToken() (string, error) {
	b := make([]byte, tokenRandom)
	max := big.NewInt(int64(len(base62)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("read random: %w", err)
		}
		b[i] = base62[n.Int64()]
	}
	body := string(b)
	return TokenPrefix + body + checksum(body), nil
}

// HashToken returns the lower-case hex SHA-256 of a token, as written in
// the registry's token_sha256.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func checksum(body string) string {
	c := uint64(crc32.ChecksumIEEE([]byte(body)))
	out := make([]byte, tokenChecksum)
	for i := tokenChecksum - 1; i >= 0; i-- {
		out[i] = base62[c%62]
		c /= 62
	}
	return string(out)
}

// CheckToken reports whether s has the shape of a client token: the prefix,
// the length, base62 characters and a matching checksum.
func CheckToken(s string) error {
	if !strings.HasPrefix(s, TokenPrefix) || len(s) != tokenLen {
		return fmt.Errorf("%w: not a glbp_ token", ErrMalformed)
	}
	for _, c := range []byte(s[len(TokenPrefix):]) {
		if strings.IndexByte(base62, c) < 0 {
			return fmt.Errorf("%w: not a glbp_ token", ErrMalformed)
		}
	}
	body := s[len(TokenPrefix) : len(TokenPrefix)+tokenRandom]
	if checksum(body) != s[len(TokenPrefix)+tokenRandom:] {
		return fmt.Errorf("%w: token checksum does not match (mistyped?)", ErrMalformed)
	}
	return nil
}

// ParseAuthorization extracts a client token from an Authorization header:
// "token X", "Bearer X" (any case), or Basic with the token as the password
// (git's usual form, any user name) or as the user name with an empty or
// "x-oauth-basic" password (GitHub's form). The token is checked with
// CheckToken. Errors never contain the header.
func ParseAuthorization(h string) (string, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", ErrNoCredentials
	}
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return "", fmt.Errorf("%w: want \"token <glbp_…>\", \"Bearer <glbp_…>\" or Basic", ErrMalformed)
	}
	rest = strings.TrimLeft(rest, " ")
	var tok string
	switch strings.ToLower(scheme) {
	case "token", "bearer":
		tok = rest
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", fmt.Errorf("%w: Basic credentials are not base64", ErrMalformed)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", fmt.Errorf("%w: Basic credentials have no ':'", ErrMalformed)
		}
		switch {
		case strings.HasPrefix(pass, TokenPrefix):
			tok = pass
		case strings.HasPrefix(user, TokenPrefix) && (pass == "" || pass == "x-oauth-basic"):
			tok = user
		default:
			return "", fmt.Errorf("%w: Basic credentials carry no glbp_ token (put it in the password)", ErrMalformed)
		}
	default:
		return "", fmt.Errorf("%w: unknown scheme (want token, Bearer or Basic)", ErrMalformed)
	}
	if err := CheckToken(tok); err != nil {
		return "", err
	}
	return tok, nil
}

// tokenLike matches client tokens and GitHub's own token formats (ghp_,
// gho_, ghu_, ghs_, ghr_, github_pat_), wherever they appear in a string.
var tokenLike = regexp.MustCompile(`(glbp_|gh[pousr]_|github_pat_)[0-9A-Za-z_]{6,}`)

// Redact replaces anything that looks like a client or GitHub token with
// a marker. Use it on every string built from untrusted input before it
// reaches a log line or an error body.
func Redact(s string) string {
	return tokenLike.ReplaceAllStringFunc(s, func(m string) string {
		return tokenLike.FindStringSubmatch(m)[1] + "[REDACTED]"
	})
}
