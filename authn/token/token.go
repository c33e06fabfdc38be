// Package token mints and verifies the gateway's own HMAC-signed JWTs.
//
// Every constraint of the parser is stated once, in NewVerifier: the only
// valid method is HS256, the issuer and audience must match, exp is required,
// iat is checked and the leeway is bounded. Tokens are decoded by the strict
// step of package jose, shared with external issuers: crit, duplicate or
// case-variant claims, non-canonical base64url, an unexpected typ and tokens
// over jose.MaxTokenBytes are refused before the signature is checked. A
// "type" claim keeps refresh
// tokens from being used as access tokens and the other way round, and an
// optional "ver" claim binds a token to the user's current credentials so a
// password change ends every older token.
package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/internal/lru"
	"github.com/authgate/authgate/policy"
)

// Token types carried in the "type" claim.
const (
	TypeAccess  = "access"
	TypeRefresh = "refresh"
)

// Claims are the claims of a gateway token. Typed claims are used instead of
// jwt.MapClaims because MapClaims treats "exp": 0 as "no expiry".
type Claims struct {
	jwt.RegisteredClaims
	// Roles are the gateway roles granted to the subject.
	Roles []string `json:"roles,omitempty"`
	// Type is TypeAccess or TypeRefresh.
	Type string `json:"type"`
	// Ver is a fingerprint of the user's credentials when the token was
	// minted; empty for tokens minted for a service by the admin tool.
	Ver string `json:"ver,omitempty"`
	// Family identifies a chain of rotated refresh tokens.
	Family string `json:"fam,omitempty"`
	// SessionID is the refresh-token family an access token was minted
	// in (the OpenID Connect "sid" claim), so that revoking the family
	// revokes its access tokens too. Empty for tokens of the admin tool.
	SessionID string `json:"sid,omitempty"`
	// AuthTime is when the user logged in (the OpenID Connect "auth_time"
	// claim). A session ends at AuthTime plus the refresh max age however
	// often it is refreshed; rotations carry it over unchanged.
	AuthTime *jwt.NumericDate `json:"auth_time,omitempty"`
}

// Settings are the claims every gateway token must carry.
type Settings struct {
	// Issuer is the "iss" claim, for example "authgate".
	Issuer string
	// Audience is the single "aud" value minted and required.
	Audience string
	// Leeway is the clock skew tolerated on exp, nbf and iat.
	Leeway time.Duration
}

// Verifier verifies gateway tokens. It implements authn.TokenVerifier for
// access tokens. It is safe for concurrent use.
type Verifier struct {
	keys     KeySource
	settings Settings
	parser   *jose.Parser
	refresh  *jose.Parser // refresh tokens: their own audience (see refreshAudience)
	binding  Binding
	claims   *authn.ClaimPaths
	now      func() time.Time
	cache    *lru.Cache[cachedClaims] // verified access tokens; nil = off
}

// Options are the optional collaborators of a Verifier or Signer.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Binding, if non-nil, checks the "ver" claim of every token.
	Binding Binding
	// CacheSize is how many verified access tokens a Verifier remembers by
	// digest (never past their exp; the binding check still runs on every
	// hit). Zero disables the cache.
	CacheSize int
	// Claims, if set, are the claims a Verifier copies into
	// Principal.Claims (the claim headers).
	Claims *authn.ClaimPaths
}

// NewVerifier returns a verifier for tokens signed by keys: a fixed
// *KeySet, or a *KeyStore whose set is replaced on rotation.
func NewVerifier(keys KeySource, s Settings, o Options) *Verifier {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Verifier{keys: keys, settings: s, parser: newParser(s, now, s.Audience),
		refresh: newParser(s, now, s.Audience, refreshAudience(s)), binding: o.Binding, claims: o.Claims,
		now: now, cache: lru.New[cachedClaims](o.CacheSize)}
}

// Issuer returns the "iss" value of gateway tokens.
func (v *Verifier) Issuer() string { return v.settings.Issuer }

// Verify checks an access token and returns its caller.
func (v *Verifier) Verify(ctx context.Context, raw string) (authn.Principal, error) {
	c, err := v.Parse(ctx, raw, TypeAccess)
	if err != nil {
		return authn.Principal{}, err
	}
	p := authn.Principal{
		Subject:     c.Subject,
		Roles:       c.Roles, // normalized by parse
		Method:      authn.MethodJWT,
		Issuer:      c.Issuer,
		TokenID:     c.ID,
		Session:     c.SessionID,
		ClaimValues: v.claimValues(c),
		Claims:      c,
	}
	if c.ExpiresAt != nil {
		p.ExpiresAt = c.ExpiresAt.Time
	}
	return p, nil
}

