// Package session keeps browser sessions: an opaque random id in a
// __Host- cookie, and the record server side in the state store under the
// id's SHA-256 digest, so neither the store nor its dumps hold a cookie
// that works. A session has an idle and an absolute timeout, a new id at
// every sign-in (no fixation), and is bound to the user's credentials the
// way the gateway's tokens are: a password change, a disable, a delete or a
// role removal ends it at the next request after the users file reload, on
// every replica. The cookie authenticator refuses cross-site unsafe
// requests (CSRF) unless that check is turned off.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/logsafe"
	"github.com/authgate/authgate/internal/lru"
)

// Defaults applied by New to zero Options fields. The timeouts are
// Keycloak's SSO Session Idle and SSO Session Max.
const (
	DefaultCookieName      = "__Host-authgate_session"
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 10 * time.Hour
	DefaultStateTimeout    = 500 * time.Millisecond
	// DefaultCacheSize bounds the in-process cache when it is on.
	DefaultCacheSize = 10000
)

// idBytes is the entropy of a session id: 256 bits, above OWASP's 64-bit
// floor by far, so guessing one is not an attack.
const idBytes = 32

// idLen is the length of an encoded session id.
var idLen = base64.RawURLEncoding.EncodedLen(idBytes)

// Reasons a session ends: the closed label set of
// authgate_sessions_ended_total and the audit "reason" field.
const (
	EndSignOut           = "sign_out"
	EndSignOutEverywhere = "sign_out_everywhere"
	EndReplaced          = "replaced" // a new sign-in in the same browser
	EndExpired           = "expired"
	EndCredentials       = "credentials" // password, disable, delete, role removal
	EndRefreshFailed     = "refresh_failed"
	EndProviderLogout    = "provider_logout" // back-channel logout
)

var endReasons = []string{EndSignOut, EndSignOutEverywhere, EndReplaced, EndExpired, EndCredentials, EndRefreshFailed, EndProviderLogout}

// Refresher keeps an external provider's session alive: it is called for
// sessions whose Issuer is set and may return new Data (refreshed tokens).
// An error ends the session. Implementations are safe for concurrent use.
type Refresher interface {
	// Refresh returns the session's new Data, or nil when nothing
	// changed, and whether the session may go on.
	Refresh(ctx context.Context, s state.Session) (data []byte, err error)
	// Due reports whether s needs Refresh at now.
	Due(s state.Session, now time.Time) bool
}

// Options configure New. Store is required.
type Options struct {
	// Store holds the session records. Required.
	Store state.SessionStore
	// Binding checks a session of the users file against the user's
	// current standing (users.Store); nil accepts every local session,
	// which only tests want.
	Binding token.Binding
	// Roles returns the current roles of a user of the users file; nil
	// keeps the roles of the sign-in.
	Roles func(subject string) ([]string, bool)
	// Refresher keeps external providers' sessions alive; nil means none.
	Refresher Refresher
	// IdleTimeout ends a session unused this long; zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after its sign-in, however
	// active; zero means DefaultAbsoluteTimeout.
	AbsoluteTimeout time.Duration
	// CookieName names the cookie; empty means DefaultCookieName. A name
	// that starts with __Host- needs Secure.
	CookieName string
	// Insecure drops the Secure attribute (and the __Host- prefix rules
	// with it), for plain-HTTP development on a host other than
	// localhost only.
	Insecure bool
	// SkipOriginCheck turns off the CSRF check of cookie-authenticated
	// unsafe requests, for apps that do their own.
	SkipOriginCheck bool
	// Origin is the gateway's public origin (scheme://host[:port]);
	// empty derives it from each request (TLS or a trusted
	// X-Forwarded-Proto, and Host or a trusted X-Forwarded-Host).
	Origin string
	// Trusted are the proxies whose X-Forwarded-* headers are believed.
	Trusted clientip.Trusted
	// CacheTTL, when positive, keeps records read from the store this
	// long in process (for Redis): a session ended on another replica
	// ends here within CacheTTL. Zero reads the store on every request.
	CacheTTL time.Duration
	// StateTimeout bounds each store call; zero means DefaultStateTimeout.
	StateTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives audit lines; nil means none.
	Logger *zap.Logger
	// Registerer receives the metrics; nil records none.
	Registerer prometheus.Registerer
}

