package cache

import (
	"bytes"
	"container/list"
	"context"
	"net/http"
	"sync"
	"time"
)

// Store keeps entries by key (a hex digest made by the Layer).
// Implementations must be safe for concurrent use. Get returns nil, nil on
// a miss.
type Store interface {
	Get(ctx context.Context, key string) (*Entry, error)
	// Put stores a whole entry for ttl.
	Put(ctx context.Context, key string, e *Entry, ttl time.Duration) error
	// Refresh replaces the metadata of a stored entry after a 304 (its
	// body is unchanged) and extends its ttl. If the stored body is no
	// longer e.Body (a newer answer was stored meanwhile), the stored
	// entry must not end up with e's metadata.
	Refresh(ctx context.Context, key string, e *Entry, ttl time.Duration) error
}

// Memory is an in-process LRU store with a byte cap. Its zero value is not
// usable: set MaxBytes.
type Memory struct {
	// MaxBytes caps the total size of entries; the least recently used
	// go first.
	MaxBytes int64
	// Now is the clock for expiry; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	ll    *list.List
	items map[string]*list.Element
	bytes int64
}

type memItem struct {
	key     string
	e       *Entry
	size    int64
	expires time.Time
}

var _ Store = (*Memory)(nil)

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Memory) initLocked() {
	if m.ll == nil {
		m.ll = list.New()
		m.items = map[string]*list.Element{}
	}
}

// copyEntry gives callers their own header map; bodies are never written
// after storing, so they are shared.
func copyEntry(e *Entry) *Entry {
	c := *e
	c.Header = e.Header.Clone()
	if c.Header == nil {
		c.Header = http.Header{}
	}
	return &c
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) (*Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	el, ok := m.items[key]
	if !ok {
		return nil, nil
	}
	it := el.Value.(*memItem)
	if !m.now().Before(it.expires) {
		m.removeLocked(el)
		return nil, nil
	}
	m.ll.MoveToFront(el)
	return copyEntry(it.e), nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, key string, e *Entry, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	it := &memItem{key: key, e: copyEntry(e), expires: m.now().Add(ttl)}
	it.size = e.size() + int64(len(key))
	if it.size > m.MaxBytes {
		return nil // never fits; the layer caps entries well below this
	}
	if el, ok := m.items[key]; ok {
		m.removeLocked(el)
	}
	m.items[key] = m.ll.PushFront(it)
	m.bytes += it.size
	for m.bytes > m.MaxBytes {
		m.removeLocked(m.ll.Back())
	}
	return nil
}

// Refresh implements Store.
func (m *Memory) Refresh(_ context.Context, key string, e *Entry, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	el, ok := m.items[key]
	if !ok {
		return nil
	}
	it := el.Value.(*memItem)
	if !bytes.Equal(it.e.Body, e.Body) {
		// Another request stored a new answer since e was read: its
		// headers (ETag first) belong to its body, and e's must not be
		// laid over it. The Redis store gets the same result from the
		// body digest in the metadata.
		return nil
	}
	ne := copyEntry(e)
	ne.Body = it.e.Body
	m.bytes -= it.size
	it.e, it.size, it.expires = ne, ne.size()+int64(len(key)), m.now().Add(ttl)
	m.bytes += it.size
	m.ll.MoveToFront(el)
	for m.bytes > m.MaxBytes {
		m.removeLocked(m.ll.Back())
	}
	return nil
}

func (m *Memory) removeLocked(el *list.Element) {
	it := el.Value.(*memItem)
	m.ll.Remove(el)
	delete(m.items, it.key)
	m.bytes -= it.size
}

// Usage returns the number of entries and their total size.
func (m *Memory) Usage() (entries int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items), m.bytes
}
