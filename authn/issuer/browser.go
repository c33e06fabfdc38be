package issuer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/session"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/logsafe"
)

// Browser endpoint paths below the prefix.
const (
	PathSignIn   = "/sign_in"
	PathSignOut  = "/sign_out"
	PathCallback = "/callback"
)

// DefaultCSRFCookie is the CSRF cookie's name with Secure cookies.
const DefaultCSRFCookie = "__Host-authgate_csrf"

// Sign-in outcomes: the closed label set of authgate_sign_ins_total.
const (
	signInSuccess     = "success"
	signInFailure     = "failure"
	signInRateLimited = "rate_limited"
	signInUnavailable = "unavailable"
	signInCSRF        = "csrf"
)

// Sign-in method labels.
const (
	methodPassword = "password"
	methodOIDC     = "oidc"
)

// Messages shown on the pages. Every failed password sign-in shows the
// same one, whatever the cause (user enumeration).
const (
	msgInvalid     = "Invalid username or password."
	msgMissing     = "Enter your username and password."
	msgLimited     = "Too many sign-in attempts. Wait a moment and try again."
	msgUnavailable = "Sign-in is unavailable right now. Try again in a moment."
	msgExpiredForm = "This sign-in form has expired. Reload the page and try again."
)

// Provider is an external identity provider offered on the sign-in page.
// Implementations are safe for concurrent use.
type Provider interface {
	// Name is the button label.
	Name() string
	// ID is the provider's path segment, unique among providers.
	ID() string
	// Start answers a browser that chose this provider: it redirects to
	// the provider, carrying rd (already checked) through the flow.
	Start(w http.ResponseWriter, r *http.Request, rd string)
}

// BrowserOptions configure NewBrowser. Sessions and CSRFKey are required.
type BrowserOptions struct {
	// Issuer, when set, offers the username and password form; its limits,
	// tarpit and answers are the API login's.
	Issuer *Issuer
	// Sessions keeps the sessions. Required.
	Sessions *session.Manager
	// Providers are the external identity providers, in button order.
	Providers []Provider
	// Callback, with providers, completes their flows at
	// <prefix>/callback.
	Callback http.Handler
	// Extra are more endpoints below the prefix (a provider's
	// back-channel logout), by path relative to it.
	Extra map[string]http.Handler
	// Prefix is auth.prefix; empty means /auth.
	Prefix string
	// Page customises the pages.
	Page Page
	// CSRFKey signs the forms' CSRF tokens; every replica needs the same
	// key. At least 32 bytes. Required.
	CSRFKey []byte
	// Trusted are the proxies whose X-Forwarded-For is believed.
	Trusted clientip.Trusted
	// MaxBodyBytes caps form bodies; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives the audit lines; nil means none.
	Logger *zap.Logger
	// Registerer receives the sign-in metrics; nil records none.
	Registerer prometheus.Registerer
}

// Browser serves the sign-in page, sign-out and (with providers) the
// authorization code callback. It is safe for concurrent use.
type Browser struct {
	o          BrowserOptions
	prefix     string
	pages      *pages
	csrfCookie string
	log        *zap.Logger
	signIns    *prometheus.CounterVec
	byID       map[string]Provider
}

