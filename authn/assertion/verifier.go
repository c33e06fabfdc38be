package assertion

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of Verify. Each wraps one of these; the text after it is for the
// app's log, never for the client.
var (
	// ErrMissing: the request carries no assertion (it did not pass the
	// gateway).
	ErrMissing = errors.New("assertion: missing")
	// ErrInvalid: the assertion is malformed, forged, expired, of another
	// issuer or audience, or not an assertion at all.
	ErrInvalid = errors.New("assertion: invalid")
	// ErrBinding: a valid assertion of another request (another method,
	// host or path): replayed.
	ErrBinding = errors.New("assertion: signed for another request")
	// ErrAnonymous: an anonymous caller where Config.AllowAnonymous is
	// false.
	ErrAnonymous = errors.New("assertion: anonymous caller")
	// ErrKeysUnavailable: the gateway's keys could not be fetched.
	ErrKeysUnavailable = errors.New("assertion: gateway keys unavailable")
)

// maxAssertionBytes bounds the work done on an unverified header.
const maxAssertionBytes = 16 << 10

// Config configures a Verifier. JWKSURL, Issuer and Audience are required.
type Config struct {
	// JWKSURL is the gateway's key set, for example
	// http://127.0.0.1:8080/.well-known/jwks.json for the sidecar in the
	// same pod. Plain http is accepted only for a loopback host.
	JWKSURL string
	// Issuer is the gateway's jwt.issuer: the exact "iss".
	Issuer string
	// Audience is the gateway's assertion.audience (by default its
	// upstream.url, this app's address as the gateway sees it).
	Audience string
	// Header carries the assertion; empty means Header.
	Header string
	// AllowAnonymous accepts the anonymous assertions of public paths. The
	// caller is then Principal.Anonymous. When false they get ErrAnonymous.
	AllowAnonymous bool
	// Leeway is the clock skew tolerated on exp, nbf and iat; zero means
	// 5s, at most 30s.
	Leeway time.Duration
	// Client fetches the key set; nil means a client with a 5s timeout.
	Client *http.Client
	// RefreshInterval is how long fetched keys are used before they are
	// fetched again (a key unknown to the cached set triggers a fetch at
	// once, at most once per 10s); zero means 5 minutes.
	RefreshInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnError, if set, is called with every refused request's error, for
	// logging. It must not write to the response.
	OnError func(r *http.Request, err error)
}

// Verifier checks assertions. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	header string
	parser *jwt.Parser
	keys   *keyCache
	now    func() time.Time
}

