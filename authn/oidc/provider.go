package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"

	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/session"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/internal/logsafe"
)

// metadata is what the gateway uses of a provider's discovery document.
type metadata struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	EndSessionEndpoint    string   `json:"end_session_endpoint"`
	ISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
}

// metadataTTL is how long fetched metadata is used.
const metadataTTL = time.Hour

// Provider is one OpenID Provider the browser can sign in with. It is
// safe for concurrent use.
type Provider struct {
	rp     *RP
	id     string
	name   string
	issuer string
	cfg    ProviderConfig
	scopes string

	mu      sync.Mutex
	meta    *metadata
	metaAt  time.Time
	metaErr error
}

func newProvider(rp *RP, pc ProviderConfig) (*Provider, error) {
	l := pc.Login
	if pc.ClientSecret == "" && pc.PrivateKey == nil {
		return nil, fmt.Errorf("oidc: provider %q: no client secret and no private key", l.ID)
	}
	if pc.RedirectURL == "" {
		return nil, fmt.Errorf("oidc: provider %q: no redirect URL", l.ID)
	}
	p := &Provider{rp: rp, id: l.ID, name: l.Name, issuer: pc.Issuer, cfg: pc}
	if p.name == "" {
		if u, err := url.Parse(pc.Issuer); err == nil {
			p.name = u.Host
		}
	}
	scopes := []string{"openid"}
	extra := l.Scopes
	if len(extra) == 0 {
		extra = []string{"profile", "email"}
	}
	for _, s := range extra {
		if s != "openid" && !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	p.scopes = strings.Join(scopes, " ")
	return p, nil
}

// ID implements issuer.Provider.
func (p *Provider) ID() string { return p.id }

// Name implements issuer.Provider.
func (p *Provider) Name() string { return p.name }

// Issuer implements issuer.LogoutProvider.
func (p *Provider) Issuer() string { return p.issuer }

// Backchannel reports whether the provider's logout tokens are accepted.
func (p *Provider) Backchannel() bool { return p.cfg.Login.BackchannelLogout }

// metadata returns the provider's discovery metadata, fetching it when it
// is missing or old. The document's issuer must be the configured one
// exactly (OpenID Connect Discovery §4.3, issuer mix-up), and every
// endpoint must be https.
func (p *Provider) metadata(ctx context.Context) (*metadata, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.rp.o.Now()
	if p.meta != nil && now.Sub(p.metaAt) < metadataTTL {
		return p.meta, nil
	}
	m, err := p.fetchMetadata(ctx)
	if err != nil {
		if p.meta != nil {
			return p.meta, nil // keep the last good document
		}
		return nil, err
	}
	p.meta, p.metaAt = m, now
	return m, nil
}

func (p *Provider) fetchMetadata(ctx context.Context) (*metadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(p.issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.rp.o.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oidc: discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oidc: discovery: status %d", resp.StatusCode)
	}
	var m metadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil {
		return nil, errors.New("oidc: discovery: not a JSON document")
	}
	if m.Issuer != p.issuer {
		return nil, errors.New("oidc: discovery: issuer in the document does not match")
	}
	for _, e := range []struct{ name, v string }{{"authorization_endpoint", m.AuthorizationEndpoint}, {"token_endpoint", m.TokenEndpoint}} {
		if err := checkEndpoint(e.v); err != nil {
			return nil, fmt.Errorf("oidc: discovery: %s: %w", e.name, err)
		}
	}
	if m.EndSessionEndpoint != "" && checkEndpoint(m.EndSessionEndpoint) != nil {
		m.EndSessionEndpoint = ""
	}
	if len(m.CodeChallengeMethods) > 0 && !slices.Contains(m.CodeChallengeMethods, "S256") {
		// RFC 9700 §2.1.1: PKCE S256 always; a provider that would ignore
		// it leaves the code open to injection.
		return nil, errors.New("oidc: discovery: the provider does not support PKCE S256")
	}
	return &m, nil
}

// Start implements issuer.Provider: it stores a single-use flow record and
// sends the browser to the authorization endpoint.
func (p *Provider) Start(w http.ResponseWriter, r *http.Request, rd string) {
	m, err := p.metadata(r.Context())
	if err != nil {
		p.rp.fail(w, r, p, ReasonDiscovery, http.StatusServiceUnavailable, msgUnavailable, err)
		return
	}
	binding := ""
	if cs := r.CookiesNamed(p.rp.flowName); len(cs) == 1 && len(cs[0].Value) == 43 {
		binding = cs[0].Value // a second tab reuses the browser's binding
	} else {
		binding = randomToken(32)
		http.SetCookie(w, &http.Cookie{Name: p.rp.flowName, Value: binding, Path: "/", MaxAge: int(p.rp.o.FlowTTL / time.Second),
			HttpOnly: true, Secure: !p.rp.o.Insecure, SameSite: http.SameSiteLaxMode})
	}
	st, nonce, verifier := randomToken(32), randomToken(32), randomToken(32)
	f, _ := json.Marshal(flow{Provider: p.id, Nonce: nonce, Verifier: verifier, RD: rd, Binding: digest(binding)})
	ctx, cancel := context.WithTimeout(r.Context(), p.rp.o.StateTimeout)
	err = p.rp.o.Store.PutOnce(ctx, "oidc-flow:"+digest(st), f, p.rp.o.Now().Add(p.rp.o.FlowTTL))
	cancel()
	if err != nil {
		p.rp.fail(w, r, p, ReasonUnavailable, http.StatusServiceUnavailable, msgUnavailable, err)
		return
	}
	challenge := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {p.cfg.Login.ClientID},
		"redirect_uri":          {p.cfg.RedirectURL},
		"scope":                 {p.scopes},
		"state":                 {st},
		"nonce":                 {nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}
	if v := p.cfg.Login.Prompt; v != "" {
		q.Set("prompt", v)
	}
	if v := p.cfg.Login.ACRValues; v != "" {
		q.Set("acr_values", v)
	}
	target := m.AuthorizationEndpoint
	if strings.Contains(target, "?") {
		target += "&" + q.Encode()
	} else {
		target += "?" + q.Encode()
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusFound)
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	IDToken      string `json:"id_token"`
	Error        string `json:"error"`
}

// callback completes a flow whose record was taken.
func (p *Provider) callback(w http.ResponseWriter, r *http.Request, q url.Values, f flow) {
	// The flow must finish in the browser that started it: an attacker
	// who starts a flow and hands the victim its callback URL would sign
	// the victim in as the attacker (login CSRF, RFC 9700 §4.7).
	cs := r.CookiesNamed(p.rp.flowName)
	if len(cs) != 1 || !hmac.Equal([]byte(digest(cs[0].Value)), []byte(f.Binding)) {
		p.rp.fail(w, r, p, ReasonFlowCookie, http.StatusBadRequest, msgExpired, nil)
		return
	}
	m, err := p.metadata(r.Context())
	if err != nil {
		p.rp.fail(w, r, p, ReasonDiscovery, http.StatusServiceUnavailable, msgUnavailable, err)
		return
	}
	// RFC 9207: the response names its issuer, so a response from another
	// provider cannot be passed off as this one's (mix-up). Required when
	// the provider says it sends it; checked whenever present.
	if iss := q.Get("iss"); iss != "" || m.ISSParameterSupported {
		if iss != p.issuer || len(q["iss"]) != 1 {
			p.rp.fail(w, r, p, ReasonIssuerMismatch, http.StatusBadRequest, msgFailed, nil)
			return
		}
	}
	if e := q.Get("error"); e != "" {
		code := errorCode(e)
		p.rp.fail(w, r, p, ReasonProviderError, http.StatusForbidden,
			"The identity provider did not sign you in ("+code+"). Try again.", fmt.Errorf("provider error %s", code))
		return
	}
	code := q.Get("code")
	if code == "" || len(q["code"]) != 1 || len(code) > 4096 {
		p.rp.fail(w, r, p, ReasonNoCode, http.StatusBadRequest, msgFailed, nil)
		return
	}
	tr, err := p.token(r.Context(), m, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {p.cfg.RedirectURL}, "code_verifier": {f.Verifier},
	})
	if err != nil || tr.IDToken == "" {
		if err == nil {
			err = errors.New("no id_token in the token response")
		}
		p.rp.fail(w, r, p, ReasonTokenExchange, http.StatusBadGateway, msgFailed, err)
		return
	}
	idt, reason, err := p.verifyIDToken(r.Context(), tr.IDToken, f.Nonce, "")
	if err != nil {
		p.rp.fail(w, r, p, reason, http.StatusBadRequest, msgFailed, err)
		return
	}
	mg, pages := p.rp.parts()
	data, _ := json.Marshal(p.tokensOf(tr, tokens{SID: idt.SessionID}))
	key, err := mg.Start(w, r, state.Session{Subject: idt.Subject, Issuer: p.issuer, Roles: idt.Roles, Data: data})
	if err != nil {
		p.rp.fail(w, r, p, ReasonUnavailable, http.StatusServiceUnavailable, msgUnavailable, err)
		return
	}
	if idt.SessionID != "" && p.Backchannel() {
		p.indexSID(r.Context(), idt.SessionID, key)
	}
	// The flow cookie has done its work.
	http.SetCookie(w, &http.Cookie{Name: p.rp.flowName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: !p.rp.o.Insecure, SameSite: http.SameSiteLaxMode})
	pages.CountSignIn(r, idt.Subject, "success", "")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", f.RD)
	w.WriteHeader(http.StatusSeeOther)
}

