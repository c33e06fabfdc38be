package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxJWKSBytes bounds a fetched key set.
const maxJWKSBytes = 1 << 20

// maxStale is how long after the last successful fetch the keys are used
// while the gateway's JWKS cannot be reached.
const maxStale = 24 * time.Hour

// publicKey is one usable key of the gateway's JWKS.
type publicKey struct {
	alg string // EdDSA or ES256
	pub any    // ed25519.PublicKey or *ecdsa.PublicKey
}

// keyState is an immutable fetched key set.
type keyState struct {
	keys      map[string]publicKey
	fetched   time.Time
	refreshAt time.Time
}

// keyCache fetches and caches the gateway's JWKS. It is safe for
// concurrent use.
type keyCache struct {
	url      string
	client   *http.Client
	refresh  time.Duration
	cooldown time.Duration
	now      func() time.Time

	state   atomic.Pointer[keyState]
	mu      sync.Mutex // one fetch at a time
	lastKid time.Time  // last fetch for an unknown kid, under mu
}

// get returns the key kid names, fetching the key set when it is due, has
// never been fetched, or lacks kid (the gateway rotated its keys); a
// refetch for an unknown kid happens at most once per cooldown, so random
// kids cannot make the app hammer the gateway.
func (c *keyCache) get(ctx context.Context, kid string) (publicKey, error) {
	now := c.now()
	st := c.state.Load()
	due := st == nil || !now.Before(st.refreshAt)
	if !due {
		if k, ok := st.keys[kid]; ok {
			return k, nil
		}
	}
	st = c.fetch(ctx, st, !due)
	if st == nil {
		return publicKey{}, fmt.Errorf("%w: never fetched", ErrKeysUnavailable)
	}
	if c.now().Sub(st.fetched) > maxStale {
		return publicKey{}, fmt.Errorf("%w: keys older than %s", ErrKeysUnavailable, maxStale)
	}
	k, ok := st.keys[kid]
	if !ok {
		return publicKey{}, fmt.Errorf("kid %q is not in the gateway's key set", kid)
	}
	return k, nil
}

// fetch refreshes the key set unless another caller did since seen was
// loaded, or, for an unknown kid, the last such fetch was within the
// cooldown. It returns the newest state.
func (c *keyCache) fetch(ctx context.Context, seen *keyState, forKid bool) *keyState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.state.Load(); st != seen {
		return st // fetched by another request meanwhile
	}
	now := c.now()
	if forKid {
		if !c.lastKid.IsZero() && now.Sub(c.lastKid) < c.cooldown {
			return seen
		}
		c.lastKid = now
	}
	keys, err := c.download(ctx)
	if err != nil {
		if seen != nil {
			// Keep serving the last keys; retry after the cooldown.
			next := *seen
			next.refreshAt = now.Add(c.cooldown)
			c.state.Store(&next)
			return &next
		}
		return nil
	}
	st := &keyState{keys: keys, fetched: now, refreshAt: now.Add(c.refresh)}
	c.state.Store(st)
	return st
}

func (c *keyCache) download(ctx context.Context) (map[string]publicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("jwks too large")
	}
	return parseJWKS(body)
}

type rawJWK struct {
	Kty, Crv, X, Y, Kid, Use, Alg, D string
}

// parseJWKS reads the keys the gateway publishes: Ed25519 (OKP) for EdDSA
// and P-256 (EC) for ES256. Other keys are skipped.
func parseJWKS(b []byte) (map[string]publicKey, error) {
	var doc struct {
		Keys []rawJWK `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.Keys == nil {
		return nil, errors.New("not a JWK set")
	}
	out := make(map[string]publicKey, len(doc.Keys))
	for _, j := range doc.Keys {
		if j.Kid == "" || j.D != "" || (j.Use != "" && j.Use != "sig") {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(j.X)
		if err != nil {
			continue
		}
		switch {
		case j.Kty == "OKP" && j.Crv == "Ed25519" && (j.Alg == "" || j.Alg == "EdDSA") && len(x) == ed25519.PublicKeySize:
			out[j.Kid] = publicKey{alg: "EdDSA", pub: ed25519.PublicKey(x)}
		case j.Kty == "EC" && j.Crv == "P-256" && (j.Alg == "" || j.Alg == "ES256"):
			y, err := base64.RawURLEncoding.DecodeString(j.Y)
			if err != nil || len(x) != 32 || len(y) != 32 {
				continue
			}
			// Rejects points off the curve (invalid-curve attacks).
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				continue
			}
			out[j.Kid] = publicKey{alg: "ES256", pub: pub}
		}
	}
	return out, nil
}
