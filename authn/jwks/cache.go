package jwks

import (
	"container/list"
	"sync"
	"time"

	"github.com/authgate/authgate/authn"
)

// cacheEntry is a verified token remembered by its digest.
type cacheEntry struct {
	key         [32]byte
	principal   authn.Principal
	kid         string
	alg         string
	fingerprint string
}

// tokenCache is a bounded least-recently-used map from token digest to the
// verified result. It is safe for concurrent use. A nil *tokenCache is a
// disabled cache.
type tokenCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[[32]byte]*list.Element
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	return &tokenCache{max: size, ll: list.New(), items: make(map[[32]byte]*list.Element, size)}
}

// cacheResult is the outcome of a cache lookup.
type cacheResult int

const (
	cacheMiss cacheResult = iota
	cacheHit
	// cacheExpired is an entry whose token has expired: it is removed and
	// the token is rejected, because the cache never extends a token's life.
	cacheExpired
)

// get returns the entry for key and whether it was found and still valid at
// now. An expired entry is removed.
func (c *tokenCache) get(key [32]byte, now time.Time) (cacheEntry, cacheResult) {
	if c == nil {
		return cacheEntry{}, cacheMiss
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return cacheEntry{}, cacheMiss
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.principal.ExpiresAt) {
		c.ll.Remove(el)
		delete(c.items, key)
		return *e, cacheExpired
	}
	c.ll.MoveToFront(el)
	return *e, cacheHit
}

// put stores e, evicting the least recently used entry when full.
func (c *tokenCache) put(e cacheEntry) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[e.key]; ok {
		el.Value = &e
		c.ll.MoveToFront(el)
		return
	}
	c.items[e.key] = c.ll.PushFront(&e)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

// remove drops key.
func (c *tokenCache) remove(key [32]byte) {
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

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
