package token

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/assertion"
	"github.com/authgate/authgate/internal/lru"
)

// AssertionSettings configure an Asserter.
type AssertionSettings struct {
	// Issuer is the "iss" claim: the gateway's own issuer.
	Issuer string
	// Audience is the "aud" claim: the upstream.
	Audience string
	// TTL is the assertion's lifetime, at most assertion.MaxLifetime.
	TTL time.Duration
	// CacheSize is how many signed assertions are kept for reuse; zero
	// signs every request.
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Asserter signs the identity assertions the gateway sends upstream (see
// package assertion for their claims), with the signing key of its
// KeySource. It is safe for concurrent use.
//
// An EdDSA signature costs tens of microseconds, more than the rest of a
// request's pass through the gateway, so a signed assertion is reused for
// an identical request: the same caller (subject, roles, method, issuers,
// claims and credential expiry), method, host and path, signed by the key
// set in force, while at least half its lifetime is left. An app thus
// always receives an assertion valid for at least TTL/2. The reuse makes
// jti name the assertion, not the request: an app must not refuse a
// repeated jti.
type Asserter struct {
	keys  KeySource
	s     AssertionSettings
	now   func() time.Time
	cache *lru.Cache[signedAssertion]
	bufs  sync.Pool
}

// signedAssertion is a cached assertion and the key set that signed it.
type signedAssertion struct {
	raw  string
	keys *KeySet
}

// NewAsserter returns an asserter.
func NewAsserter(keys KeySource, s AssertionSettings) (*Asserter, error) {
	if s.TTL <= 0 || s.TTL > assertion.MaxLifetime {
		return nil, fmt.Errorf("token: assertion ttl must be in (0, %s]", assertion.MaxLifetime)
	}
	if s.Issuer == "" || s.Audience == "" {
		return nil, errors.New("token: an assertion needs an issuer and an audience")
	}
	now := s.Now
	if now == nil {
		now = time.Now
	}
	a := &Asserter{keys: keys, s: s, now: now, cache: lru.New[signedAssertion](s.CacheSize)}
	a.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	return a, nil
}

// Assert implements proxy.Asserter: it returns the assertion of p for the
// request (method, host, path) as the upstream receives it.
func (a *Asserter) Assert(p authn.Principal, method, host, path string) (string, error) {
	keys := a.keys.Keys()
	if keys == nil || keys.signing == nil || keys.signing.alg == AlgHS256 {
		// Never an assertion signed with a shared secret: the app would
		// need the secret that also mints admin tokens.
		return "", errors.New("token: assertions need a private signing key")
	}
	now := a.now()
	digest := a.digest(p, method, host, path)
	if e, res := a.cache.Get(digest, now); res == lru.Hit && e.keys == keys {
		return e.raw, nil
	}
	iat := now.Truncate(time.Second)
	exp := iat.Add(a.s.TTL)
	if !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(exp) {
		// Never vouch for a caller past its credential.
		exp = p.ExpiresAt.Truncate(time.Second)
	}
	if !exp.After(iat) {
		return "", errors.New("token: credential ends before the assertion begins")
	}
	c := &assertion.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: a.s.Issuer, Subject: p.Subject, Audience: jwt.ClaimStrings{a.s.Audience},
			IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat), ExpiresAt: jwt.NewNumericDate(exp),
			ID: NewID(),
		},
		Roles:          p.Roles,
		AuthMethod:     string(p.Method),
		OriginalIssuer: p.Issuer,
		Claims:         p.ClaimValues,
		Request:        &assertion.Request{Method: method, Host: host, Path: path},
	}
	if !p.Authenticated() {
		c.Subject, c.Roles, c.AuthMethod, c.OriginalIssuer, c.Claims = "", nil, assertion.MethodNone, "", nil
	}
	raw, err := keys.signAssertion(c)
	if err != nil {
		return "", fmt.Errorf("token: sign assertion: %w", err)
	}
	// Reused only while at least half of its lifetime is left.
	a.cache.Put(digest, signedAssertion{raw: raw, keys: keys}, exp.Add(-exp.Sub(iat)/2))
	return raw, nil
}

// digest is the cache key of an assertion: every input of its claims,
// each length-prefixed so that no two inputs share an encoding.
func (a *Asserter) digest(p authn.Principal, method, host, path string) [32]byte {
	bp := a.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(p.Subject)
	str(string(p.Method))
	str(p.Issuer)
	str(p.KeyName)
	b = binary.AppendUvarint(b, uint64(len(p.Roles)))
	for _, r := range p.Roles {
		str(r)
	}
	b = binary.AppendVarint(b, p.ExpiresAt.Unix())
	b = binary.AppendUvarint(b, uint64(len(p.ClaimValues)))
	if len(p.ClaimValues) > 0 {
		for _, k := range slices.Sorted(maps.Keys(p.ClaimValues)) {
			str(k)
			str(p.ClaimValues[k])
		}
	}
	str(method)
	str(host)
	str(path)
	sum := sha256.Sum256(b)
	*bp = b
	a.bufs.Put(bp)
	return sum
}

// signAssertion signs c as an explicitly typed assertion.
func (ks *KeySet) signAssertion(c *assertion.Claims) (string, error) {
	s := ks.signing
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	header := s.assertHeader
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(header)+1+enc.EncodedLen(len(body))+1+enc.EncodedLen(132))
	buf = append(buf, header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, body)
	sig, err := s.method.Sign(string(buf), s.key)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}