// tokensOf merges a token response into what the session keeps.
func (p *Provider) tokensOf(tr tokenResponse, old tokens) tokens {
	t := old
	t.Provider = p.id
	if tr.IDToken != "" {
		t.IDToken = tr.IDToken
	}
	t.Access = tr.AccessToken
	if tr.RefreshToken != "" {
		t.Refresh = tr.RefreshToken // rotated, or kept when the provider does not rotate
	}
	t.Expiry, t.Lifetime = time.Time{}, 0
	if tr.ExpiresIn > 0 {
		t.Expiry = p.rp.o.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
		t.Lifetime = tr.ExpiresIn
	}
	return t
}

// verifyIDToken checks an ID token beyond the JWKS checks: the nonce of
// the flow (replay of another flow's token, OpenID Connect Core §3.1.3.7
// step 11) and azp (step 4-5: with several audiences the token must have
// been issued to this client). On a refresh, wantSub is the session's
// subject, which must not change (§12.2).
func (p *Provider) verifyIDToken(ctx context.Context, raw, nonce, wantSub string) (jwks.IDToken, string, error) {
	t, err := p.rp.o.Keys.VerifyIDToken(ctx, p.issuer, p.cfg.Login.ClientID, jwks.KindID, raw)
	if err != nil {
		return jwks.IDToken{}, ReasonIDToken, err
	}
	if nonce != "" && !hmac.Equal([]byte(t.Nonce), []byte(nonce)) {
		return jwks.IDToken{}, ReasonNonce, errors.New("oidc: id token nonce does not match the flow")
	}
	if (len(t.Audience) > 1 || t.AuthorizedParty != "") && t.AuthorizedParty != p.cfg.Login.ClientID {
		return jwks.IDToken{}, ReasonAZP, errors.New("oidc: id token azp is not the client")
	}
	if wantSub != "" && t.Subject != wantSub {
		return jwks.IDToken{}, ReasonIDToken, errors.New("oidc: refreshed id token names another subject")
	}
	return t, "", nil
}

