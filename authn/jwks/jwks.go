package jwks

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/jose"
)

// Options holds the optional collaborators of a Set. The zero value is
// valid: every nil field takes the default named on it.
type Options struct {
	// Client fetches discovery documents and key sets. If nil, a client
	// with its own transport and a FetchTimeout timeout is used.
	Client *http.Client
	// Now is the clock. If nil, time.Now is used.
	Now func() time.Time
	// Logger receives fetch failures; tokens are never logged. If nil,
	// zap.NewNop is used.
	Logger *zap.Logger
	// Registerer receives the metrics. If nil, no metrics are recorded.
	Registerer prometheus.Registerer
	// Claims, if set, are the claims copied into Principal.Claims (the
	// claim headers), read like the roles claim.
	Claims *authn.ClaimPaths
}

// Set holds the verifiers of all configured external issuers and the
// background refresh of their keys. It is safe for concurrent use. The
// zero value is not usable; build one with New.
type Set struct {
	verifiers  []*verifier
	sources    []*keySource
	now        func() time.Time
	ownClient  *http.Client
	cancelBase context.CancelFunc

	mu        sync.Mutex
	cancelRun context.CancelFunc
	started   bool
	closed    bool
	wg        sync.WaitGroup
}

// New validates the configuration and builds the verifiers. It performs no
// network I/O: keys are fetched by Start, or on the first Verify. All
// configuration errors are reported at once. Metrics are registered with
// opts.Registerer, so two Sets need two registries.
func New(cfgs []IssuerConfig, cache CacheConfig, opts Options) (*Set, error) {
	var errs []error
	seen := make(map[string]bool, len(cfgs))
	for i := range cfgs {
		if err := cfgs[i].Validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[cfgs[i].Issuer] {
			errs = append(errs, fmt.Errorf("jwks: issuer %q: configured more than once", cfgs[i].Issuer))
		}
		seen[cfgs[i].Issuer] = true
	}
	if err := cache.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cache = cache.withDefaults()

	s := &Set{now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	client := opts.Client
	if client == nil {
		var transport http.RoundTripper
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			transport = t.Clone()
		}
		client = &http.Client{Timeout: cache.FetchTimeout, Transport: transport}
		s.ownClient = client
	}
	baseCtx, cancel := context.WithCancel(context.Background())
	s.cancelBase = cancel
	tc := newTokenCache(cache.TokenCacheSize)

	for _, c := range cfgs {
		src := &keySource{
			issuer:    c.Issuer,
			discovery: c.Discovery,
			jwksURI:   c.JWKSURI,
			client:    client,
			cfg:       cache,
			now:       s.now,
			log:       log,
			baseCtx:   baseCtx,
		}
		v := &verifier{
			issuer:       c.Issuer,
			subjectClaim: c.SubjectClaim,
			keys:         src,
			cache:        tc,
			claims:       opts.Claims,
			now:          s.now,
			algs:         c.algorithms(),
			leeway:       cache.Leeway,
			parser: jose.NewParser(jose.Options{
				Algorithms: c.algorithms(),
				Type:       c.typePolicy(),
				Claims:     tokenClaims{},
				Validation: []jwt.ParserOption{
					jwt.WithIssuer(c.Issuer),
					jwt.WithAudience(c.Audiences...),
					jwt.WithExpirationRequired(),
					jwt.WithIssuedAt(),
					jwt.WithLeeway(cache.Leeway),
					jwt.WithTimeFunc(s.now),
				},
			}),
		}
		if v.subjectClaim == "" {
			v.subjectClaim = "sub"
		}
		if c.RolesClaim != "" {
			v.rolesPath, _ = splitClaimPath(c.RolesClaim) // checked by Validate
		}
		if len(c.RoleMap) > 0 {
			v.roleMap = make(map[string][]string, len(c.RoleMap))
			for k, r := range c.RoleMap {
				v.roleMap[k] = slices.Clone(r)
			}
		}
		s.sources = append(s.sources, src)
		s.verifiers = append(s.verifiers, v)
	}
	m, err := newMetrics(opts.Registerer, s.sources, s.now)
	if err != nil {
		cancel()
		return nil, err
	}
	for i := range s.sources {
		s.sources[i].metrics = m
		s.verifiers[i].metrics = m
	}
	return s, nil
}