// NewBrowser validates o and returns the browser endpoints.
func NewBrowser(o BrowserOptions) (*Browser, error) {
	var errs []error
	if o.Sessions == nil {
		errs = append(errs, errors.New("issuer: browser: sessions are required"))
	}
	if len(o.CSRFKey) < 32 {
		errs = append(errs, errors.New("issuer: browser: csrf key of at least 32 bytes is required"))
	}
	if o.Issuer == nil && len(o.Providers) == 0 {
		errs = append(errs, errors.New("issuer: browser: sign-in needs a users file or an identity provider with a login block"))
	}
	prefix := strings.TrimRight(o.Prefix, "/")
	if prefix == "" {
		prefix = "/auth"
	}
	pg, err := newPages(o.Page, prefix+PathSignIn)
	if err != nil {
		errs = append(errs, err)
	}
	b := &Browser{o: o, prefix: prefix, pages: pg, log: o.Logger, byID: map[string]Provider{}}
	for _, p := range o.Providers {
		if _, dup := b.byID[p.ID()]; dup {
			errs = append(errs, fmt.Errorf("issuer: browser: provider id %q used twice", p.ID()))
		}
		b.byID[p.ID()] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b.csrfCookie = DefaultCSRFCookie
	if !o.Sessions.Secure() {
		b.csrfCookie = "authgate_csrf"
	}
	if b.o.MaxBodyBytes == 0 {
		b.o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if b.log == nil {
		b.log = zap.NewNop()
	}
	b.signIns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_sign_ins_total",
		Help: "Browser sign-ins by method (password, oidc) and outcome (success, failure, rate_limited, unavailable, csrf).",
	}, []string{"method", "outcome"})
	for _, m := range []string{methodPassword, methodOIDC} {
		for _, oc := range []string{signInSuccess, signInFailure, signInRateLimited, signInUnavailable, signInCSRF} {
			b.signIns.WithLabelValues(m, oc)
		}
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(b.signIns); err != nil {
			return nil, fmt.Errorf("issuer: browser: register metrics: %w", err)
		}
	}
	return b, nil
}

// Handlers returns the browser endpoints keyed by their exact paths, and
// one handler for the paths below prefix+"/sign_in/" (a provider's
// button).
func (b *Browser) Handlers() map[string]http.Handler {
	h := map[string]http.Handler{
		b.prefix + PathSignIn:  http.HandlerFunc(b.serveSignIn),
		b.prefix + PathSignOut: http.HandlerFunc(b.serveSignOut),
	}
	for id, p := range b.byID {
		h[b.prefix+PathSignIn+"/"+id] = b.startHandler(p)
	}
	if b.o.Callback != nil {
		h[b.prefix+PathCallback] = b.o.Callback
	}
	for p, hd := range b.o.Extra {
		h[b.prefix+p] = hd
	}
	return h
}

// Cookies returns the names of the cookies the browser endpoints set.
func (b *Browser) Cookies() []string { return []string{b.o.Sessions.CookieName(), b.csrfCookie} }

// SignInPath is the sign-in page's path.
func (b *Browser) SignInPath() string { return b.prefix + PathSignIn }

// requestID returns the request id the gateway set on r.
func requestID(r *http.Request) string { return logsafe.String(r.Header.Get("X-Request-Id")) }

// auditSignIn writes one sign-in event and counts it.
func (b *Browser) auditSignIn(r *http.Request, method, name, outcome, reason string) {
	b.signIns.WithLabelValues(method, outcome).Inc()
	fields := []zap.Field{
		zap.String("event", "sign_in"), zap.String("method", method), zap.String("username", logsafe.String(name)),
		zap.String("client_ip", b.o.Trusted.ClientIP(r).String()), zap.String("outcome", outcome), zap.String("request_id", requestID(r)),
	}
	if reason != "" {
		fields = append(fields, zap.String("reason", reason))
	}
	lvl := zap.InfoLevel
	if outcome != signInSuccess {
		lvl = zap.WarnLevel
	}
	b.log.Log(lvl, "browser sign-in", fields...)
}

// csrfCookieValue returns the browser's CSRF cookie, setting a new one
// when it has none.
func (b *Browser) csrfCookieValue(w http.ResponseWriter, r *http.Request) string {
	if cs := r.CookiesNamed(b.csrfCookie); len(cs) == 1 && len(cs[0].Value) == 43 {
		return cs[0].Value
	}
	v := make([]byte, 32)
	_, _ = rand.Read(v)
	val := base64.RawURLEncoding.EncodeToString(v)
	// Strict: the token is only needed on the gateway's own forms.
	http.SetCookie(w, &http.Cookie{Name: b.csrfCookie, Value: val, Path: "/", HttpOnly: true,
		Secure: b.o.Sessions.Secure(), SameSite: http.SameSiteStrictMode})
	return val
}

