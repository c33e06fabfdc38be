// Package oidc signs browsers in through external OpenID Providers: the
// authorization code flow with PKCE (S256, always), following RFC 9700 and
// OpenID Connect Core. The flow's state, nonce and PKCE verifier live in a
// short-lived, single-use record in the state store, bound to the browser
// by a cookie; the redirect URI is exact; the authorization response's iss
// is checked (RFC 9207) where the provider supports it; the ID token is
// verified with the issuer's JWKS (signature, iss, aud, azp, exp, iat,
// nonce). The provider's tokens stay server side in the session; the
// access token is refreshed before it expires, and a failed refresh ends
// the session. Sign-out can continue at the provider (RP-initiated
// logout), and the provider can end sessions by back-channel logout.
package oidc

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/session"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/internal/logsafe"
)

// Defaults of Options.
const (
	// DefaultFlowTTL bounds how long a browser may take at the provider.
	DefaultFlowTTL = 10 * time.Minute
	// DefaultTimeout bounds each call to a provider.
	DefaultTimeout = 10 * time.Second
)

// Failure reasons: the closed label set of authgate_oidc_failures_total
// and the audit "reason" field.
const (
	ReasonUnknownState     = "unknown_state"     // tampered, expired or replayed state
	ReasonFlowCookie       = "flow_cookie"       // the flow was started in another browser (login CSRF)
	ReasonProviderError    = "provider_error"    // the provider answered error= (denied consent, ...)
	ReasonIssuerMismatch   = "issuer_mismatch"   // RFC 9207 iss does not match (mix-up)
	ReasonNoCode           = "no_code"           // no code in the response
	ReasonTokenExchange    = "token_exchange"    // the token endpoint refused the code
	ReasonIDToken          = "id_token_invalid"  // signature, iss, aud, exp, iat
	ReasonNonce            = "nonce_mismatch"    // the ID token's nonce is not the flow's
	ReasonAZP              = "azp_mismatch"      // azp missing or not the client
	ReasonDiscovery        = "discovery"         // the provider's metadata cannot be had
	ReasonUnavailable      = "state_unavailable" // the state store did not answer
	ReasonRefresh          = "refresh_failed"    // a refresh was refused
	ReasonLogoutToken      = "logout_token_invalid"
	ReasonLogoutTokenReuse = "logout_token_replayed"
)

var failureReasons = []string{ReasonUnknownState, ReasonFlowCookie, ReasonProviderError, ReasonIssuerMismatch, ReasonNoCode,
	ReasonTokenExchange, ReasonIDToken, ReasonNonce, ReasonAZP, ReasonDiscovery, ReasonUnavailable, ReasonRefresh,
	ReasonLogoutToken, ReasonLogoutTokenReuse}

// ProviderConfig is one provider with its resolved secrets.
type ProviderConfig struct {
	// Issuer is the exact issuer; its keys come from Options.Keys.
	Issuer string
	// Login is the client registration (jwks.LoginConfig).
	Login jwks.LoginConfig
	// ClientSecret authenticates the client (client_secret_basic) unless
	// PrivateKey is set.
	ClientSecret string
	// PrivateKey signs private_key_jwt client assertions (RSA or ECDSA).
	PrivateKey crypto.Signer
	// RedirectURL and PostLogoutURL are the resolved registered URIs.
	RedirectURL, PostLogoutURL string
}

// Pages renders the browser pages; issuer.Browser is one.
type Pages interface {
	// ErrorPage renders a sign-in error with a "try again" link.
	ErrorPage(w http.ResponseWriter, r *http.Request, status int, msg string)
	// SignedOutPage renders the signed-out page, sending the browser on
	// to next when it is set.
	SignedOutPage(w http.ResponseWriter, r *http.Request, next string)
	// CountSignIn counts and audits a provider sign-in outcome.
	CountSignIn(r *http.Request, subject, outcome, reason string)
}