// Manager creates, checks and ends sessions. It is safe for concurrent
// use; create it with New.
type Manager struct {
	o       Options
	touch   time.Duration // how stale the idle expiry may grow before a write
	cache   *lru.Cache[*cached]
	log     *zap.Logger
	m       *metrics
	methods map[string]bool
}

// cached is a record read from the store, kept until exp.
type cached struct {
	s   state.Session
	exp time.Time
}

// New validates o and returns a Manager.
func New(o Options) (*Manager, error) {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("session: store is required"))
	}
	if o.IdleTimeout < 0 || o.AbsoluteTimeout < 0 || o.CacheTTL < 0 || o.StateTimeout < 0 {
		errs = append(errs, errors.New("session: timeouts must not be negative"))
	}
	o.IdleTimeout = cmpOr(o.IdleTimeout, DefaultIdleTimeout)
	o.AbsoluteTimeout = cmpOr(o.AbsoluteTimeout, DefaultAbsoluteTimeout)
	o.StateTimeout = cmpOr(o.StateTimeout, DefaultStateTimeout)
	if o.IdleTimeout > o.AbsoluteTimeout {
		errs = append(errs, fmt.Errorf("session: idle timeout %s is longer than the absolute timeout %s", o.IdleTimeout, o.AbsoluteTimeout))
	}
	if o.CookieName == "" {
		o.CookieName = DefaultCookieName
	}
	if !validCookieName(o.CookieName) {
		errs = append(errs, fmt.Errorf("session: cookie name %q is not a cookie token", o.CookieName))
	}
	if o.Insecure && strings.HasPrefix(o.CookieName, "__Host-") || o.Insecure && strings.HasPrefix(o.CookieName, "__Secure-") {
		errs = append(errs, fmt.Errorf("session: cookie name %q needs the Secure attribute; pick another name when secure is off", o.CookieName))
	}
	if o.Origin != "" {
		if err := checkOrigin(o.Origin); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	mg := &Manager{o: o, log: o.Logger}
	if mg.log == nil {
		mg.log = zap.NewNop()
	}
	// The idle expiry is written back at most once per touch interval: a
	// session is then idle-ended up to that much early, never late.
	mg.touch = min(o.IdleTimeout/20, time.Minute)
	if o.CacheTTL > 0 {
		mg.cache = lru.New[*cached](DefaultCacheSize)
	}
	m, err := newMetrics(o.Registerer, mg)
	if err != nil {
		return nil, err
	}
	mg.m = m
	return mg, nil
}

