package cache

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/glb-project/glb/proxy/route"
)

// GraphQL queries are shared on a key built from the request's canonical
// JSON: the same document, operationName and variables, whatever the key
// order and whitespace of the body. GitHub sends no validators on
// /graphql, so a stored answer can only be served within a freshness
// window (Policy.MaxAge); without one a query is coalesced, never stored.

// ErrNotCanonical is wrapped by GraphQLKey's refusals: a body that cannot
// be given one canonical form is never shared.
var ErrNotCanonical = errors.New("no canonical form")

// maxJSONDepth bounds the nesting GraphQLKey walks. GitHub's variables
// are a level or two deep; anything deeper is forwarded but not shared.
const maxJSONDepth = 32

// MaxGraphQLKey bounds a GraphQL key's length. Queries that gh, octokit
// and CI scripts send are a few KiB; a longer canonical body is forwarded
// but not shared, so no request makes the proxy build (and Redis hash) a
// key of up to the 4 MiB body limit.
const MaxGraphQLKey = 64 << 10

// GraphQLKey returns the Policy.Key of a GraphQL query: the body in
// canonical JSON (object keys sorted at every level, no insignificant
// space, strings re-encoded with only the escapes JSON requires, numbers
// as written), prefixed so it can never equal a REST key (those start
// with "/"). It refuses bad JSON, trailing data, nesting deeper than 32,
// keys longer than MaxGraphQLKey, duplicate object keys at any depth (two
// JSON parsers may keep different duplicates, so such a body has no one
// meaning to share), and strings holding U+FFFD (what invalid UTF-8 and
// lone surrogates decode to, so different bodies would meet there).
//
// It reads the body once and writes the key into one buffer, which never
// grows past MaxGraphQLKey: an object whose keys arrive out of order is
// rearranged in place, through a scratch buffer of the same bound.
func GraphQLKey(body []byte) (string, error) {
	c := canonicalizer{in: body, out: make([]byte, 0, min(len(body)+16, MaxGraphQLKey))}
	c.out = append(c.out, "graphql "...)
	if err := c.value(0); err != nil {
		return "", err
	}
	c.space()
	if c.pos < len(c.in) {
		return "", fmt.Errorf("%w: trailing data after the JSON value", ErrNotCanonical)
	}
	return string(c.out), nil
}

// canonicalizer parses JSON (RFC 8259) from in and appends its canonical
// form to out.
type canonicalizer struct {
	in      []byte
	pos     int
	out     []byte
	scratch []byte // reordering an object's members
	key     []byte // the decoded object key being read
}

// member is one "key":value of an object, at out[start:end].
type member struct {
	key        string
	start, end int
}

func (c *canonicalizer) syntax(what string) error {
	if c.pos >= len(c.in) {
		return fmt.Errorf("%w: not JSON: unexpected end of input", ErrNotCanonical)
	}
	return fmt.Errorf("%w: not JSON: %s at offset %d", ErrNotCanonical, what, c.pos)
}

func (c *canonicalizer) tooLong() error {
	return fmt.Errorf("%w: longer than %d bytes", ErrNotCanonical, MaxGraphQLKey)
}

func (c *canonicalizer) space() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// value appends the next JSON value in canonical form.
func (c *canonicalizer) value(depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrNotCanonical, maxJSONDepth)
	}
	c.space()
	if c.pos >= len(c.in) {
		return c.syntax("")
	}
	var err error
	switch b := c.in[c.pos]; {
	case b == '{':
		err = c.object(depth)
	case b == '[':
		err = c.array(depth)
	case b == '"':
		err = c.str(false)
	case b == 't':
		err = c.literal("true")
	case b == 'f':
		err = c.literal("false")
	case b == 'n':
		err = c.literal("null")
	case b == '-' || b >= '0' && b <= '9':
		err = c.number()
	default:
		err = c.syntax("unexpected character")
	}
	if err == nil && len(c.out) > MaxGraphQLKey {
		err = c.tooLong()
	}
	return err
}

func (c *canonicalizer) literal(word string) error {
	if !bytes.HasPrefix(c.in[c.pos:], []byte(word)) {
		return c.syntax("bad literal")
	}
	c.pos += len(word)
	c.out = append(c.out, word...)
	return nil
}