// Options configure New. Providers, Keys and Store are required.
type Options struct {
	// Providers are the providers with a login block, in button order.
	Providers []ProviderConfig
	// Keys verifies ID and logout tokens with each issuer's JWKS.
	Keys *jwks.Set
	// Store keeps the flows' single-use records.
	Store state.SessionStore
	// Client calls the providers; nil means a client of its own.
	Client *http.Client
	// Insecure drops Secure from the flow cookie (sessions.secure: false).
	Insecure bool
	// FlowTTL bounds a flow; zero means DefaultFlowTTL.
	FlowTTL time.Duration
	// StateTimeout bounds each store call; zero means 500ms.
	StateTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives every failure with its reason; nil means none.
	Logger *zap.Logger
	// Registerer receives authgate_oidc_failures_total.
	Registerer prometheus.Registerer
}

// RP is the gateway as relying party of every configured provider. It is
// safe for concurrent use. Create it with New and complete it with Attach.
type RP struct {
	o         Options
	providers []*Provider
	byID      map[string]*Provider
	log       *zap.Logger
	failures  *prometheus.CounterVec
	flowName  string
	refreshes singleflight.Group

	mu       sync.RWMutex
	sessions *session.Manager
	pages    Pages
}

// New validates o and returns the relying party. It does no network I/O:
// each provider's metadata is fetched on first use.
func New(o Options) (*RP, error) {
	var errs []error
	if o.Keys == nil || o.Store == nil || len(o.Providers) == 0 {
		errs = append(errs, errors.New("oidc: keys, store and at least one provider are required"))
	}
	if o.FlowTTL == 0 {
		o.FlowTTL = DefaultFlowTTL
	}
	if o.StateTimeout == 0 {
		o.StateTimeout = 500 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		var tr http.RoundTripper
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			tr = t.Clone()
		}
		o.Client = &http.Client{Timeout: DefaultTimeout, Transport: tr,
			// A provider's endpoints answer directly; following a redirect
			// would send the code or a client secret somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	rp := &RP{o: o, byID: map[string]*Provider{}, log: o.Logger, flowName: "__Host-authgate_flow"}
	if o.Insecure {
		rp.flowName = "authgate_flow"
	}
	if rp.log == nil {
		rp.log = zap.NewNop()
	}
	for _, pc := range o.Providers {
		p, err := newProvider(rp, pc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := rp.byID[p.id]; dup {
			errs = append(errs, fmt.Errorf("oidc: provider id %q used twice", p.id))
		}
		rp.byID[p.id] = p
		rp.providers = append(rp.providers, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	rp.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_oidc_failures_total",
		Help: "Failed steps of provider sign-ins, refreshes and back-channel logouts, by provider id (unknown when no flow names one) and reason.",
	}, []string{"provider", "reason"})
	for _, p := range rp.providers {
		for _, r := range failureReasons {
			rp.failures.WithLabelValues(p.id, r)
		}
	}
	// A callback whose state names no flow names no provider either.
	rp.failures.WithLabelValues("unknown", ReasonUnknownState)
	rp.failures.WithLabelValues("unknown", ReasonUnavailable)
	if o.Registerer != nil {
		if err := o.Registerer.Register(rp.failures); err != nil {
			return nil, fmt.Errorf("oidc: register metrics: %w", err)
		}
	}
	return rp, nil
}

// Attach gives the relying party the session manager and the pages,
// which are built after it (the manager refreshes through it).
func (rp *RP) Attach(mg *session.Manager, pages Pages) {
	rp.mu.Lock()
	rp.sessions, rp.pages = mg, pages
	rp.mu.Unlock()
}

func (rp *RP) parts() (*session.Manager, Pages) {
	rp.mu.RLock()
	defer rp.mu.RUnlock()
	return rp.sessions, rp.pages
}

// Providers returns the providers in configuration order.
func (rp *RP) Providers() []*Provider { return rp.providers }

// FlowCookie is the name of the cookie that binds a flow to its browser.
func (rp *RP) FlowCookie() string { return rp.flowName }

// fail logs and counts a failure and renders the error page.
func (rp *RP) fail(w http.ResponseWriter, r *http.Request, p *Provider, reason string, status int, msg string, err error) {
	id := "unknown"
	if p != nil {
		id = p.id
	}
	rp.failures.WithLabelValues(id, reason).Inc()
	fields := []zap.Field{zap.String("event", "oidc"), zap.String("provider", id), zap.String("reason", reason),
		zap.String("request_id", logsafe.String(r.Header.Get("X-Request-Id")))}
	if err != nil {
		fields = append(fields, zap.String("error", logsafe.String(err.Error())))
	}
	rp.log.Warn("provider sign-in failed", fields...)
	if _, pages := rp.parts(); pages != nil {
		pages.CountSignIn(r, "", "failure", reason)
		pages.ErrorPage(w, r, status, msg)
	}
}

// randomToken returns n random bytes, base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails (it aborts the program instead).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// digest returns a hex SHA-256 of the parts, for store keys.
func digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// flow is the single-use record of one authorization request.
type flow struct {
	Provider string `json:"p"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	RD       string `json:"rd"`
	Binding  string `json:"b"` // digest of the flow cookie
}

// tokens are what a session keeps of the provider's token response.
type tokens struct {
	Provider string    `json:"p"`
	IDToken  string    `json:"id"`
	Access   string    `json:"at,omitempty"`
	Refresh  string    `json:"rt,omitempty"`
	Expiry   time.Time `json:"exp,omitzero"`
	Lifetime int64     `json:"life,omitempty"` // seconds, of the last access token
	SID      string    `json:"sid,omitempty"`
}

func decodeTokens(b []byte) (tokens, bool) {
	var t tokens
	if err := json.Unmarshal(b, &t); err != nil {
		return tokens{}, false
	}
	return t, true
}

// Callback handles the authorization response at the redirect URI.
func (rp *RP) Callback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		rp.fail(w, r, nil, ReasonUnknownState, http.StatusMethodNotAllowed, "This page only takes GET.", nil)
		return
	}
	q := r.URL.Query()
	st := q.Get("state")
	if st == "" || len(st) > 256 || len(q["state"]) != 1 {
		rp.fail(w, r, nil, ReasonUnknownState, http.StatusBadRequest, msgExpired, nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), rp.o.StateTimeout)
	raw, err := rp.o.Store.TakeOnce(ctx, "oidc-flow:"+digest(st))
	cancel()
	if errors.Is(err, state.ErrNoSession) {
		// Tampered, expired or already used (a replayed response): the
		// record is single use, so a second callback with the same state
		// and code finds nothing.
		rp.fail(w, r, nil, ReasonUnknownState, http.StatusBadRequest, msgExpired, nil)
		return
	}
	if err != nil {
		rp.fail(w, r, nil, ReasonUnavailable, http.StatusServiceUnavailable, msgUnavailable, err)
		return
	}
	var f flow
	if err := json.Unmarshal(raw, &f); err != nil {
		rp.fail(w, r, nil, ReasonUnknownState, http.StatusBadRequest, msgExpired, err)
		return
	}
	p := rp.byID[f.Provider]
	if p == nil {
		rp.fail(w, r, nil, ReasonUnknownState, http.StatusBadRequest, msgExpired, nil)
		return
	}
	p.callback(w, r, q, f)
}

// Messages of the error page. Nothing the provider sent is shown but a
// provider error code from a closed character set.
const (
	msgExpired     = "This sign-in link has expired or was already used. Start again."
	msgUnavailable = "Sign-in is unavailable right now. Try again in a moment."
	msgFailed      = "The sign-in could not be completed. Try again."
)

// errorCode returns a provider error code fit to show: RFC 6749 codes
// are of [a-z_]; anything else is not reflected.
func errorCode(s string) string {
	if s == "" || len(s) > 64 {
		return "unknown_error"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || c == '_') {
			return "unknown_error"
		}
	}
	return s
}

// BackchannelHandler answers OpenID Connect Back-Channel Logout requests
// at <prefix>/backchannel_logout/<id>, for the providers that enable it.
func (rp *RP) BackchannelHandler(p *Provider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.backchannel(w, r) })
}

// writeBackchannel answers a back-channel logout request (§2.8).
func writeBackchannel(w http.ResponseWriter, status int, code string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if code == "" {
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}

// checkEndpoint reports whether raw is an endpoint the gateway may call:
// https, or http on loopback.
func checkEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("not an absolute URL")
	}
	if u.Scheme == "https" {
		return nil
	}
	h := u.Hostname()
	if u.Scheme == "http" && (h == "localhost" || h == "127.0.0.1" || h == "::1" || strings.HasPrefix(h, "127.")) {
		return nil
	}
	return errors.New("not https")
}
