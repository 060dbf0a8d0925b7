package consultest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// kvEntry is a key as Consul's KV endpoints return it. Value is base64 in
// JSON, and null when empty.
type kvEntry struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte
	CreateIndex uint64
	ModifyIndex uint64
}

func (e *kvEntry) clone() *kvEntry {
	c := *e
	return &c
}

func (s *Server) serveKV(w http.ResponseWriter, r *http.Request, key string) error {
	q := r.URL.Query()
	for _, p := range []string{"acquire", "release"} {
		if q.Has(p) {
			return errorf(http.StatusBadRequest, "consultest does not support sessions (?%s)", p)
		}
	}
	switch r.Method {
	case http.MethodGet:
		return s.blockingRead(w, r, func() (result, error) {
			return s.kvRead(key, q.Has("recurse"), q.Has("keys"), q.Get("separator"), q.Has("raw"))
		})
	case http.MethodPut:
		return s.kvPut(w, r, key)
	case http.MethodDelete:
		return s.kvDelete(w, r, key)
	}
	return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
}

// kvPrefixIndex is the index of a prefix query: the highest modify index of
// its keys and tombstones, or the KV table's index when it has none.
// Callers hold s.mu.
func (s *Server) kvPrefixIndex(prefix string) uint64 {
	var idx uint64
	for k, e := range s.kv {
		if strings.HasPrefix(k, prefix) {
			idx = max(idx, e.ModifyIndex)
		}
	}
	for k, t := range s.tombs {
		if strings.HasPrefix(k, prefix) {
			idx = max(idx, t)
		}
	}
	if idx == 0 {
		idx = s.kvTableIndex()
	}
	return idx
}

// kvTableIndex is the index of the KV table; before the first KV write it
// is the server's index, so that it is never 0.
func (s *Server) kvTableIndex() uint64 {
	if s.kvIndex == 0 {
		return s.index
	}
	return s.kvIndex
}

// kvRead answers GET /v1/kv/<key>. Callers hold s.mu.
func (s *Server) kvRead(key string, recurse, keysOnly bool, sep string, raw bool) (result, error) {
	if keysOnly {
		idx := s.kvPrefixIndex(key)
		seen := map[string]bool{}
		keys := []string{}
		for k := range s.kv {
			if !strings.HasPrefix(k, key) {
				continue
			}
			if sep != "" {
				if i := strings.Index(k[len(key):], sep); i >= 0 {
					k = k[:len(key)+i+len(sep)]
				}
			}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return result{index: idx, status: http.StatusNotFound}, nil
		}
		sort.Strings(keys)
		return result{index: idx, status: http.StatusOK, body: mustJSON(keys)}, nil
	}
	if recurse {
		idx := s.kvPrefixIndex(key)
		var out []*kvEntry
		for k, e := range s.kv {
			if strings.HasPrefix(k, key) {
				out = append(out, e)
			}
		}
		if len(out) == 0 {
			return result{index: idx, status: http.StatusNotFound}, nil
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
		return result{index: idx, status: http.StatusOK, body: mustJSON(out)}, nil
	}
	if key == "" {
		return result{}, errorf(http.StatusBadRequest, "Missing key name")
	}
	e := s.kv[key]
	if e == nil {
		return result{index: s.kvTableIndex(), status: http.StatusNotFound}, nil
	}
	if raw {
		return result{index: e.ModifyIndex, status: http.StatusOK, body: append([]byte(nil), e.Value...), raw: true}, nil
	}
	return result{index: e.ModifyIndex, status: http.StatusOK, body: mustJSON([]*kvEntry{e})}, nil
}

func (s *Server) kvPut(w http.ResponseWriter, r *http.Request, key string) error {
	if key == "" {
		return errorf(http.StatusBadRequest, "Missing key name")
	}
	q := r.URL.Query()
	var flags uint64
	if v := q.Get("flags"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "Invalid flags: %v", err)
		}
		flags = n
	}
	cas, hasCAS := uint64(0), q.Has("cas")
	if hasCAS {
		n, err := strconv.ParseUint(q.Get("cas"), 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "Invalid cas index: %v", err)
		}
		cas = n
	}
	value, err := io.ReadAll(io.LimitReader(r.Body, MaxValueSize+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "read body: %v", err)
	}
	if len(value) > MaxValueSize {
		return errorf(http.StatusRequestEntityTooLarge, "Request body too large, max size: %d bytes", MaxValueSize)
	}
	if len(value) == 0 {
		value = nil
	}
	s.mu.Lock()
	ok := true
	if hasCAS {
		ok = casMatches(s.kv[key], cas)
	}
	if ok {
		s.setKey(key, value, flags, s.next())
		s.wake()
	}
	s.mu.Unlock()
	return writeJSON(w, ok)
}

