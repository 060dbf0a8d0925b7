package consul

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// FuzzDecodeHost: any bytes give a record or an error, never a panic, and
// a decoded record encodes back to something that decodes the same.
func FuzzDecodeHost(f *testing.F) {
	for _, s := range []string{
		`{"state":"draining","reason":"kernel upgrade","by":"alice","at":"2026-03-01T12:00:00Z"}`,
		`{"state":"active"}`, `{"state":"bogus"}`, `{"state":""}`, `{}`, `null`, `[]`, `{"state":"active"} x`,
		`{"state":"active","extra":1}`, `{"state":"inactive","at":"not a time"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHost(data)
		if err != nil {
			return
		}
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("decoded record does not encode: %+v: %v", h, err)
		}
		h2, err := DecodeHost(b)
		if err != nil || !h.equal(h2) {
			t.Fatalf("round trip: %+v → %s → %+v, %v", h, b, h2, err)
		}
	})
}

// FuzzDecodeTable: a table value decodes, with the key's name, or errors.
func FuzzDecodeTable(f *testing.F) {
	cfg := parseState(f, testState)
	for i := range cfg.Tables {
		b, _ := json.Marshal(cfg.Tables[i])
		f.Add("t", b)
	}
	f.Add("github-api", []byte(`{"name":"other"}`))
	f.Add("a/b", []byte(`{}`))
	f.Add("x", []byte(`{"hash_key":"00","seed":"00","binds":[],"backends":[]}`))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		spec, err := DecodeTable(name, data)
		if err != nil {
			return
		}
		if spec.Name != name || spec.Validate() != nil {
			t.Fatalf("decoded table %q from key %q, valid=%v", spec.Name, name, spec.Validate())
		}
	})
}

// FuzzDecodeKV: a whole prefix, as key=value lines, decodes into a valid
// config or an error.
func FuzzDecodeKV(f *testing.F) {
	cfg := parseState(f, testState)
	var seed strings.Builder
	for i := range cfg.Tables {
		b, _ := json.Marshal(cfg.Tables[i])
		seed.WriteString("glb/tables/" + cfg.Tables[i].Name + "=" + string(b) + "\n")
	}
	seed.WriteString(`glb/hosts/10.1.0.12={"state":"draining","by":"alice"}` + "\n")
	seed.WriteString(`glb/serial={"serial":3}` + "\n")
	f.Add(seed.String())
	f.Add("glb/hosts/::1={\"state\":\"active\"}\n")
	f.Add("glb/tables/=\nglb/hosts/1.2.3.4=\nglb/other=x\nglb/=\n")
	f.Fuzz(func(t *testing.T, text string) {
		var pairs api.KVPairs
		for i, line := range strings.Split(text, "\n") {
			k, v, _ := strings.Cut(line, "=")
			pairs = append(pairs, &api.KVPair{Key: k, Value: []byte(v), ModifyIndex: uint64(i + 1)})
		}
		st, err := decodeKV("glb", pairs)
		if err != nil {
			return
		}
		if err := st.cfg.Validate(); err != nil {
			t.Fatalf("decoded config does not validate: %v", err)
		}
		// What decodes must plan back to itself: no writes needed.
		ops, err := plan("glb", st, st.cfg.Clone(), t0)
		if err != nil || len(ops) != 0 {
			t.Fatalf("plan of an unchanged state: %d ops, %v", len(ops), err)
		}
	})
}