// Parse verifies a token of the given type and returns its claims. The
// returned claims must not be modified.
func (v *Verifier) Parse(ctx context.Context, raw, typ string) (*Claims, error) {
	if typ != TypeAccess || v.cache == nil {
		return v.parse(ctx, raw, typ)
	}
	// Hash the token without copying it: Sum256 neither keeps nor changes
	// its input, so viewing the string's bytes is safe.
	digest := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	keys := v.keys.Keys() // before verifying: a hit needs this very set
	switch e, res := v.cache.Get(digest, v.now()); {
	case res == lru.Hit && e.keys == keys:
		// The signature and claims were verified; the user's credentials
		// may have changed since, so the binding is checked again.
		if err := v.checkBinding(ctx, e.c); err != nil {
			return nil, err
		}
		return e.c, nil
	case res == lru.Expired:
		return nil, fmt.Errorf("%w: token is expired", authn.ErrInvalidToken)
	}
	c, err := v.parse(ctx, raw, typ)
	if err != nil {
		return nil, err
	}
	v.cache.Put(digest, cachedClaims{c: c, keys: keys}, c.ExpiresAt.Time.Add(v.settings.Leeway))
	return c, nil
}

func (v *Verifier) parse(ctx context.Context, raw, typ string) (*Claims, error) {
	c, err := v.parseUnbound(raw, typ)
	if err != nil {
		return nil, err
	}
	if err := v.checkBinding(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// parseUnbound verifies raw's signature and claims, but not its binding.
func (v *Verifier) parseUnbound(raw, typ string) (*Claims, error) {
	var c Claims
	_, err := v.parserFor(typ).Parse(raw, &c, v.keyFunc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", authn.ErrInvalidToken, err)
	}
	if c.Type != typ {
		// A refresh token must never work as an access token, nor the
		// reverse: token-type confusion.
		return nil, fmt.Errorf("%w: token type %q, want %q", authn.ErrInvalidToken, c.Type, typ)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: empty subject", authn.ErrInvalidToken)
	}
	if c.ID == "" {
		return nil, fmt.Errorf("%w: missing jti", authn.ErrInvalidToken)
	}
	if typ == TypeRefresh && c.Family == "" {
		return nil, fmt.Errorf("%w: refresh token without family", authn.ErrInvalidToken)
	}
	c.Roles = NormalizeRoles(c.Roles)
	return &c, nil
}

func (v *Verifier) keyFunc(h jose.Header) (any, error) {
	return v.keys.Keys().verificationKey(h)
}

// Signer mints gateway tokens with the signing key of a KeySet. It is safe
// for concurrent use.
type Signer struct {
	keys     KeySource
	settings Settings
	now      func() time.Time
}

// NewSigner returns a signer that signs with the key set keys holds at
// each Mint.
func NewSigner(keys KeySource, s Settings, o Options) *Signer {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Signer{keys: keys, settings: s, now: now}
}

// Grant describes a token to mint.
type Grant struct {
	Subject string
	Roles   []string
	Type    string
	TTL     time.Duration
	Ver     string
	Family  string
	// SessionID is the "sid" claim of an access token (see Claims).
	SessionID string
	// AuthTime, if set, is the "auth_time" claim: when the session began.
	AuthTime time.Time
	// NotAfter, if set, caps the expiry: the token ends at the earlier of
	// now+TTL and NotAfter (the end of its session).
	NotAfter time.Time
}

// Mint signs a new token and returns it with its claims.
func (s *Signer) Mint(g Grant) (string, *Claims, error) {
	if g.Type != TypeAccess && g.Type != TypeRefresh {
		return "", nil, fmt.Errorf("token: unknown type %q", g.Type)
	}
	if g.Subject == "" || g.TTL <= 0 {
		return "", nil, errors.New("token: grant needs a subject and a positive ttl")
	}
	now := s.now().Truncate(time.Second)
	exp := now.Add(g.TTL)
	if !g.NotAfter.IsZero() && g.NotAfter.Before(exp) {
		exp = g.NotAfter
	}
	if !exp.After(now) {
		return "", nil, errors.New("token: grant ends before it begins")
	}
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.settings.Issuer,
			Subject:   g.Subject,
			Audience:  jwt.ClaimStrings{audienceFor(s.settings, g.Type)},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ID:        NewID(),
		},
		Roles:     NormalizeRoles(g.Roles),
		Type:      g.Type,
		Ver:       g.Ver,
		Family:    g.Family,
		SessionID: g.SessionID,
	}
	if !g.AuthTime.IsZero() {
		c.AuthTime = jwt.NewNumericDate(g.AuthTime)
	}
	signed, err := s.keys.Keys().sign(c)
	if err != nil {
		return "", nil, fmt.Errorf("token: sign: %w", err)
	}
	return signed, c, nil
}

// NewID returns a random 128-bit identifier, base64url encoded.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error.
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// NormalizeRoles returns roles sorted, without duplicates and without
// names outside the role grammar (policy.ValidRoleName): such a name can be
// listed by no rule and would reach the upstream as something else ("a,b"
// is two roles in a comma-separated header), so it grants nothing. The
// loaders of roles (users and keys files, the CLI) report such names when
// they read them, so none vanishes unannounced. It does not modify its
// argument.
func NormalizeRoles(roles []string) []string {
	if len(roles) == 0 {
		return nil
	}
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if policy.ValidRoleName(r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