// Verifiers returns one verifier per configured issuer, in configuration
// order.
func (s *Set) Verifiers() []authn.TokenVerifier {
	out := make([]authn.TokenVerifier, len(s.verifiers))
	for i, v := range s.verifiers {
		out[i] = v
	}
	return out
}

// Verifier returns the verifier for exactly issuer and reports whether there
// is one.
func (s *Set) Verifier(issuer string) (authn.TokenVerifier, bool) {
	for _, v := range s.verifiers {
		if v.issuer == issuer {
			return v, true
		}
	}
	return nil, false
}

// Start fetches every issuer's keys in the background and keeps them fresh
// until ctx ends or Close is called. It does not wait for the fetches; use
// Ready. Calling Start more than once, or after Close, does nothing.
func (s *Set) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return
	}
	s.started = true
	runCtx, cancel := context.WithCancel(ctx)
	s.cancelRun = cancel
	startedAt := s.now()
	for _, src := range s.sources {
		s.wg.Go(func() { src.run(runCtx, startedAt) })
	}
}

// Ready reports whether every issuer has had a successful fetch and its
// keys are not older than MaxStale. An issuer that keeps failing keeps the
// Set not ready forever: past StartupGrace the failure is logged as an
// error, and the gateway should report itself not ready rather than serve
// with an issuer whose tokens are all denied.
func (s *Set) Ready() bool {
	for _, src := range s.sources {
		if !src.ready() {
			return false
		}
	}
	return true
}

// Close stops the background refresh, aborts fetches in flight and waits
// for them to end. It is safe to call more than once.
func (s *Set) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.cancelRun != nil {
		s.cancelRun()
	}
	s.cancelBase()
	s.mu.Unlock()
	s.wg.Wait()
	if s.ownClient != nil {
		s.ownClient.CloseIdleConnections()
	}
}

// verifier verifies the tokens of one issuer. It is safe for concurrent use.
type verifier struct {
	issuer       string
	subjectClaim string
	rolesPath    []string
	roleMap      map[string][]string
	parser       *jose.Parser
	algs         []string      // the allow-list
	leeway       time.Duration // clock skew on exp, nbf, iat
	keys         *keySource
	cache        *tokenCache
	claims       *authn.ClaimPaths
	metrics      *metrics
	now          func() time.Time
}

// Issuer implements authn.TokenVerifier.
func (v *verifier) Issuer() string { return v.issuer }

// Verify implements authn.TokenVerifier. Errors wrap authn.ErrInvalidToken,
// or authn.ErrUnavailable when the issuer's keys cannot be obtained, and
// never contain the token.
func (v *verifier) Verify(ctx context.Context, token string) (authn.Principal, error) {
	return v.verify(ctx, token, nil)
}

// VerifyDecoded implements authn.DecodedVerifier: decoded is what
// jose.Decode returned for token, and a cache miss checks it instead of
// decoding token again.
func (v *verifier) VerifyDecoded(ctx context.Context, token string, decoded *jose.Token) (authn.Principal, error) {
	return v.verify(ctx, token, decoded)
}