func cmpOr(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

// CookieName returns the session cookie's name.
func (mg *Manager) CookieName() string { return mg.o.CookieName }

// Secure reports whether cookies carry the Secure attribute.
func (mg *Manager) Secure() bool { return !mg.o.Insecure }

// AbsoluteTimeout returns the absolute timeout.
func (mg *Manager) AbsoluteTimeout() time.Duration { return mg.o.AbsoluteTimeout }

// IdleTimeout returns the idle timeout.
func (mg *Manager) IdleTimeout() time.Duration { return mg.o.IdleTimeout }

// Key returns the store key of a raw session id: its SHA-256 digest, so
// the store never holds an id a browser could present.
func Key(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// newID returns a fresh random session id.
func newID() (string, error) {
	b := make([]byte, idBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session: random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Start signs the browser in: it ends the session the request carries, if
// any (the id always changes at sign-in, so an id planted before the
// sign-in is worth nothing: session fixation), stores a new session for
// rec and sets its cookie. rec's times are filled in here. It returns the
// new session's key.
func (mg *Manager) Start(w http.ResponseWriter, r *http.Request, rec state.Session) (string, error) {
	if raw, ok := mg.cookie(r); ok {
		_, _ = mg.End(r.Context(), Key(raw), EndReplaced) // gone or ended: either is fine
	}
	now := mg.o.Now()
	rec.AuthTime = now
	rec.MaxExpires = now.Add(mg.o.AbsoluteTimeout)
	rec.Expires = now.Add(mg.o.IdleTimeout)
	raw, err := newID()
	if err != nil {
		return "", err
	}
	key := Key(raw)
	ctx, cancel := context.WithTimeout(r.Context(), mg.o.StateTimeout)
	defer cancel()
	if err := mg.o.Store.CreateSession(ctx, key, rec); err != nil {
		return "", err
	}
	mg.m.created.Inc()
	mg.audit("session started", key, rec.Subject, rec.Issuer, "", r)
	mg.SetCookie(w, raw, rec.MaxExpires)
	return key, nil
}

// SetCookie sets the session cookie. It is a persistent cookie ending at
// the session's absolute expiry, so a browser restart keeps the session
// (the server decides when it ends).
func (mg *Manager) SetCookie(w http.ResponseWriter, raw string, exp time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: mg.o.CookieName, Value: raw, Path: "/", Expires: exp.UTC(), MaxAge: max(1, int(exp.Sub(mg.o.Now())/time.Second)),
		Secure: !mg.o.Insecure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// ClearCookie removes the session cookie from the browser.
func (mg *Manager) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: mg.o.CookieName, Value: "", Path: "/", MaxAge: -1,
		Secure: !mg.o.Insecure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// cookie returns the request's session id, when it carries exactly one
// well-formed one. Two cookies of the name (one tossed in by a sibling
// domain, where the name has no __Host- prefix) are none.
func (mg *Manager) cookie(r *http.Request) (string, bool) {
	var raw string
	n := 0
	for _, c := range r.CookiesNamed(mg.o.CookieName) {
		raw = c.Value
		n++
	}
	if n != 1 || len(raw) != idLen {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return "", false
		}
	}
	return raw, true
}

// HasCookie reports whether r carries a session cookie at all.
func (mg *Manager) HasCookie(r *http.Request) bool {
	return len(r.CookiesNamed(mg.o.CookieName)) > 0
}

// Current returns the live session of r and its key. ok is false when r
// carries none (or one that ended); err is set when it cannot be checked.
// It applies every check Authenticate does except the CSRF check.
func (mg *Manager) Current(r *http.Request) (key string, s state.Session, ok bool, err error) {
	raw, present := mg.cookie(r)
	if !present {
		return "", state.Session{}, false, nil
	}
	key = Key(raw)
	s, ok, err = mg.check(r.Context(), key)
	return key, s, ok, err
}

// check returns the live session under key after the expiry, binding and
// refresh checks, touching it when due.
func (mg *Manager) check(ctx context.Context, key string) (state.Session, bool, error) {
	now := mg.o.Now()
	s, err := mg.load(ctx, key, now)
	if errors.Is(err, state.ErrNoSession) {
		if errors.Is(err, state.ErrSessionExpired) {
			mg.m.ended.WithLabelValues(EndExpired).Inc()
		}
		return state.Session{}, false, nil
	}
	if err != nil {
		return state.Session{}, false, fmt.Errorf("%w: %w", authn.ErrUnavailable, err)
	}
	if !s.Expires.After(now) || !s.MaxExpires.After(now) {
		mg.forget(key)
		mg.m.ended.WithLabelValues(EndExpired).Inc()
		return state.Session{}, false, nil
	}
	if s.Issuer == "" && mg.o.Binding != nil {
		if err := mg.bind(ctx, s); err != nil {
			if errors.Is(err, authn.ErrUnavailable) {
				return state.Session{}, false, err
			}
			// A password change, disable, delete or role removal ends the
			// session for good, as it ends the user's tokens.
			mg.log.Info("session ended: credentials changed", zap.String("subject", logsafe.String(s.Subject)), zap.String("error", err.Error()))
			_, _ = mg.End(ctx, key, EndCredentials)
			return state.Session{}, false, nil
		}
	}
	if s.Issuer != "" && mg.o.Refresher != nil && mg.o.Refresher.Due(s, now) {
		data, err := mg.o.Refresher.Refresh(ctx, s)
		if err != nil {
			mg.log.Warn("session ended: provider refresh failed", zap.String("subject", logsafe.String(s.Subject)),
				zap.String("issuer", logsafe.String(s.Issuer)), zap.String("error", logsafe.String(err.Error())))
			_, _ = mg.End(ctx, key, EndRefreshFailed)
			return state.Session{}, false, nil
		}
		if data != nil {
			sctx, cancel := context.WithTimeout(ctx, mg.o.StateTimeout)
			err := mg.o.Store.UpdateSession(sctx, key, data)
			cancel()
			if err != nil {
				return state.Session{}, false, fmt.Errorf("%w: %w", authn.ErrUnavailable, err)
			}
			s.Data = data
			mg.remember(key, s, now)
		}
	}
	if s.Expires.Sub(now) < mg.o.IdleTimeout-mg.touch {
		exp := now.Add(mg.o.IdleTimeout)
		sctx, cancel := context.WithTimeout(ctx, mg.o.StateTimeout)
		err := mg.o.Store.TouchSession(sctx, key, exp)
		cancel()
		switch {
		case errors.Is(err, state.ErrNoSession):
			mg.forget(key)
			return state.Session{}, false, nil
		case err != nil:
			// The session goes on until its recorded expiry; the next
			// request tries again.
			mg.log.Warn("session touch failed", zap.Error(err))
		default:
			s.Expires = earlier(exp, s.MaxExpires)
			mg.remember(key, s, now)
		}
	}
	return s, true, nil
}

// earlier returns the earlier of a and b.
func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// bind checks a local user's session like a token minted at its sign-in.
func (mg *Manager) bind(ctx context.Context, s state.Session) error {
	c := token.Claims{Roles: s.Roles, Ver: s.Ver, Type: token.TypeAccess}
	c.Subject = s.Subject
	c.IssuedAt = jwt.NewNumericDate(s.AuthTime)
	return mg.o.Binding.CheckBinding(ctx, &c)
}

// load reads a record through the cache.
func (mg *Manager) load(ctx context.Context, key string, now time.Time) (state.Session, error) {
	var digest [32]byte
	if mg.cache != nil {
		digest = sha256.Sum256([]byte(key))
		if c, res := mg.cache.Get(digest, now); res == lru.Hit {
			return c.s, nil
		}
	}
	sctx, cancel := context.WithTimeout(ctx, mg.o.StateTimeout)
	defer cancel()
	s, err := mg.o.Store.Session(sctx, key)
	if err != nil {
		return state.Session{}, err
	}
	mg.remember(key, s, now)
	return s, nil
}

// remember caches s, never past its expiry.
func (mg *Manager) remember(key string, s state.Session, now time.Time) {
	if mg.cache == nil {
		return
	}
	exp := earlier(now.Add(mg.o.CacheTTL), s.Expires)
	mg.cache.Put(sha256.Sum256([]byte(key)), &cached{s: s, exp: exp}, exp)
}

// forget drops key from the cache.
func (mg *Manager) forget(key string) {
	if mg.cache != nil {
		mg.cache.Remove(sha256.Sum256([]byte(key)))
	}
}

// End ends the session under key for reason and returns its record.
func (mg *Manager) End(ctx context.Context, key, reason string) (state.Session, error) {
	mg.forget(key)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mg.o.StateTimeout)
	defer cancel()
	s, err := mg.o.Store.EndSession(sctx, key)
	if err != nil {
		return state.Session{}, err
	}
	mg.m.ended.WithLabelValues(reason).Inc()
	mg.audit("session ended", key, s.Subject, s.Issuer, reason, nil)
	return s, nil
}

// EndAll ends every session of a subject, named by state.SubjectKey
// ("sign out everywhere", a provider's back-channel logout), and returns
// how many there were.
func (mg *Manager) EndAll(ctx context.Context, subject, reason string) (int, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*mg.o.StateTimeout)
	defer cancel()
	keys, err := mg.o.Store.EndSessions(sctx, subject)
	for _, k := range keys {
		mg.forget(k)
	}
	mg.m.ended.WithLabelValues(reason).Add(float64(len(keys)))
	if len(keys) > 0 {
		mg.log.Info("sessions ended", zap.String("event", "session_end"), zap.String("subject", logsafe.String(subject)),
			zap.String("reason", reason), zap.Int("sessions", len(keys)))
	}
	return len(keys), err
}

// audit writes one session event; the key is shortened to a reference
// that cannot be presented as a cookie (it is a digest of one).
func (mg *Manager) audit(msg, key, subject, issuer, reason string, r *http.Request) {
	fields := []zap.Field{zap.String("event", "session"), zap.String("subject", logsafe.String(subject)), zap.String("session_ref", key[:12])}
	if issuer != "" {
		fields = append(fields, zap.String("issuer", logsafe.String(issuer)))
	}
	if reason != "" {
		fields = append(fields, zap.String("reason", reason))
	}
	if r != nil {
		fields = append(fields, zap.String("client_ip", mg.o.Trusted.ClientIP(r).String()))
		if id := r.Header.Get("X-Request-Id"); id != "" {
			fields = append(fields, zap.String("request_id", logsafe.String(id)))
		}
	}
	mg.log.Info(msg, fields...)
}

// Authenticate implements authn.Authenticator for the session cookie. An
// absent, unknown, expired or ended session is no credential (ok=false):
// the cookie is sent by the browser on its own, and an old one is the
// normal way a session ends, so the caller is anonymous and a browser is
// sent to sign in again, as oauth2-proxy and Pomerium do. A store that
// cannot answer is an error (503), never anonymous.
func (mg *Manager) Authenticate(r *http.Request) (authn.Principal, bool, error) {
	raw, present := mg.cookie(r)
	if !present {
		return authn.Principal{}, false, nil
	}
	key := Key(raw)
	s, ok, err := mg.check(r.Context(), key)
	if err != nil || !ok {
		return authn.Principal{}, false, err
	}
	if !mg.o.SkipOriginCheck && !safeMethod(r.Method) && !mg.SameOrigin(r) {
		// The browser attaches the cookie to a cross-site form post too
		// (SameSite=Lax allows top-level POST navigations only in old
		// browsers' grace periods, and not every app's state change is a
		// POST): an unsafe method must prove it came from our origin.
		return authn.Principal{}, false, authn.ErrCrossSite
	}
	roles := s.Roles
	if s.Issuer == "" && mg.o.Roles != nil {
		// The binding check made sure the user still holds every role of
		// the sign-in; roles added since count at once.
		if cur, ok := mg.o.Roles(s.Subject); ok {
			roles = cur
		}
	}
	return authn.Principal{
		Subject: s.Subject, Roles: roles, Method: authn.MethodSession, Issuer: s.Issuer,
		Session: key, ExpiresAt: earlier(s.Expires, s.MaxExpires),
	}, true, nil
}

// safeMethod reports whether m is a method that must not change state
// (RFC 9110 §9.2.1), which the CSRF check lets pass.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// SameOrigin reports whether r came from the gateway's own origin: its
// Origin header names it, or, without Origin, the browser says
// Sec-Fetch-Site: same-origin. A request with neither is refused.
func (mg *Manager) SameOrigin(r *http.Request) bool {
	origin := r.Header.Values("Origin")
	if len(origin) == 1 && origin[0] != "null" {
		return strings.EqualFold(origin[0], mg.origin(r))
	}
	if len(origin) > 1 {
		return false
	}
	return len(origin) == 0 && r.Header.Get("Sec-Fetch-Site") == "same-origin"
}

// Origin returns the gateway's public origin as seen by r.
func (mg *Manager) Origin(r *http.Request) string { return mg.origin(r) }

func (mg *Manager) origin(r *http.Request) string {
	if mg.o.Origin != "" {
		return mg.o.Origin
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if mg.o.Trusted.PeerTrusted(r) {
		if v := r.Header.Get("X-Forwarded-Proto"); v == "http" || v == "https" {
			scheme = v
		}
		if v := r.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
	}
	return scheme + "://" + host
}

// checkOrigin validates a configured origin.
func checkOrigin(o string) error {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.ContainsAny(rest, "/?#@ ") {
		return fmt.Errorf("session: origin %q: want scheme://host[:port] without a path", o)
	}
	return nil
}

// validCookieName reports whether n is an RFC 6265 cookie name token.
func validCookieName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
