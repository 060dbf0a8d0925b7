package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
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

// GraphQLKey returns the Policy.Key of a GraphQL query: the body in
// canonical JSON (object keys sorted at every level, no insignificant
// space, strings re-encoded, numbers as written), prefixed so it can never
// equal a REST key (those start with "/"). It refuses bad JSON, trailing
// data, nesting deeper than 32 and duplicate object keys at any depth
// (two JSON parsers may keep different duplicates, so such a body has no
// one meaning to share), and strings holding U+FFFD (what invalid UTF-8
// and lone surrogates decode to, so different bodies would meet there).
func GraphQLKey(body []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var b strings.Builder
	b.WriteString("graphql ")
	if err := canonical(&b, dec, 0); err != nil {
		return "", err
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", fmt.Errorf("%w: trailing data after the JSON value", ErrNotCanonical)
	}
	return b.String(), nil
}

// canonical writes the next JSON value of dec in canonical form.
func canonical(b *strings.Builder, dec *json.Decoder, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrNotCanonical, maxJSONDepth)
	}
	t, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: not JSON: %v", ErrNotCanonical, err)
	}
	switch v := t.(type) {
	case json.Delim:
		switch v {
		case '[':
			b.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				if err := canonical(b, dec, depth+1); err != nil {
					return err
				}
			}
			b.WriteByte(']')
		case '{':
			fields := map[string]string{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return fmt.Errorf("%w: not JSON: %v", ErrNotCanonical, err)
				}
				k, ok := kt.(string)
				if !ok || strings.ContainsRune(k, utf8.RuneError) {
					return fmt.Errorf("%w: bad object key", ErrNotCanonical)
				}
				if _, dup := fields[k]; dup {
					return fmt.Errorf("%w: duplicate key %q", ErrNotCanonical, k)
				}
				var vb strings.Builder
				if err := canonical(&vb, dec, depth+1); err != nil {
					return err
				}
				fields[k] = vb.String()
			}
			keys := make([]string, 0, len(fields))
			for k := range fields {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			b.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					b.WriteByte(',')
				}
				writeString(b, k)
				b.WriteByte(':')
				b.WriteString(fields[k])
			}
			b.WriteByte('}')
		default:
			return fmt.Errorf("%w: not JSON", ErrNotCanonical)
		}
		// The closing delimiter.
		if _, err := dec.Token(); err != nil {
			return fmt.Errorf("%w: not JSON: %v", ErrNotCanonical, err)
		}
	case string:
		if strings.ContainsRune(v, utf8.RuneError) {
			// Invalid UTF-8 and lone surrogates all decode to U+FFFD:
			// bodies that differ there would share one key.
			return fmt.Errorf("%w: invalid UTF-8 or a lone surrogate in a string", ErrNotCanonical)
		}
		writeString(b, v)
	case json.Number:
		b.WriteString(v.String())
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case nil:
		b.WriteString("null")
	}
	return nil
}

func writeString(b *strings.Builder, s string) {
	enc, _ := json.Marshal(s) // a Go string always encodes
	b.Write(enc)
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
	fields, err := topLevel(body)
	if err != nil {
		return false
	}
	if _, ok := fields["errors"]; ok {
		return false
	}
	data := fields["data"]
	return len(data) > 0 && data[0] == '{'
}

// graphQLRateLimited reports whether a GraphQL answer is a RATE_LIMITED
// refusal: it speaks for the credential that got it, not for the query.
func graphQLRateLimited(body []byte) bool {
	if !bytes.Contains(body, []byte("RATE_LIMITED")) {
		return false
	}
	var r struct {
		Errors []struct {
			Type string `json:"type"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &r) != nil {
		return true // unreadable and mentions it: do not share
	}
	for _, e := range r.Errors {
		if e.Type == "RATE_LIMITED" {
			return true
		}
	}
	return false
}

// topLevel decodes a JSON object into its raw fields, refusing duplicate
// keys and trailing data.
func topLevel(body []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		if _, dup := fields[k]; dup {
			return nil, fmt.Errorf("duplicate key %q", k)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		fields[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return fields, nil
}
