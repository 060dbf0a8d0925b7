package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store in Redis or Redis Cluster, shared by every replica.
// An entry is two keys with one hash tag, so they share a cluster slot:
//
//	PREFIX{KEY}:m   metadata (encodeMeta), rewritten by a 304
//	PREFIX{KEY}:b   the body, binary, written once per change
//
// Both carry the entry's TTL. Redis's maxmemory policy (allkeys-lru is
// the right one) caps the total size; the layer caps each entry.
type Redis struct {
	Client redis.UniversalClient
	// Prefix starts every key; empty means "glb-proxy:c:".
	Prefix string
}

var _ Store = (*Redis)(nil)

func (r *Redis) keys(key string) (meta, body string) {
	p := r.Prefix
	if p == "" {
		p = "glb-proxy:c:"
	}
	base := p + "{" + key + "}"
	return base + ":m", base + ":b"
}

// Get implements Store: one MGET of both keys (same slot).
func (r *Redis) Get(ctx context.Context, key string) (*Entry, error) {
	mk, bk := r.keys(key)
	vals, err := r.Client.MGet(ctx, mk, bk).Result()
	if err != nil {
		return nil, fmt.Errorf("redis get: %w", err)
	}
	if len(vals) != 2 || vals[0] == nil || vals[1] == nil {
		return nil, nil
	}
	meta, ok1 := vals[0].(string)
	body, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return nil, nil
	}
	e, err := decodeMeta([]byte(meta), []byte(body))
	if errors.Is(err, errCorrupt) {
		return nil, nil // a torn or foreign entry: a miss
	}
	return e, err
}

// Put implements Store: both keys in one MULTI/EXEC.
func (r *Redis) Put(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	mk, bk := r.keys(key)
	_, err := r.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, bk, e.Body, ttl)
		p.Set(ctx, mk, encodeMeta(e), ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis put: %w", err)
	}
	return nil
}

// Refresh implements Store: the metadata is rewritten and the body's TTL
// extended, without sending the body again. If the body has gone (evicted)
// the metadata no longer matches anything and Get reports a miss.
func (r *Redis) Refresh(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	mk, bk := r.keys(key)
	_, err := r.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, mk, encodeMeta(e), ttl)
		p.PExpire(ctx, bk, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis refresh: %w", err)
	}
	return nil
}