// csrfToken is the form token for the cookie value and the session key
// (empty before sign-in): an HMAC under the gateway's key, so a token is
// worth nothing without the browser's own cookie (signed double submit,
// OWASP CSRF Prevention Cheat Sheet), and a sign-out token only for its
// session.
func (b *Browser) csrfToken(cookie, sessionKey string) string {
	m := hmac.New(sha256.New, b.o.CSRFKey)
	m.Write([]byte("authgate form\x00" + cookie + "\x00" + sessionKey))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether the form post r carries a valid token for
// sessionKey, and did not come from another site.
func (b *Browser) checkCSRF(r *http.Request, token, sessionKey string) bool {
	cs := r.CookiesNamed(b.csrfCookie)
	if len(cs) != 1 || token == "" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" && !strings.EqualFold(o, b.o.Sessions.Origin(r)) {
		return false
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s == "cross-site" || s == "same-site" {
		return false
	}
	return hmac.Equal([]byte(token), []byte(b.csrfToken(cs[0].Value, sessionKey)))
}

// readForm reads a POSTed form body: the content type, the size cap and
// one value per parameter, as the token endpoints do.
func (b *Browser) readForm(w http.ResponseWriter, r *http.Request) (params, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, b.o.MaxBodyBytes))
	if err != nil {
		return nil, false
	}
	p, oe := parseForm(body)
	return p, oe == nil
}

// redirectTarget returns the checked rd of a request, or "/".
func (b *Browser) redirectTarget(r *http.Request, rd string) string {
	if rd == "" {
		return "/"
	}
	if safe, ok := SafeRedirect(rd, b.prefix); ok {
		return safe
	}
	b.log.Warn("sign-in redirect target refused", zap.String("event", "sign_in"), zap.String("reason", "bad_redirect"),
		zap.String("rd", logsafe.String(rd)), zap.String("request_id", requestID(r)))
	return "/"
}

// signInPage renders the sign-in page.
func (b *Browser) signInPage(w http.ResponseWriter, r *http.Request, status int, rd, username, msg string) {
	d := PageData{Kind: KindSignIn, Action: b.prefix + PathSignIn, RD: rd, Local: b.o.Issuer != nil, Username: username, Error: msg}
	if d.Local {
		d.CSRF = b.csrfToken(b.csrfCookieValue(w, r), "")
	}
	for _, p := range b.o.Providers {
		d.Providers = append(d.Providers, ProviderLink{Name: p.Name(), URL: b.prefix + PathSignIn + "/" + p.ID() + "?rd=" + urlQueryEscape(rd)})
	}
	b.pages.render(w, r, status, d)
}

func (b *Browser) serveSignIn(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		rd := b.redirectTarget(r, r.URL.Query().Get("rd"))
		if _, _, ok, _ := b.o.Sessions.Current(r); ok {
			// Already signed in: nothing to ask.
			seeOther(w, rd)
			return
		}
		if b.o.Issuer == nil && len(b.o.Providers) == 1 && r.Method == http.MethodGet {
			// One provider and no form: the page would hold one button.
			b.o.Providers[0].Start(w, r, rd)
			return
		}
		b.signInPage(w, r, http.StatusOK, rd, "", "")
	case http.MethodPost:
		b.postSignIn(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		b.pages.render(w, r, http.StatusMethodNotAllowed, PageData{Kind: KindError, Error: "This page only takes GET and POST.", RetryURL: b.prefix + PathSignIn})
	}
}