func (v *verifier) verify(ctx context.Context, token string, decoded *jose.Token) (authn.Principal, error) {
	if len(token) > jose.MaxTokenBytes {
		return authn.Principal{}, v.invalid(jose.ErrTooLarge)
	}
	now := v.now()
	digest := sha256.Sum256([]byte(token))
	if e, res := v.cache.get(digest, now); res != cacheMiss && e.principal.Issuer == v.issuer {
		if res == cacheExpired {
			v.metrics.cacheLookup("hit")
			return authn.Principal{}, v.invalid(errors.New("token is expired"))
		}
		// A hit is served only while the exact key that verified the token
		// is still published and fresh enough: a rotated-out or stale key
		// must stop working for cached tokens too.
		st, err := v.keys.current(ctx)
		if err != nil {
			return authn.Principal{}, v.fail(err)
		}
		if k, found, err := st.set.lookup(e.kid, e.alg); found && err == nil && k.fingerprint == e.fingerprint {
			v.metrics.cacheLookup("hit")
			return e.principal, nil
		}
		v.cache.remove(digest)
	}
	v.metrics.cacheLookup("miss")

	var used *usedKey
	claims := &tokenClaims{}
	key := func(h jose.Header) (any, error) {
		k, err := v.keyFor(ctx, h)
		used = k
		return k.pubOrNil(), err
	}
	var err error
	if decoded != nil {
		err = v.parser.ParseDecoded(decoded, claims, key)
	} else {
		_, err = v.parser.Parse(token, claims, key)
	}
	if err != nil {
		return authn.Principal{}, v.fail(err)
	}
	// WithIssuer already checked this; keep the exact comparison here so the
	// guarantee does not depend on a parser option staying set.
	if claims.Issuer != v.issuer {
		return authn.Principal{}, v.invalid(errors.New("issuer mismatch"))
	}
	if claims.ExpiresAt == nil {
		return authn.Principal{}, v.invalid(errors.New("token has no exp"))
	}
	p := authn.Principal{
		Method:    authn.MethodExternal,
		Issuer:    v.issuer,
		TokenID:   claims.ID,
		ExpiresAt: claims.ExpiresAt.Time,
	}
	if p.Subject, err = v.subject(claims); err != nil {
		return authn.Principal{}, v.invalid(err)
	}
	if p.Roles, err = v.roles(claims); err != nil {
		return authn.Principal{}, v.invalid(err)
	}
	p.ClaimValues = v.claims.Extract(func(segs []string) (json.RawMessage, bool, error) { return lookupPath(claims.raw, segs) })
	if err = fillClaims(&p, claims.raw); err != nil {
		return authn.Principal{}, v.invalid(err)
	}
	if now.Before(p.ExpiresAt) {
		v.cache.put(cacheEntry{key: digest, principal: p, kid: used.kid, alg: used.usedAlg, fingerprint: used.fingerprint})
	}
	return p, nil
}

// usedKey is the key chosen for one verification and the algorithm it was
// used with.
type usedKey struct {
	*publicKey
	usedAlg string
}

func (k *usedKey) pubOrNil() any {
	if k == nil {
		return nil
	}
	return k.pub
}

// keyFor selects the verification key for the header of a token that
// passed the strict decoding step. That step already refused a header
// carrying "jku", "x5u", "jwk" or "x5c" (a token choosing its own key, the
// CVE-2018-0114 class) or "crit" (RFC 7515 §4.1.11), and a "kid" that is
// not a non-empty string.
func (v *verifier) keyFor(ctx context.Context, h jose.Header) (*usedKey, error) {
	alg, kid := h.Alg, h.Kid
	st, err := v.keys.current(ctx)
	if err != nil {
		return nil, err
	}
	k, found, err := st.set.lookup(kid, alg)
	if !found {
		// An unknown kid usually means the provider rotated its keys.
		if fresh := v.keys.refetchForKid(ctx, v.now()); fresh != nil && fresh != st {
			k, found, err = fresh.set.lookup(kid, alg)
		}
	}
	if !found {
		return nil, errors.New("token kid is not in the issuer's key set")
	}
	if err != nil {
		return nil, err
	}
	return &usedKey{publicKey: k, usedAlg: alg}, nil
}

func (v *verifier) subject(c *tokenClaims) (string, error) {
	sub := c.Subject
	if v.subjectClaim != "sub" {
		sub = ""
		if raw, ok := c.raw[v.subjectClaim]; ok {
			if err := json.Unmarshal(raw, &sub); err != nil {
				return "", errors.New("subject claim is not a string")
			}
		}
	}
	if sub == "" {
		return "", errors.New("token has no subject")
	}
	return sub, nil
}

func (v *verifier) roles(c *tokenClaims) ([]string, error) {
	if v.rolesPath == nil {
		return nil, nil
	}
	raw, ok, err := lookupPath(c.raw, v.rolesPath)
	if err != nil || !ok {
		return nil, err
	}
	list, err := decodeRoles(raw)
	if err != nil {
		return nil, err
	}
	return mapRoles(list, v.roleMap), nil
}

func (v *verifier) invalid(err error) error {
	return fmt.Errorf("jwks: issuer %q: %w: %w", v.issuer, authn.ErrInvalidToken, err)
}

// fail classifies a verification error: a key source failure is
// ErrUnavailable, everything else ErrInvalidToken. Both deny.
func (v *verifier) fail(err error) error {
	if errors.Is(err, errKeysUnavailable) {
		return fmt.Errorf("jwks: issuer %q: %w: %w", v.issuer, authn.ErrUnavailable, err)
	}
	return v.invalid(err)
}
