package jwks

import (
	"time"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/internal/lru"
)

// cacheEntry is a verified token remembered by its digest.
type cacheEntry struct {
	key         [32]byte
	principal   authn.Principal
	kid         string
	alg         string
	fingerprint string
}

// tokenCache remembers verified tokens by digest, never past their exp. A
// nil *tokenCache is a disabled cache. It is safe for concurrent use.
type tokenCache struct{ c *lru.Cache[cacheEntry] }

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	return &tokenCache{c: lru.New[cacheEntry](size)}
}

// cacheResult is the outcome of a cache lookup.
type cacheResult = lru.Result

const (
	cacheMiss = lru.Miss
	cacheHit  = lru.Hit
	// cacheExpired is an entry whose token has expired: it is removed and
	// the token is rejected, because the cache never extends a token's life.
	cacheExpired = lru.Expired
)

// get returns the entry for key and whether it was found and still valid at
// now. An expired entry is removed.
func (c *tokenCache) get(key [32]byte, now time.Time) (cacheEntry, cacheResult) {
	if c == nil {
		return cacheEntry{}, cacheMiss
	}
	return c.c.Get(key, now)
}

// put stores e until its token expires, evicting the least recently used
// entry when full.
func (c *tokenCache) put(e cacheEntry) {
	if c != nil {
		c.c.Put(e.key, e, e.principal.ExpiresAt)
	}
}

// remove drops key.
func (c *tokenCache) remove(key [32]byte) {
	if c != nil {
		c.c.Remove(key)
	}
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	return c.c.Len()
}