// number appends a number as written, after checking its grammar.
func (c *canonicalizer) number() error {
	start := c.pos
	digits := func() int {
		n := 0
		for c.pos < len(c.in) && c.in[c.pos] >= '0' && c.in[c.pos] <= '9' {
			c.pos++
			n++
		}
		return n
	}
	if c.in[c.pos] == '-' {
		c.pos++
	}
	switch {
	case c.pos < len(c.in) && c.in[c.pos] == '0':
		c.pos++
	case digits() == 0:
		return c.syntax("bad number")
	}
	if c.pos < len(c.in) && c.in[c.pos] == '.' {
		c.pos++
		if digits() == 0 {
			return c.syntax("bad number")
		}
	}
	if c.pos < len(c.in) && (c.in[c.pos] == 'e' || c.in[c.pos] == 'E') {
		c.pos++
		if c.pos < len(c.in) && (c.in[c.pos] == '+' || c.in[c.pos] == '-') {
			c.pos++
		}
		if digits() == 0 {
			return c.syntax("bad number")
		}
	}
	c.out = append(c.out, c.in[start:c.pos]...)
	return nil
}

func (c *canonicalizer) array(depth int) error {
	c.pos++ // [
	c.out = append(c.out, '[')
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == ']' {
		c.pos++
		c.out = append(c.out, ']')
		return nil
	}
	for {
		if err := c.value(depth + 1); err != nil {
			return err
		}
		c.space()
		if c.pos >= len(c.in) {
			return c.syntax("")
		}
		switch c.in[c.pos] {
		case ',':
			c.pos++
			c.out = append(c.out, ',')
		case ']':
			c.pos++
			c.out = append(c.out, ']')
			return nil
		default:
			return c.syntax("expected , or ]")
		}
	}
}

func (c *canonicalizer) object(depth int) error {
	c.pos++ // {
	c.out = append(c.out, '{')
	first := len(c.out)
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.pos++
		c.out = append(c.out, '}')
		return nil
	}
	var members []member
	sorted := true
	for {
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != '"' {
			return c.syntax("expected a string key")
		}
		m := member{start: len(c.out)}
		if err := c.str(true); err != nil {
			return err
		}
		m.key = string(c.key)
		if n := len(members); n > 0 && m.key <= members[n-1].key {
			sorted = false
		}
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != ':' {
			return c.syntax("expected :")
		}
		c.pos++
		c.out = append(c.out, ':')
		if err := c.value(depth + 1); err != nil {
			return err
		}
		m.end = len(c.out)
		members = append(members, m)
		c.space()
		if c.pos >= len(c.in) {
			return c.syntax("")
		}
		if c.in[c.pos] == '}' {
			c.pos++
			break
		}
		if c.in[c.pos] != ',' {
			return c.syntax("expected , or }")
		}
		c.pos++
		c.out = append(c.out, ',')
	}
	if !sorted {
		slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
		for i := 1; i < len(members); i++ {
			if members[i].key == members[i-1].key {
				return fmt.Errorf("%w: duplicate key %q", ErrNotCanonical, members[i].key)
			}
		}
		// Rewrite the members in key order: out[first:] moves once,
		// through scratch (at most MaxGraphQLKey bytes).
		c.scratch = append(c.scratch[:0], c.out[first:]...)
		c.out = c.out[:first]
		for i, m := range members {
			if i > 0 {
				c.out = append(c.out, ',')
			}
			c.out = append(c.out, c.scratch[m.start-first:m.end-first]...)
		}
	}
	c.out = append(c.out, '}')
	return nil
}