// token calls the token endpoint with the client's authentication.
func (p *Provider) token(ctx context.Context, m *metadata, form url.Values) (tokenResponse, error) {
	if p.cfg.PrivateKey != nil {
		assertion, err := p.clientAssertion(m.TokenEndpoint)
		if err != nil {
			return tokenResponse{}, err
		}
		form.Set("client_id", p.cfg.Login.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if p.cfg.PrivateKey == nil {
		// RFC 6749 §2.3.1: both parts form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(p.cfg.Login.ClientID), url.QueryEscape(p.cfg.ClientSecret))
	}
	resp, err := p.rp.o.Client.Do(req)
	if err != nil {
		return tokenResponse{}, fmt.Errorf("oidc: token endpoint: %w", err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil {
		return tokenResponse{}, fmt.Errorf("oidc: token endpoint: status %d, unreadable answer", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK || tr.Error != "" {
		return tokenResponse{}, fmt.Errorf("oidc: token endpoint: status %d, error %s", resp.StatusCode, errorCode(tr.Error))
	}
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "bearer") && tr.TokenType != "" {
		return tokenResponse{}, errors.New("oidc: token endpoint: no bearer access token")
	}
	return tr, nil
}

// clientAssertion signs a private_key_jwt assertion (RFC 7523 §3, OpenID
// Connect Core §9) for the token endpoint.
func (p *Provider) clientAssertion(aud string) (string, error) {
	now := p.rp.o.Now()
	claims := jwt.RegisteredClaims{
		Issuer: p.cfg.Login.ClientID, Subject: p.cfg.Login.ClientID, Audience: jwt.ClaimStrings{aud},
		ID: randomToken(16), IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
	}
	var method jwt.SigningMethod
	switch k := p.cfg.PrivateKey.(type) {
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().BitSize {
		case 256:
			method = jwt.SigningMethodES256
		case 384:
			method = jwt.SigningMethodES384
		default:
			method = jwt.SigningMethodES512
		}
	default:
		return "", errors.New("oidc: private key is neither RSA nor ECDSA")
	}
	t := jwt.NewWithClaims(method, claims)
	if kid := p.cfg.Login.PrivateKeyID; kid != "" {
		t.Header["kid"] = kid
	}
	return t.SignedString(p.cfg.PrivateKey)
}

// refreshMargin is how long before the access token's expiry a refresh
// is due: a quarter of its lifetime, at most a minute.
func refreshMargin(t tokens) time.Duration {
	return min(time.Minute, time.Duration(t.Lifetime)*time.Second/4)
}

// Due implements session.Refresher.
func (rp *RP) Due(s state.Session, now time.Time) bool {
	t, ok := decodeTokens(s.Data)
	if !ok {
		return true // unreadable: Refresh ends it
	}
	return t.Refresh != "" && !t.Expiry.IsZero() && !now.Before(t.Expiry.Add(-refreshMargin(t)))
}

// Refresh implements session.Refresher: one refresh per session at a
// time in this process, and across replicas one at a time by a
// single-use lock in the store (a provider that rotates refresh tokens
// would take a second use of the same one for theft and revoke the whole
// grant). A replica that loses the race keeps the current tokens, which
// are still valid for the refresh margin.
func (rp *RP) Refresh(ctx context.Context, s state.Session) ([]byte, error) {
	t, ok := decodeTokens(s.Data)
	if !ok {
		return nil, errors.New("oidc: session tokens unreadable")
	}
	p := rp.byID[t.Provider]
	if p == nil || p.issuer != s.Issuer {
		return nil, errors.New("oidc: session of an unknown provider")
	}
	key := digest("refresh", s.Issuer, s.Subject, t.Refresh)
	v, err, _ := rp.refreshes.Do(key, func() (any, error) {
		lctx, cancel := context.WithTimeout(ctx, rp.o.StateTimeout)
		err := rp.o.Store.PutOnce(lctx, "oidc-refresh:"+key, []byte("1"), rp.o.Now().Add(30*time.Second))
		cancel()
		if err != nil {
			return []byte(nil), nil // another replica refreshes now
		}
		return p.refresh(ctx, s, t)
	})
	if err != nil {
		p.rp.failures.WithLabelValues(p.id, ReasonRefresh).Inc()
		return nil, err
	}
	return v.([]byte), nil
}

// refresh runs one refresh grant.
func (p *Provider) refresh(ctx context.Context, s state.Session, t tokens) ([]byte, error) {
	m, err := p.metadata(ctx)
	if err != nil {
		return nil, err
	}
	tr, err := p.token(ctx, m, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {t.Refresh}})
	if err != nil {
		return nil, err
	}
	if tr.IDToken != "" {
		if _, _, err := p.verifyIDToken(ctx, tr.IDToken, "", s.Subject); err != nil {
			return nil, err
		}
	}
	p.rp.log.Info("session refreshed at the provider", zap.String("event", "oidc"), zap.String("provider", p.id),
		zap.String("subject", logsafe.String(s.Subject)))
	return json.Marshal(p.tokensOf(tr, t))
}

// Logout implements issuer.LogoutProvider: RP-initiated logout, with the
// ID token as hint and the registered post_logout_redirect_uri.
func (p *Provider) Logout(w http.ResponseWriter, r *http.Request, s state.Session) {
	_, pages := p.rp.parts()
	t, ok := decodeTokens(s.Data)
	m, err := p.metadata(r.Context())
	if !ok || err != nil || m.EndSessionEndpoint == "" {
		pages.SignedOutPage(w, r, "")
		return
	}
	q := url.Values{"id_token_hint": {t.IDToken}, "client_id": {p.cfg.Login.ClientID}, "state": {randomToken(16)}}
	if p.cfg.PostLogoutURL != "" {
		q.Set("post_logout_redirect_uri", p.cfg.PostLogoutURL)
	}
	target := m.EndSessionEndpoint
	if strings.Contains(target, "?") {
		target += "&" + q.Encode()
	} else {
		target += "?" + q.Encode()
	}
	pages.SignedOutPage(w, r, target)
}

// indexSID records which session a provider session id belongs to, for
// back-channel logout by sid. Several sessions of one provider session
// are kept together.
func (p *Provider) indexSID(ctx context.Context, sid, key string) {
	ctx, cancel := context.WithTimeout(ctx, 2*p.rp.o.StateTimeout)
	defer cancel()
	k := "oidc-sid:" + digest(p.issuer, sid)
	keys := []string{key}
	if old, err := p.rp.o.Store.TakeOnce(ctx, k); err == nil {
		var prev []string
		if json.Unmarshal(old, &prev) == nil {
			keys = append(keys, prev...)
		}
	}
	b, _ := json.Marshal(keys)
	mg, _ := p.rp.parts()
	_ = p.rp.o.Store.PutOnce(ctx, k, b, p.rp.o.Now().Add(mg.AbsoluteTimeout()))
}

// backchannelEvent is the logout token's required event (§2.4).
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// backchannel handles one logout token (OpenID Connect Back-Channel
// Logout 1.0 §2.6): signature, iss, aud, iat, the event, no nonce, sub or
// sid, and a jti seen once. It ends the sessions of the provider session
// (sid), or every session of the subject at this provider (sub only).
func (p *Provider) backchannel(w http.ResponseWriter, r *http.Request) {
	bad := func(reason string, err error) {
		p.rp.failures.WithLabelValues(p.id, reason).Inc()
		p.rp.log.Warn("back-channel logout refused", zap.String("event", "oidc"), zap.String("provider", p.id),
			zap.String("reason", reason), zap.String("error", logsafe.String(fmt.Sprint(err))),
			zap.String("request_id", logsafe.String(r.Header.Get("X-Request-Id"))))
		writeBackchannel(w, http.StatusBadRequest, "invalid_request")
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeBackchannel(w, http.StatusMethodNotAllowed, "invalid_request")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		bad(ReasonLogoutToken, err)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || len(form["logout_token"]) != 1 {
		bad(ReasonLogoutToken, errors.New("want one logout_token"))
		return
	}
	t, err := p.rp.o.Keys.VerifyIDToken(r.Context(), p.issuer, p.cfg.Login.ClientID, jwks.KindLogout, form.Get("logout_token"))
	if err != nil {
		bad(ReasonLogoutToken, err)
		return
	}
	var events map[string]json.RawMessage
	if raw, ok := t.Claims["events"]; !ok || json.Unmarshal(raw, &events) != nil || events[backchannelEvent] == nil {
		bad(ReasonLogoutToken, errors.New("no back-channel logout event"))
		return
	}
	if _, ok := t.Claims["nonce"]; ok {
		// A logout token must not be usable as an ID token, nor the other
		// way round (§2.4).
		bad(ReasonLogoutToken, errors.New("logout token carries a nonce"))
		return
	}
	var jti string
	if raw, ok := t.Claims["jti"]; ok {
		_ = json.Unmarshal(raw, &jti)
	}
	if jti == "" || t.Subject == "" && t.SessionID == "" {
		bad(ReasonLogoutToken, errors.New("logout token needs jti and sub or sid"))
		return
	}
	ctx := r.Context()
	sctx, cancel := context.WithTimeout(ctx, p.rp.o.StateTimeout)
	err = p.rp.o.Store.PutOnce(sctx, "oidc-jti:"+digest(p.issuer, jti), []byte("1"), t.IssuedAt.Add(10*time.Minute))
	cancel()
	if err != nil {
		bad(ReasonLogoutTokenReuse, err)
		return
	}
	mg, _ := p.rp.parts()
	n := 0
	if t.SessionID != "" {
		sctx, cancel := context.WithTimeout(ctx, p.rp.o.StateTimeout)
		raw, err := p.rp.o.Store.TakeOnce(sctx, "oidc-sid:"+digest(p.issuer, t.SessionID))
		cancel()
		var keys []string
		if err == nil && json.Unmarshal(raw, &keys) == nil {
			for _, k := range keys {
				if _, err := mg.End(ctx, k, session.EndProviderLogout); err == nil {
					n++
				}
			}
		}
	} else {
		n, err = mg.EndAll(ctx, state.SubjectKey(p.issuer, t.Subject), session.EndProviderLogout)
		if err != nil {
			writeBackchannel(w, http.StatusServiceUnavailable, "temporarily_unavailable")
			return
		}
	}
	p.rp.log.Info("back-channel logout", zap.String("event", "oidc"), zap.String("provider", p.id),
		zap.String("subject", logsafe.String(t.Subject)), zap.Int("sessions", n), zap.String("request_id", logsafe.String(r.Header.Get("X-Request-Id"))))
	writeBackchannel(w, http.StatusOK, "")
}