// postSignIn checks a username and password exactly as the API login
// does and starts a session.
func (b *Browser) postSignIn(w http.ResponseWriter, r *http.Request) {
	if b.o.Issuer == nil {
		b.pages.render(w, r, http.StatusNotFound, PageData{Kind: KindError, Error: "Sign in with your identity provider.", RetryURL: b.prefix + PathSignIn})
		return
	}
	is := b.o.Issuer
	p, ok := b.readForm(w, r)
	if !ok {
		b.auditSignIn(r, methodPassword, "", signInFailure, reasonInvalidRequest)
		b.signInPage(w, r, http.StatusBadRequest, "/", "", msgMissing)
		return
	}
	rd := b.redirectTarget(r, p["rd"])
	name, password := users.Normalize(p["username"]), p["password"]
	if !b.checkCSRF(r, p["csrf"], "") {
		b.auditSignIn(r, methodPassword, name, signInCSRF, "csrf")
		b.signInPage(w, r, http.StatusForbidden, rd, "", msgExpiredForm)
		return
	}
	if name == "" || password == "" {
		b.auditSignIn(r, methodPassword, name, signInFailure, reasonInvalidRequest)
		b.signInPage(w, r, http.StatusBadRequest, rd, name, msgMissing)
		return
	}
	ip := is.trusted.ClientIP(r)
	u, e, outcome, reason := is.checkPassword(r.Context(), name, password, ip)
	if e != nil {
		status, msg, label := e.Code, msgInvalid, signInFailure
		switch outcome {
		case outcomeRateLimited:
			msg, label = msgLimited, signInRateLimited
		case outcomeUnavailable:
			msg, label = msgUnavailable, signInUnavailable
		default:
			status = http.StatusUnauthorized
		}
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
		}
		b.auditSignIn(r, methodPassword, name, label, reason)
		b.signInPage(w, r, status, rd, name, msg)
		return
	}
	if _, err := b.o.Sessions.Start(w, r, state.Session{Subject: u.Username, Roles: u.Roles, Ver: u.Ver()}); err != nil {
		b.auditSignIn(r, methodPassword, name, signInUnavailable, reasonStateUnavailable)
		w.Header().Set("Retry-After", strconv.Itoa(int(retryStateUnavailable/time.Second)))
		b.signInPage(w, r, http.StatusServiceUnavailable, rd, name, msgUnavailable)
		return
	}
	b.auditSignIn(r, methodPassword, name, signInSuccess, "")
	seeOther(w, rd)
}

// seeOther answers 303 to a checked same-origin target.
func seeOther(w http.ResponseWriter, target string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Location", target)
	w.WriteHeader(http.StatusSeeOther)
}

