// Package lru is a bounded least-recently-used cache of values that expire,
// keyed by a SHA-256 digest. It caches verified tokens: an entry is never
// served at or after its expiry, so a cache hit cannot extend a token's life.
package lru

import (
	"container/list"
	"sync"
	"time"
)

// Result is the outcome of a lookup.
type Result int

// The lookup results.
const (
	// Miss: no entry.
	Miss Result = iota
	// Hit: a live entry.
	Hit
	// Expired: the entry had expired; it is removed and must be rejected.
	Expired
)

type entry[V any] struct {
	key [32]byte
	val V
	exp time.Time
}

// Cache is a bounded LRU map. A nil *Cache is a disabled cache: it stores
// nothing and every lookup misses. It is safe for concurrent use.
type Cache[V any] struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[[32]byte]*list.Element
}

// New returns a cache of at most size entries, or nil (disabled) when size
// is not positive. The map grows with its entries rather than being sized
// up front: a gateway holds several caches of 10,000 entries (its own
// tokens, each issuer, the issuer choice, sessions, assertions), and
// presized they cost megabytes of resident memory before the first request.
func New[V any](size int) *Cache[V] {
	if size <= 0 {
		return nil
	}
	return &Cache[V]{max: size, ll: list.New(), items: make(map[[32]byte]*list.Element)}
}

// Get returns the value for key as seen at now.
func (c *Cache[V]) Get(key [32]byte, now time.Time) (V, Result) {
	var zero V
	if c == nil {
		return zero, Miss
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return zero, Miss
	}
	e := el.Value.(*entry[V])
	if !now.Before(e.exp) {
		c.ll.Remove(el)
		delete(c.items, key)
		return e.val, Expired
	}
	c.ll.MoveToFront(el)
	return e.val, Hit
}

// Put stores val under key until exp, evicting the least recently used
// entry when full.
func (c *Cache[V]) Put(key [32]byte, val V, exp time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &entry[V]{key: key, val: val, exp: exp}
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&entry[V]{key: key, val: val, exp: exp})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*entry[V]).key)
	}
}

// Remove drops key.
func (c *Cache[V]) Remove(key [32]byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.ll.Remove(el)
		delete(c.items, key)
	}
}

// Len returns the number of entries.
func (c *Cache[V]) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
