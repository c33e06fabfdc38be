package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/issuer"
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
	mg, err := session.New(session.Options{
		Store: a.state, Binding: a.users,
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
	b, err := issuer.NewBrowser(issuer.BrowserOptions{
		Issuer: a.issuer, Sessions: mg, Prefix: cfg.Auth.Prefix, Page: sc.Page, CSRFKey: mac.Sum(nil),
		Trusted: trusted, MaxBodyBytes: cfg.Auth.MaxBodyBytes, Logger: a.log.With(zap.String("component", "browser")), Registerer: a.reg,
	})
	if err != nil {
		return browserParts{}, err
	}
	return browserParts{
		sessions: mg, handlers: b.Handlers(), cookies: b.Cookies(),
		signIn: &proxy.SignIn{Path: b.SignInPath(), Default: sc.OnUnauthenticated == "redirect"},
	}, nil
}