// str reads a JSON string and appends it re-encoded: '"' and '\\'
// escaped, control characters as \b \f \n \r \t or \u00xx, everything
// else as UTF-8 (no HTML escaping). With key set, the decoded string is
// left in c.key.
func (c *canonicalizer) str(key bool) error {
	c.pos++ // "
	c.out = append(c.out, '"')
	c.key = c.key[:0]
	for {
		if len(c.out) > MaxGraphQLKey {
			return c.tooLong()
		}
		if c.pos >= len(c.in) {
			return c.syntax("")
		}
		b := c.in[c.pos]
		var r rune
		switch {
		case b == '"':
			c.pos++
			c.out = append(c.out, '"')
			return nil
		case b < 0x20:
			return c.syntax("control character in a string")
		case b == '\\':
			var err error
			if r, err = c.escape(); err != nil {
				return err
			}
		case b < utf8.RuneSelf:
			r = rune(b)
			c.pos++
		default:
			var size int
			r, size = utf8.DecodeRune(c.in[c.pos:])
			c.pos += size
		}
		if r == utf8.RuneError {
			// Invalid UTF-8, lone surrogates and U+FFFD itself: bodies
			// that differ there would share one key.
			return fmt.Errorf("%w: invalid UTF-8 or a lone surrogate in a string", ErrNotCanonical)
		}
		if key {
			c.key = utf8.AppendRune(c.key, r)
		}
		c.out = appendEscaped(c.out, r)
	}
}

// escape decodes the escape sequence at c.pos; a lone surrogate decodes
// to utf8.RuneError.
func (c *canonicalizer) escape() (rune, error) {
	if c.pos+1 >= len(c.in) {
		c.pos = len(c.in)
		return 0, c.syntax("")
	}
	e := c.in[c.pos+1]
	c.pos += 2
	switch e {
	case '"', '\\', '/':
		return rune(e), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		r, ok := c.hex4()
		if !ok {
			return 0, c.syntax("bad \\u escape")
		}
		if !utf16.IsSurrogate(r) {
			return r, nil
		}
		if r < 0xdc00 && c.pos+1 < len(c.in) && c.in[c.pos] == '\\' && c.in[c.pos+1] == 'u' {
			c.pos += 2
			lo, ok := c.hex4()
			if !ok {
				return 0, c.syntax("bad \\u escape")
			}
			return utf16.DecodeRune(r, lo), nil // RuneError unless lo is a low surrogate
		}
		return utf8.RuneError, nil
	}
	c.pos--
	return 0, c.syntax("bad escape")
}

func (c *canonicalizer) hex4() (rune, bool) {
	if c.pos+4 > len(c.in) {
		return 0, false
	}
	var r rune
	for _, h := range c.in[c.pos : c.pos+4] {
		switch {
		case h >= '0' && h <= '9':
			r = r<<4 | rune(h-'0')
		case h >= 'a' && h <= 'f':
			r = r<<4 | rune(h-'a'+10)
		case h >= 'A' && h <= 'F':
			r = r<<4 | rune(h-'A'+10)
		default:
			return 0, false
		}
	}
	c.pos += 4
	return r, true
}

// appendEscaped appends r as it appears inside a canonical JSON string.
func appendEscaped(out []byte, r rune) []byte {
	switch r {
	case '"':
		return append(out, '\\', '"')
	case '\\':
		return append(out, '\\', '\\')
	case '\b':
		return append(out, '\\', 'b')
	case '\f':
		return append(out, '\\', 'f')
	case '\n':
		return append(out, '\\', 'n')
	case '\r':
		return append(out, '\\', 'r')
	case '\t':
		return append(out, '\\', 't')
	}
	if r < 0x20 {
		const hex = "0123456789abcdef"
		return append(out, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
	}
	return utf8.AppendRune(out, r)
}

// graphQLStorable reports whether a GraphQL answer may be kept for a
// freshness window: a 200 whose body is a JSON object with a "data"
// object and no "errors" at all (a partial answer with errors, a
// RATE_LIMITED refusal, a timeout, NOT_FOUND or FORBIDDEN for the
// credential that answered: none is stored), and nothing that says not
// to store it. Duplicate top-level keys make it unstorable too.
func graphQLStorable(resp *http.Response, body []byte) bool {
	h := resp.Header
	if resp.StatusCode != http.StatusOK || len(h.Values("Set-Cookie")) > 0 ||
		strings.Contains(strings.ToLower(h.Get("Cache-Control")), "no-store") {
		return false
	}
	fields, err := route.TopLevelFields(body)
	if err != nil {
		return false
	}
	if _, ok := fields["errors"]; ok {
		return false
	}
	data := fields["data"]
	return len(data) > 0 && data[0] == '{'
}