// New returns a verifier. It does no network I/O: keys are fetched on the
// first request.
func New(c Config) (*Verifier, error) {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("assertion: Issuer is required"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("assertion: Audience is required"))
	}
	if err := checkJWKSURL(c.JWKSURL); err != nil {
		errs = append(errs, err)
	}
	if c.Leeway < 0 || c.Leeway > 30*time.Second {
		errs = append(errs, errors.New("assertion: Leeway must be between 0 and 30s"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.Leeway == 0 {
		c.Leeway = 5 * time.Second
	}
	if c.Header == "" {
		c.Header = Header
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	refresh := c.RefreshInterval
	if refresh <= 0 {
		refresh = 5 * time.Minute
	}
	return &Verifier{
		cfg:    c,
		header: http.CanonicalHeaderKey(c.Header),
		parser: jwt.NewParser(
			// Only the algorithms the gateway signs with: never "none"
			// nor HS*, whose secret would be the published key.
			jwt.WithValidMethods([]string{"EdDSA", "ES256"}),
			jwt.WithIssuer(c.Issuer),
			jwt.WithAudience(c.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(c.Leeway),
			jwt.WithTimeFunc(now),
		),
		keys: &keyCache{url: c.JWKSURL, client: client, refresh: refresh, cooldown: 10 * time.Second, now: now},
		now:  now,
	}, nil
}

func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("assertion: JWKSURL must be an absolute URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		// Keys fetched over plain HTTP from another host can be replaced
		// on the way, and every assertion forged with them.
		if h := u.Hostname(); h == "localhost" || h == "127.0.0.1" || h == "::1" {
			return nil
		}
		return errors.New("assertion: JWKSURL: plain http only to a loopback host; use https")
	}
	return errors.New("assertion: JWKSURL must be https (or http to loopback)")
}

// Verify checks r's assertion and returns the caller it vouches for.
func (v *Verifier) Verify(r *http.Request) (*Principal, error) {
	vals := r.Header.Values(v.header)
	switch {
	case len(vals) == 0 || vals[0] == "":
		return nil, ErrMissing
	case len(vals) > 1:
		return nil, fmt.Errorf("%w: %d assertion headers", ErrInvalid, len(vals))
	case len(vals[0]) > maxAssertionBytes:
		return nil, fmt.Errorf("%w: too large", ErrInvalid)
	}
	c := &Claims{}
	_, err := v.parser.ParseWithClaims(vals[0], c, func(t *jwt.Token) (any, error) {
		return v.keyFor(r, t)
	})
	if err != nil {
		if errors.Is(err, ErrKeysUnavailable) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.IssuedAt == nil || c.ID == "" || c.Request == nil || c.AuthMethod == "" {
		return nil, fmt.Errorf("%w: iat, jti, auth_method or req missing", ErrInvalid)
	}
	if c.ExpiresAt.Sub(c.IssuedAt.Time) > MaxLifetime {
		// An assertion proves one request; a longer-lived token signed by
		// the same key is something else.
		return nil, fmt.Errorf("%w: lifetime over %s", ErrInvalid, MaxLifetime)
	}
	if got := RequestOf(r); *c.Request != got {
		return nil, fmt.Errorf("%w: signed for %s %s%s, received %s %s%s", ErrBinding,
			c.Request.Method, c.Request.Host, c.Request.Path, got.Method, got.Host, got.Path)
	}
	p := &Principal{Subject: c.Subject, Roles: c.Roles, AuthMethod: c.AuthMethod, OriginalIssuer: c.OriginalIssuer,
		Claims: c.Claims, ID: c.ID, ExpiresAt: c.ExpiresAt.Time}
	if p.Anonymous() {
		if !v.cfg.AllowAnonymous {
			return nil, ErrAnonymous
		}
		p.Subject, p.Roles, p.AuthMethod = "", nil, MethodNone
	}
	return p, nil
}

// keyFor selects the verification key of a parsed, unverified assertion.
func (v *Verifier) keyFor(r *http.Request, t *jwt.Token) (any, error) {
	if typ, _ := t.Header["typ"].(string); typ != Type {
		return nil, fmt.Errorf("typ %q is not an assertion", typ)
	}
	// A token must not choose its own key (jku, jwk, x5u, x5c: key
	// injection), nor name extensions this code does not implement.
	for _, h := range [...]string{"jku", "jwk", "x5u", "x5c", "crit"} {
		if _, ok := t.Header[h]; ok {
			return nil, fmt.Errorf("header %q is refused", h)
		}
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errors.New("no kid")
	}
	k, err := v.keys.get(r.Context(), kid)
	if err != nil {
		return nil, err
	}
	if k.alg != t.Method.Alg() {
		// Each key verifies only its own algorithm.
		return nil, fmt.Errorf("kid %q is a %s key", kid, k.alg)
	}
	return k.pub, nil
}

// Middleware verifies every request's assertion before next runs: a
// refused request gets 401 with a JSON body (503 when the keys cannot be
// fetched), and next reads the caller with FromContext.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := v.Verify(r)
		if err != nil {
			if v.cfg.OnError != nil {
				v.cfg.OnError(r, err)
			}
			code, msg := http.StatusUnauthorized, "request did not come through the gateway"
			if errors.Is(err, ErrKeysUnavailable) {
				code, msg = http.StatusServiceUnavailable, "gateway keys unavailable"
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": http.StatusText(code), "message": msg})
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}