func (b *Browser) serveSignOut(w http.ResponseWriter, r *http.Request) {
	key, s, ok, err := b.o.Sessions.Current(r)
	if err != nil {
		b.pages.render(w, r, http.StatusServiceUnavailable, PageData{Kind: KindError, Error: msgUnavailable, RetryURL: b.prefix + PathSignOut})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if !ok {
			b.o.Sessions.ClearCookie(w)
			b.pages.render(w, r, http.StatusOK, PageData{Kind: KindSignedOut})
			return
		}
		b.pages.render(w, r, http.StatusOK, PageData{Kind: KindSignOut, Action: b.prefix + PathSignOut,
			CSRF: b.csrfToken(b.csrfCookieValue(w, r), key), Subject: s.Subject})
	case http.MethodPost:
		p, formOK := b.readForm(w, r)
		if !formOK {
			b.pages.render(w, r, http.StatusBadRequest, PageData{Kind: KindError, Error: "The sign-out form was malformed.", RetryURL: b.prefix + PathSignOut})
			return
		}
		if !ok {
			b.o.Sessions.ClearCookie(w)
			b.pages.render(w, r, http.StatusOK, PageData{Kind: KindSignedOut})
			return
		}
		// A sign-out is a state change another site must not trigger
		// (logout CSRF): the token is bound to this very session.
		if !b.checkCSRF(r, p["csrf"], key) {
			b.log.Warn("sign-out refused", zap.String("event", "sign_out"), zap.String("reason", "csrf"), zap.String("request_id", requestID(r)))
			b.pages.render(w, r, http.StatusForbidden, PageData{Kind: KindError, Error: "This sign-out form has expired. Reload the page and try again.", RetryURL: b.prefix + PathSignOut})
			return
		}
		reason := session.EndSignOut
		var endErr error
		if p["scope"] == "everywhere" {
			reason = session.EndSignOutEverywhere
			_, endErr = b.o.Sessions.EndAll(r.Context(), state.SubjectKey(s.Issuer, s.Subject), reason)
		} else if _, endErr = b.o.Sessions.End(r.Context(), key, reason); errors.Is(endErr, state.ErrNoSession) {
			endErr = nil
		}
		if endErr != nil {
			b.pages.render(w, r, http.StatusServiceUnavailable, PageData{Kind: KindError, Error: msgUnavailable, RetryURL: b.prefix + PathSignOut})
			return
		}
		b.o.Sessions.ClearCookie(w)
		b.log.Info("browser sign-out", zap.String("event", "sign_out"), zap.String("subject", logsafe.String(s.Subject)),
			zap.String("reason", reason), zap.String("request_id", requestID(r)), zap.String("client_ip", b.o.Trusted.ClientIP(r).String()))
		if lo, ok := b.byIssuer(s.Issuer); ok {
			lo.Logout(w, r, s)
			return
		}
		b.pages.render(w, r, http.StatusOK, PageData{Kind: KindSignedOut})
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		b.pages.render(w, r, http.StatusMethodNotAllowed, PageData{Kind: KindError, Error: "This page only takes GET and POST.", RetryURL: b.prefix + PathSignOut})
	}
}

// LogoutProvider is a provider that signs the browser out at the provider
// too (OpenID Connect RP-initiated logout).
type LogoutProvider interface {
	// Issuer is the provider's issuer.
	Issuer() string
	// Logout sends the browser to the provider's end-session endpoint
	// for the ended session s, or renders the signed-out page.
	Logout(w http.ResponseWriter, r *http.Request, s state.Session)
}

// byIssuer returns the provider of an issuer that does RP-initiated
// logout.
func (b *Browser) byIssuer(iss string) (LogoutProvider, bool) {
	if iss == "" {
		return nil, false
	}
	for _, p := range b.o.Providers {
		if lp, ok := p.(LogoutProvider); ok && lp.Issuer() == iss {
			return lp, true
		}
	}
	return nil, false
}

// startHandler answers a provider's button.
func (b *Browser) startHandler(p Provider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			b.pages.render(w, r, http.StatusMethodNotAllowed, PageData{Kind: KindError, Error: "This page only takes GET.", RetryURL: b.prefix + PathSignIn})
			return
		}
		p.Start(w, r, b.redirectTarget(r, r.URL.Query().Get("rd")))
	})
}

// ErrorPage renders a sign-in error with a "try again" link; providers
// use it so every failure looks the same.
func (b *Browser) ErrorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	b.pages.render(w, r, status, PageData{Kind: KindError, Error: msg, RetryURL: b.prefix + PathSignIn})
}

// SignedOutPage renders the signed-out page; with next, it sends the
// browser on to next (the provider's end-session endpoint).
func (b *Browser) SignedOutPage(w http.ResponseWriter, r *http.Request, next string) {
	b.pages.render(w, r, http.StatusOK, PageData{Kind: KindSignedOut, Continue: next})
}

// CountSignIn counts and audits a provider sign-in outcome.
func (b *Browser) CountSignIn(r *http.Request, subject, outcome, reason string) {
	b.auditSignIn(r, methodOIDC, subject, outcome, reason)
}

// urlQueryEscape escapes s for a query value.
func urlQueryEscape(s string) string { return url.QueryEscape(s) }