// casMatches reports whether a check-and-set with index may write over e:
// index 0 creates a key that does not exist; any other index must equal
// the key's modify index.
func casMatches(e *kvEntry, index uint64) bool {
	if index == 0 {
		return e == nil
	}
	return e != nil && e.ModifyIndex == index
}

// setKey writes a key at idx. Like Consul, writing an unchanged value still
// moves the modify index. Callers hold s.mu.
func (s *Server) setKey(key string, value []byte, flags, idx uint64) *kvEntry {
	e := s.kv[key]
	if e == nil {
		e = &kvEntry{Key: key, CreateIndex: idx}
		s.kv[key] = e
	}
	e.Value, e.Flags, e.ModifyIndex = value, flags, idx
	delete(s.tombs, key)
	s.kvIndex = idx
	return e
}

// deleteKey removes a key at idx and leaves a tombstone, so that the index
// of a prefix never goes backwards. Callers hold s.mu.
func (s *Server) deleteKey(key string, idx uint64) {
	delete(s.kv, key)
	s.tombs[key] = idx
	s.kvIndex = idx
}

func (s *Server) kvDelete(w http.ResponseWriter, r *http.Request, key string) error {
	q := r.URL.Query()
	recurse := q.Has("recurse")
	if key == "" && !recurse {
		return errorf(http.StatusBadRequest, "Missing key name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if recurse {
		if q.Has("cas") {
			return errorf(http.StatusBadRequest, "Conflicting flags: cas cannot be used with recurse")
		}
		var idx uint64
		for k := range s.kv {
			if strings.HasPrefix(k, key) {
				if idx == 0 {
					idx = s.next()
				}
				s.deleteKey(k, idx)
			}
		}
		if idx != 0 {
			s.wake()
		}
		return writeJSON(w, true)
	}
	e := s.kv[key]
	if q.Has("cas") {
		n, err := strconv.ParseUint(q.Get("cas"), 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "Invalid cas index: %v", err)
		}
		// A delete-cas of a missing key fails unless the index is 0.
		if !casMatches(e, n) {
			return writeJSON(w, false)
		}
	}
	if e != nil {
		s.deleteKey(key, s.next())
		s.wake()
	}
	return writeJSON(w, true)
}

// txnOp is one element of a /v1/txn body.
type txnOp struct {
	KV *struct {
		Verb    string
		Key     string
		Value   []byte
		Flags   uint64
		Index   uint64
		Session string
	}
	Node    json.RawMessage
	Service json.RawMessage
	Check   json.RawMessage
}

type txnResult struct {
	KV *kvEntry
}

type txnError struct {
	OpIndex int
	What    string
}

