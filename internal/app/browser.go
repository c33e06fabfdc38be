package app

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/oidc"
	"github.com/authgate/authgate/authn/session"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/proxy"
)

// browserParts are what browser sign-in adds to the gateway.
type browserParts struct {
	sessions *session.Manager
	handlers map[string]http.Handler
	signIn   *proxy.SignIn
	cookies  []string
}

// newBrowser builds the session manager and the sign-in endpoints when
// sessions.enabled is set; otherwise it returns the zero parts.
func (a *App) newBrowser(cfg *config.Config, sec config.Secrets, trusted clientip.Trusted, d Deps) (browserParts, error) {
	sc := cfg.Sessions
	if !sc.Enabled {
		return browserParts{}, nil
	}
	if !sc.Secure {
		a.log.Warn("SESSION COOKIES ARE NOT SECURE: sessions.secure is false, so the session cookie also travels over plain HTTP " +
			"where anyone on the path can copy it. Use this only for local development on plain HTTP; browsers treat " +
			"http://localhost and 127.0.0.1 as secure, so even there secure: true works.")
	}
	cacheTTL := sc.CacheTTL
	if _, shared := a.state.(*state.Redis); shared && cacheTTL == 0 {
		// With Redis, a short cache saves a round trip per request; a
		// session ended on another replica ends here within it.
		cacheTTL = min(cfg.ReloadInterval, time.Second)
	}
	rp, err := a.newRP(cfg, sec, d)
	if err != nil {
		return browserParts{}, err
	}
	var refresher session.Refresher
	if rp != nil {
		refresher = rp
	}
	mg, err := session.New(session.Options{
		Refresher: refresher,
		Store:     a.state, Binding: a.users,
		Roles: func(sub string) ([]string, bool) {
			u, ok := a.users.Load().Lookup(sub)
			if !ok {
				return nil, false
			}
			return u.Roles, true
		},
		IdleTimeout: sc.IdleTimeout, AbsoluteTimeout: sc.AbsoluteTimeout,
		CookieName: sc.SessionCookieName(), Insecure: !sc.Secure, SkipOriginCheck: !sc.CheckOrigin,
		Origin: sc.ExternalOrigin(), Trusted: trusted, CacheTTL: cacheTTL, StateTimeout: cfg.Auth.StateTimeout,
		Now: d.Now, Logger: a.log.With(zap.String("component", "session")), Registerer: a.reg,
	})
	if err != nil {
		return browserParts{}, err
	}
	// Every replica derives the same CSRF key from the signing secret.
	mac := hmac.New(sha256.New, sec.JWT)
	mac.Write([]byte("authgate browser form csrf v1"))
	bo := issuer.BrowserOptions{
		Issuer: a.issuer, Sessions: mg, Prefix: cfg.Auth.Prefix, Page: sc.Page, CSRFKey: mac.Sum(nil),
		Trusted: trusted, MaxBodyBytes: cfg.Auth.MaxBodyBytes, Logger: a.log.With(zap.String("component", "browser")), Registerer: a.reg,
	}
	if cfg.UsersFile == "" {
		bo.Issuer = nil
	}
	var cookies []string
	if rp != nil {
		bo.Callback = http.HandlerFunc(rp.Callback)
		bo.Extra = map[string]http.Handler{}
		for _, p := range rp.Providers() {
			bo.Providers = append(bo.Providers, p)
			if p.Backchannel() {
				bo.Extra["/backchannel_logout/"+p.ID()] = rp.BackchannelHandler(p)
			}
		}
		cookies = append(cookies, rp.FlowCookie())
	}
	b, err := issuer.NewBrowser(bo)
	if err != nil {
		return browserParts{}, err
	}
	if rp != nil {
		rp.Attach(mg, b)
	}
	return browserParts{
		sessions: mg, handlers: b.Handlers(), cookies: append(b.Cookies(), cookies...),
		signIn: &proxy.SignIn{Path: b.SignInPath(), Default: sc.OnUnauthenticated == "redirect"},
	}, nil
}

// newRP builds the relying party of the issuers with a login block, or
// returns nil when there is none.
func (a *App) newRP(cfg *config.Config, sec config.Secrets, d Deps) (*oidc.RP, error) {
	var pcs []oidc.ProviderConfig
	base := strings.TrimSuffix(cfg.Sessions.ExternalURL, "/") + cfg.Auth.Prefix
	for _, is := range cfg.Issuers {
		l := is.Login
		if l == nil {
			continue
		}
		pc := oidc.ProviderConfig{Issuer: is.Issuer, Login: *l, ClientSecret: sec.ClientSecrets[l.ID],
			RedirectURL: cmp.Or(l.RedirectURL, base+issuer.PathCallback), PostLogoutURL: cmp.Or(l.PostLogoutRedirectURL, base+issuer.PathSignOut)}
		if l.PrivateKeyFile != "" {
			k, err := oidc.LoadPrivateKey(l.PrivateKeyFile)
			if err != nil {
				return nil, err
			}
			pc.PrivateKey, pc.ClientSecret = k, ""
		}
		pcs = append(pcs, pc)
	}
	if len(pcs) == 0 {
		return nil, nil
	}
	return oidc.New(oidc.Options{
		Providers: pcs, Keys: a.external, Store: a.state, Insecure: !cfg.Sessions.Secure, StateTimeout: cfg.Auth.StateTimeout,
		Client: oidcClient(cfg), Now: d.Now, Logger: a.log.With(zap.String("component", "oidc")), Registerer: a.reg,
	})
}

// oidcClient is the HTTP client for the providers' discovery and token
// endpoints: a transport of its own, and redirects are never followed (a
// redirect would carry the code or the client secret elsewhere).
func oidcClient(cfg *config.Config) *http.Client {
	c := &http.Client{Timeout: max(cfg.JWKS.FetchTimeout, oidc.DefaultTimeout),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		c.Transport = t.Clone()
	}
	return c
}
