package cache

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/glb-project/glb/proxy/redistest"
)

// goldenMeta is the encoding of goldenEntry, written out by hand from the
// format in entry.go; it pins the byte layout that every replica reading
// one Redis shares.
const goldenMeta = "474c424d" + // "GLBM"
	"01" + // version
	"00c8" + // status 200
	"0000000000000001" + // validated: 1 ns after the epoch
	"00000002" + "6369" + // credential "ci"
	"00000002" + // two headers, sorted
	"00000004" + "45746167" + "00000001" + "00000005" + "572f227822" + // Etag: W/"x"
	"00000004" + "4c696e6b" + "00000002" + "00000001" + "61" + "00000001" + "62" + // Link: a, b
	"0000000000000002" + // body length 2
	"8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4" // SHA-256("hi"), from sha256sum

func goldenEntry() *Entry {
	return &Entry{
		Status:     200,
		Header:     http.Header{"Etag": {`W/"x"`}, "Link": {"a", "b"}},
		Body:       []byte("hi"),
		Credential: "ci",
		Validated:  time.Unix(0, 1),
	}
}

func TestMetaGolden(t *testing.T) {
	want := goldenMeta
	got := hex.EncodeToString(encodeMeta(goldenEntry()))
	if got != want {
		t.Fatalf("encodeMeta:\n got %s\nwant %s", got, want)
	}
	raw, _ := hex.DecodeString(want)
	e, err := decodeMeta(raw, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	g := goldenEntry()
	if e.Status != g.Status || e.Credential != g.Credential || !e.Validated.Equal(g.Validated) ||
		e.Header.Get("Etag") != g.Header.Get("Etag") || len(e.Header["Link"]) != 2 || string(e.Body) != "hi" {
		t.Fatalf("decoded %+v", e)
	}
}

func TestMetaRefusesMismatches(t *testing.T) {
	meta := encodeMeta(goldenEntry())
	for name, tc := range map[string]struct {
		meta, body []byte
	}{
		"other body":     {meta, []byte("ho")},
		"longer body":    {meta, []byte("hi!")},
		"truncated meta": {meta[:len(meta)-1], []byte("hi")},
		"trailing bytes": {append(bytes.Clone(meta), 0), []byte("hi")},
		"bad magic":      {append([]byte("XLBM"), meta[4:]...), []byte("hi")},
		"empty":          {nil, nil},
	} {
		if _, err := decodeMeta(tc.meta, tc.body); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(goldenEntry()), []byte("hi"))
	f.Add([]byte("GLBM\x01"), []byte{})
	f.Fuzz(func(t *testing.T, meta, body []byte) {
		e, err := decodeMeta(meta, body)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes.
		if !bytes.Equal(encodeMeta(e), meta) {
			t.Fatalf("round trip differs")
		}
	})
}

func TestMemoryLRU(t *testing.T) {
	now := time.Unix(1000, 0)
	m := &Memory{MaxBytes: 3000, Now: func() time.Time { return now }}
	ctx := t.Context()
	put := func(k string, n int) {
		t.Helper()
		if err := m.Put(ctx, k, &Entry{Status: 200, Header: http.Header{}, Body: make([]byte, n)}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	put("a", 1000)
	put("b", 1000)
	if e, _ := m.Get(ctx, "a"); e == nil { // a is now the most recent
		t.Fatal("a missing")
	}
	put("c", 1000) // over the cap: b, the least recent, goes
	if e, _ := m.Get(ctx, "b"); e != nil {
		t.Error("b survived eviction")
	}
	for _, k := range []string{"a", "c"} {
		if e, _ := m.Get(ctx, k); e == nil {
			t.Errorf("%s evicted", k)
		}
	}
	if _, b := m.Usage(); b > m.MaxBytes {
		t.Errorf("usage %d above cap %d", b, m.MaxBytes)
	}
	put("huge", 5000) // larger than the cap: not stored, nothing evicted
	if n, _ := m.Usage(); n != 2 {
		t.Errorf("%d entries after an oversized put", n)
	}
	// Refresh keeps the body and extends the TTL.
	now = now.Add(50 * time.Second)
	e, _ := m.Get(ctx, "a")
	e.Header.Set("X-New", "1")
	m.Refresh(ctx, "a", e, time.Minute)
	now = now.Add(50 * time.Second)
	got, _ := m.Get(ctx, "a")
	if got == nil || got.Header.Get("X-New") != "1" || len(got.Body) != 1000 {
		t.Fatalf("after refresh: %+v", got)
	}
	if e, _ := m.Get(ctx, "c"); e != nil {
		t.Error("c outlived its TTL")
	}
}

// TestRefreshAfterNewerPut: a revalidation that read the old entry may
// finish after another request stored a new one. Its Refresh must not
// give the new body the old headers (an old ETag on a new body would be
// revalidated as unchanged forever after). Both stores are held to it.
func TestRefreshAfterNewerPut(t *testing.T) {
	stores := map[string]func(t *testing.T) Store{
		"memory": func(t *testing.T) Store { return &Memory{MaxBytes: 1 << 20} },
		"redis":  func(t *testing.T) Store { return &Redis{Client: redistest.Start(t).Client()} },
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			st, ctx := mk(t), t.Context()
			entry := func(tag, body string) *Entry {
				return &Entry{Status: 200, Header: http.Header{"Etag": {tag}}, Body: []byte(body), Validated: time.Unix(1, 0)}
			}
			if err := st.Put(ctx, "k", entry(`W/"old"`, "old body"), time.Minute); err != nil {
				t.Fatal(err)
			}
			old, err := st.Get(ctx, "k")
			if err != nil || old == nil {
				t.Fatalf("get: %v %v", old, err)
			}
			if err := st.Put(ctx, "k", entry(`W/"new"`, "new body"), time.Minute); err != nil {
				t.Fatal(err)
			}
			merge304(old, http.Header{"X-Ratelimit-Remaining": {"42"}})
			if err := st.Refresh(ctx, "k", old, time.Minute); err != nil {
				t.Fatal(err)
			}
			got, err := st.Get(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			// The store may keep the new entry or drop it; it must never
			// pair the old headers with the new body.
			if got != nil && (string(got.Body) != "new body" || got.ETag() != `W/"new"` || got.Header.Get("X-Ratelimit-Remaining") == "42") {
				t.Fatalf("after a stale refresh: ETag %s, remaining %q, body %q", got.ETag(), got.Header.Get("X-Ratelimit-Remaining"), got.Body)
			}
			// A refresh of the current entry still applies.
			cur := entry(`W/"new"`, "new body")
			if got != nil {
				cur = got
			} else if err := st.Put(ctx, "k", cur, time.Minute); err != nil {
				t.Fatal(err)
			}
			merge304(cur, http.Header{"X-Ratelimit-Remaining": {"41"}})
			if err := st.Refresh(ctx, "k", cur, time.Minute); err != nil {
				t.Fatal(err)
			}
			if got, _ := st.Get(ctx, "k"); got == nil || got.Header.Get("X-Ratelimit-Remaining") != "41" || string(got.Body) != "new body" {
				t.Fatalf("refresh of the current entry: %+v", got)
			}
		})
	}
}
