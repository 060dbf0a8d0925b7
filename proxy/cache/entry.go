package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/http"
	"sort"
	"time"
)

// Entry is a stored response.
type Entry struct {
	Status int
	Header http.Header
	Body   []byte
	// Credential is the upstream credential that fetched the entry: the
	// only one whose ETag GitHub will match.
	Credential string
	// Validated is when the entry was stored or last revalidated.
	Validated time.Time
}

// ETag returns the stored validator, if any.
func (e *Entry) ETag() string { return e.Header.Get("ETag") }

// LastModified returns the stored Last-Modified, if any.
func (e *Entry) LastModified() string { return e.Header.Get("Last-Modified") }

func (e *Entry) size() int64 {
	n := int64(len(e.Body)) + int64(len(e.Credential)) + 64
	for k, vs := range e.Header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// The metadata encoding (the body is stored separately, as is):
//
//	"GLBM" | u8 version=1 | u16 status | i64 validated (unix ns)
//	| str credential | u32 nheaders | nheaders × (str name | u32 nvalues | nvalues × str)
//	| u64 body length | [32]byte SHA-256 of the body
//
// str is u32 length + bytes; integers are big-endian; header names are
// sorted so equal entries encode equally.
var metaMagic = []byte("GLBM")

const metaVersion = 1

// errCorrupt marks stored data that does not decode; the layer treats it
// as a miss.
var errCorrupt = errors.New("corrupt cache entry")

func encodeMeta(e *Entry) []byte {
	var b bytes.Buffer
	b.Write(metaMagic)
	b.WriteByte(metaVersion)
	u16 := make([]byte, 2)
	binary.BigEndian.PutUint16(u16, uint16(e.Status))
	b.Write(u16)
	writeU64(&b, uint64(e.Validated.UnixNano()))
	writeStr(&b, e.Credential)
	names := make([]string, 0, len(e.Header))
	for k := range e.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	writeU32(&b, uint32(len(names)))
	for _, k := range names {
		writeStr(&b, k)
		writeU32(&b, uint32(len(e.Header[k])))
		for _, v := range e.Header[k] {
			writeStr(&b, v)
		}
	}
	writeU64(&b, uint64(len(e.Body)))
	sum := sha256.Sum256(e.Body)
	b.Write(sum[:])
	return b.Bytes()
}

// decodeMeta decodes metadata and checks body against it.
func decodeMeta(meta, body []byte) (*Entry, error) {
	r := reader{b: meta}
	if !bytes.Equal(r.next(4), metaMagic) || r.byte() != metaVersion {
		return nil, errCorrupt
	}
	e := &Entry{Header: http.Header{}}
	e.Status = int(binary.BigEndian.Uint16(r.next(2)))
	e.Validated = time.Unix(0, int64(r.u64()))
	e.Credential = r.str()
	n := r.u32()
	if n > 4096 {
		return nil, errCorrupt
	}
	prev := ""
	for i := range n {
		k := r.str()
		if i > 0 && k <= prev { // canonical: sorted, no duplicates
			return nil, errCorrupt
		}
		prev = k
		nv := r.u32()
		if nv > 4096 {
			return nil, errCorrupt
		}
		for range nv {
			e.Header[k] = append(e.Header[k], r.str())
		}
	}
	blen := r.u64()
	sum := r.next(sha256.Size)
	if r.err || len(r.b) != 0 {
		return nil, errCorrupt
	}
	if uint64(len(body)) != blen {
		return nil, errCorrupt
	}
	got := sha256.Sum256(body)
	if !bytes.Equal(got[:], sum) {
		return nil, errCorrupt
	}
	e.Body = body
	return e, nil
}

func writeU32(b *bytes.Buffer, v uint32) {
	var x [4]byte
	binary.BigEndian.PutUint32(x[:], v)
	b.Write(x[:])
}

func writeU64(b *bytes.Buffer, v uint64) {
	var x [8]byte
	binary.BigEndian.PutUint64(x[:], v)
	b.Write(x[:])
}

func writeStr(b *bytes.Buffer, s string) {
	writeU32(b, uint32(len(s)))
	b.WriteString(s)
}

type reader struct {
	b   []byte
	err bool
}

func (r *reader) next(n int) []byte {
	if r.err || n < 0 || len(r.b) < n {
		r.err = true
		return make([]byte, max(n, 0))
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte  { return r.next(1)[0] }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.next(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.next(8)) }
func (r *reader) str() string {
	n := r.u32()
	if n > 1<<20 {
		r.err = true
		return ""
	}
	return string(r.next(int(n)))
}