func (s *Server) serveTxn(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	var ops []txnOp
	dec := json.NewDecoder(io.LimitReader(r.Body, 4*MaxValueSize*MaxTxnOps))
	if err := dec.Decode(&ops); err != nil {
		return errorf(http.StatusBadRequest, "Failed to parse body: %v", err)
	}
	if len(ops) > MaxTxnOps {
		return errorf(http.StatusRequestEntityTooLarge, "Transaction contains too many operations (%d > %d)", len(ops), MaxTxnOps)
	}
	for i, op := range ops {
		if op.KV == nil {
			return errorf(http.StatusBadRequest, "operation %d: consultest supports KV operations only", i)
		}
		if len(op.KV.Value) > MaxValueSize {
			return errorf(http.StatusRequestEntityTooLarge, "Value for key %q is too large (%d > %d bytes)", op.KV.Key, len(op.KV.Value), MaxValueSize)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// Work on an overlay: key → entry, or nil for a key deleted in this
	// transaction. It is applied only if every operation succeeds.
	overlay := map[string]*kvEntry{}
	get := func(k string) *kvEntry {
		if e, ok := overlay[k]; ok {
			return e
		}
		return s.kv[k]
	}
	tree := func(prefix string) []string {
		set := map[string]bool{}
		for k := range s.kv {
			if strings.HasPrefix(k, prefix) {
				set[k] = true
			}
		}
		for k, e := range overlay {
			if strings.HasPrefix(k, prefix) {
				set[k] = e != nil
			}
		}
		var keys []string
		for k, ok := range set {
			if ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		return keys
	}
	idx := s.index + 1
	wrote := false
	set := func(k string, v []byte, flags uint64) *kvEntry {
		e := &kvEntry{Key: k, CreateIndex: idx}
		if old := get(k); old != nil {
			e.CreateIndex, e.LockIndex = old.CreateIndex, old.LockIndex
		}
		if len(v) == 0 {
			v = nil
		}
		e.Value, e.Flags, e.ModifyIndex = v, flags, idx
		overlay[k] = e
		wrote = true
		return e
	}
	var results []txnResult
	var errs []txnError
	fail := func(i int, format string, args ...any) {
		errs = append(errs, txnError{OpIndex: i, What: fmt.Sprintf(format, args...)})
	}
	noValue := func(e *kvEntry) *kvEntry {
		c := e.clone()
		c.Value = nil
		return c
	}
	for i, op := range ops {
		kv := op.KV
		if kv.Key == "" && kv.Verb != "get-tree" && kv.Verb != "delete-tree" {
			fail(i, "Missing key name")
			continue
		}
		switch kv.Verb {
		case "set":
			results = append(results, txnResult{noValue(set(kv.Key, kv.Value, kv.Flags))})
		case "cas":
			if !casMatches(get(kv.Key), kv.Index) {
				fail(i, "failed to set key %q, index is stale", kv.Key)
				continue
			}
			results = append(results, txnResult{noValue(set(kv.Key, kv.Value, kv.Flags))})
		case "get":
			e := get(kv.Key)
			if e == nil {
				fail(i, "key %q doesn't exist", kv.Key)
				continue
			}
			results = append(results, txnResult{e.clone()})
		case "get-or-empty":
			if e := get(kv.Key); e != nil {
				results = append(results, txnResult{e.clone()})
			} else {
				results = append(results, txnResult{&kvEntry{Key: kv.Key}})
			}
		case "get-tree":
			for _, k := range tree(kv.Key) {
				results = append(results, txnResult{get(k).clone()})
			}
		case "check-index":
			e := get(kv.Key)
			if e == nil {
				fail(i, "key %q doesn't exist", kv.Key)
				continue
			}
			if e.ModifyIndex != kv.Index {
				fail(i, "current modify index %d != %d", e.ModifyIndex, kv.Index)
				continue
			}
			results = append(results, txnResult{noValue(e)})
		case "check-not-exists":
			if get(kv.Key) != nil {
				fail(i, "key %q exists", kv.Key)
			}
		case "delete":
			if get(kv.Key) != nil {
				overlay[kv.Key] = nil
				wrote = true
			}
		case "delete-cas":
			e := get(kv.Key)
			if e == nil || e.ModifyIndex != kv.Index {
				fail(i, "failed to delete key %q, index is stale", kv.Key)
				continue
			}
			overlay[kv.Key] = nil
			wrote = true
		case "delete-tree":
			for _, k := range tree(kv.Key) {
				overlay[k] = nil
				wrote = true
			}
		case "lock", "unlock", "check-session":
			fail(i, "consultest does not support sessions (verb %q)", kv.Verb)
		default:
			fail(i, "unknown KV verb %q", kv.Verb)
		}
	}
	w.Header().Set("X-Consul-KnownLeader", "true")
	w.Header().Set("X-Consul-LastContact", "0")
	if len(errs) > 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, err := w.Write(mustJSON(struct {
			Results []txnResult
			Errors  []txnError
		}{nil, errs}))
		return err
	}
	if wrote {
		s.next()
		for k, e := range overlay {
			if e == nil {
				if s.kv[k] != nil {
					s.deleteKey(k, idx)
				}
				continue
			}
			s.kv[k] = e
			delete(s.tombs, k)
			s.kvIndex = idx
		}
		s.wake()
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(s.index, 1), 10))
	return writeJSON(w, struct {
		Results []txnResult
		Errors  []txnError
	}{results, nil})
}
