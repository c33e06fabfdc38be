// Package hydratest runs a real OpenID Provider for tests and the local SSO
// demo: Ory Hydra (built by scripts/hydra.sh) on loopback ports with its
// in-memory database, and the small login, consent and logout app Hydra
// needs, with a fixed list of users and the roles each gets in its ID
// token. It is test support, never part of the gateway.
package hydratest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// User is one account of the login app.
type User struct {
	// Password is checked by the login page.
	Password string
	// Roles go into the ID token's "roles" claim.
	Roles []string
}

// Options configure Start.
type Options struct {
	// Binary is the hydra executable.
	Binary string
	// Users are the accounts of the login app, by username.
	Users map[string]User
	// AccessTokenTTL is the access token lifetime; zero means 1h.
	AccessTokenTTL time.Duration
	// Log receives Hydra's output; nil discards it.
	Log io.Writer
	// Name is shown on the login page.
	Name string
}

// Hydra is a running provider. Its fields are set by Start.
type Hydra struct {
	// Issuer is the public URL and issuer.
	Issuer string
	// Admin is the admin API's URL.
	Admin string

	o      Options
	cmd    *exec.Cmd
	app    *http.Server
	appURL string
	dir    string
	client *http.Client
	done   chan struct{}

	mu      sync.Mutex
	stopped bool
}

// Start runs Hydra and its login app until Close. It waits until the
// provider's discovery document answers.
func Start(ctx context.Context, o Options) (*Hydra, error) {
	if o.AccessTokenTTL == 0 {
		o.AccessTokenTTL = time.Hour
	}
	if o.Name == "" {
		o.Name = "Hydra"
	}
	h := &Hydra{o: o, client: &http.Client{Timeout: 10 * time.Second}, done: make(chan struct{})}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h.appURL = "http://" + appLn.Addr().String()
	h.app = &http.Server{Handler: h.loginApp(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = h.app.Serve(appLn) }()
	if h.dir, err = os.MkdirTemp("", "hydratest"); err != nil {
		h.app.Close()
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if lastErr = h.start(ctx); lastErr == nil {
			return h, nil
		}
	}
	h.Close()
	return nil, lastErr
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start launches hydra on fresh ports and waits for it.
func (h *Hydra) start(ctx context.Context) error {
	pub, err := freePort()
	if err != nil {
		return err
	}
	adm, err := freePort()
	if err != nil {
		return err
	}
	h.Issuer = fmt.Sprintf("http://127.0.0.1:%d", pub)
	h.Admin = fmt.Sprintf("http://127.0.0.1:%d", adm)
	cmd := exec.Command(h.o.Binary, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Dir = h.dir
	cmd.Env = append(os.Environ(),
		"DSN=memory",
		"SECRETS_SYSTEM=hydratest-system-secret-0123456789abcdef",
		"URLS_SELF_ISSUER="+h.Issuer,
		"URLS_SELF_PUBLIC="+h.Issuer,
		"URLS_LOGIN="+h.appURL+"/login",
		"URLS_CONSENT="+h.appURL+"/consent",
		"URLS_LOGOUT="+h.appURL+"/logout",
		"URLS_POST_LOGOUT_REDIRECT="+h.appURL+"/logged-out",
		fmt.Sprintf("SERVE_PUBLIC_PORT=%d", pub), "SERVE_PUBLIC_HOST=127.0.0.1",
		fmt.Sprintf("SERVE_ADMIN_PORT=%d", adm), "SERVE_ADMIN_HOST=127.0.0.1",
		"TTL_ACCESS_TOKEN="+h.o.AccessTokenTTL.String(),
		"STRATEGIES_ACCESS_TOKEN=opaque",
		"LOG_LEVEL=warn", "SQA_OPT_OUT=true",
	)
	out := h.o.Log
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("hydratest: start %s: %w", h.o.Binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := h.client.Get(h.Issuer + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if r2, err := h.client.Get(h.Admin + "/health/ready"); err == nil {
					r2.Body.Close()
					if r2.StatusCode == 200 {
						h.cmd = cmd
						go func() { <-exited; close(h.done) }()
						return nil
					}
				}
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("hydratest: hydra exited: %v", err)
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return errors.New("hydratest: hydra did not become ready in 60s")
		}
	}
}

// Close stops Hydra and the login app.
func (h *Hydra) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	h.stopped = true
	if h.cmd != nil {
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
			<-h.done
		}
	}
	if h.app != nil {
		_ = h.app.Close()
	}
	if h.dir != "" {
		_ = os.RemoveAll(h.dir)
	}
}

// Client is an OAuth 2.0 client registration.
type Client struct {
	// ID and Secret are the client id and secret.
	ID, Secret string
	// RedirectURIs and PostLogoutRedirectURIs are registered exactly.
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI receives logout tokens.
	BackchannelLogoutURI string
	// AuthMethod is client_secret_basic (default) or private_key_jwt.
	AuthMethod string
	// JWKS, for private_key_jwt, is the client's public key set.
	JWKS json.RawMessage
}

// CreateClient registers c at the admin API.
func (h *Hydra) CreateClient(c Client) error {
	method := c.AuthMethod
	if method == "" {
		method = "client_secret_basic"
	}
	body := map[string]any{
		"client_id": c.ID, "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "scope": "openid offline_access offline profile email",
		"redirect_uris": c.RedirectURIs, "post_logout_redirect_uris": c.PostLogoutRedirectURIs,
		"token_endpoint_auth_method": method,
	}
	if c.Secret != "" {
		body["client_secret"] = c.Secret
	}
	if c.BackchannelLogoutURI != "" {
		body["backchannel_logout_uri"] = c.BackchannelLogoutURI
		body["backchannel_logout_session_required"] = true
	}
	if c.JWKS != nil {
		body["jwks"] = c.JWKS
		body["token_endpoint_auth_signing_alg"] = "ES256"
	}
	_, err := h.admin("POST", "/admin/clients", "", body, http.StatusCreated)
	return err
}

// LoginSessionIDs returns the login session ids (the ID tokens' sid) of
// subject's consent sessions.
func (h *Hydra) LoginSessionIDs(subject string) ([]string, error) {
	b, err := h.admin("GET", "/admin/oauth2/auth/sessions/consent", "subject="+url.QueryEscape(subject), nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var sessions []struct {
		ConsentRequest struct {
			LoginSessionID string `json:"login_session_id"`
		} `json:"consent_request"`
	}
	if err := json.Unmarshal(b, &sessions); err != nil {
		return nil, err
	}
	var out []string
	for _, s := range sessions {
		if id := s.ConsentRequest.LoginSessionID; id != "" {
			out = append(out, id)
		}
	}
	return out, nil
}

// RevokeLoginSession ends a login session at the provider by its id,
// which makes Hydra send back-channel logout tokens to its clients.
func (h *Hydra) RevokeLoginSession(sid string) error {
	_, err := h.admin("DELETE", "/admin/oauth2/auth/sessions/login", "sid="+url.QueryEscape(sid), nil, http.StatusNoContent)
	return err
}

// admin calls the admin API.
func (h *Hydra) admin(method, path, query string, body any, want int) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := h.Admin + path
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return nil, fmt.Errorf("hydratest: %s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	return b, nil
}

var pageTmpl = template.Must(template.New("p").Parse(`<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Name}}</title>
<h1>{{.Name}}</h1>
{{if eq .Kind "login"}}
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login"><input type="hidden" name="challenge" value="{{.Challenge}}">
<label for="user">User</label> <input id="user" name="user" autocomplete="username">
<label for="pass">Password</label> <input id="pass" name="pass" type="password">
<button id="login" type="submit">Log in</button></form>
{{else if eq .Kind "consent"}}
<p>{{.Client}} asks for: {{.Scopes}}</p>
<form method="post" action="/consent"><input type="hidden" name="challenge" value="{{.Challenge}}">
<button id="allow" name="decision" value="allow">Allow</button> <button id="deny" name="decision" value="deny">Deny</button></form>
{{else}}<p>Logged out.</p>{{end}}
</html>`))

type page struct {
	Name, Kind, Challenge, Error, Client, Scopes string
}

// loginApp is the login, consent and logout app of Hydra's login flow.
func (h *Hydra) loginApp() http.Handler {
	mux := http.NewServeMux()
	render := func(w http.ResponseWriter, p page) {
		p.Name = h.o.Name
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = pageTmpl.Execute(w, p)
	}
	accept := func(w http.ResponseWriter, r *http.Request, kind, challenge string, body any) {
		b, err := h.admin("PUT", "/admin/oauth2/auth/requests/"+kind+"/accept", kind+"_challenge="+url.QueryEscape(challenge), body, http.StatusOK)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var red struct {
			RedirectTo string `json:"redirect_to"`
		}
		_ = json.Unmarshal(b, &red)
		http.Redirect(w, r, red.RedirectTo, http.StatusFound)
	}
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		ch := r.URL.Query().Get("login_challenge")
		b, err := h.admin("GET", "/admin/oauth2/auth/requests/login", "login_challenge="+url.QueryEscape(ch), nil, http.StatusOK)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var lr struct {
			Skip    bool   `json:"skip"`
			Subject string `json:"subject"`
		}
		_ = json.Unmarshal(b, &lr)
		if lr.Skip {
			accept(w, r, "login", ch, map[string]any{"subject": lr.Subject})
			return
		}
		render(w, page{Kind: "login", Challenge: ch})
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		ch, user, pass := r.FormValue("challenge"), r.FormValue("user"), r.FormValue("pass")
		if u, ok := h.o.Users[user]; !ok || u.Password != pass {
			render(w, page{Kind: "login", Challenge: ch, Error: "Wrong user or password."})
			return
		}
		accept(w, r, "login", ch, map[string]any{"subject": user, "remember": true, "remember_for": 3600})
	})
	consentBody := func(b []byte) map[string]any {
		var cr struct {
			Subject  string   `json:"subject"`
			Scopes   []string `json:"requested_scope"`
			Audience []string `json:"requested_access_token_audience"`
		}
		_ = json.Unmarshal(b, &cr)
		roles := h.o.Users[cr.Subject].Roles
		if roles == nil {
			roles = []string{}
		}
		return map[string]any{"grant_scope": cr.Scopes, "grant_access_token_audience": cr.Audience, "remember": true, "remember_for": 3600,
			"session": map[string]any{"id_token": map[string]any{"roles": roles, "email": cr.Subject + "@example.com"}}}
	}
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		ch := r.URL.Query().Get("consent_challenge")
		b, err := h.admin("GET", "/admin/oauth2/auth/requests/consent", "consent_challenge="+url.QueryEscape(ch), nil, http.StatusOK)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var cr struct {
			Skip   bool     `json:"skip"`
			Scopes []string `json:"requested_scope"`
			Client struct {
				ID string `json:"client_id"`
			} `json:"client"`
		}
		_ = json.Unmarshal(b, &cr)
		if cr.Skip {
			accept(w, r, "consent", ch, consentBody(b))
			return
		}
		render(w, page{Kind: "consent", Challenge: ch, Client: cr.Client.ID, Scopes: strings.Join(cr.Scopes, " ")})
	})
	mux.HandleFunc("POST /consent", func(w http.ResponseWriter, r *http.Request) {
		ch := r.FormValue("challenge")
		if r.FormValue("decision") != "allow" {
			b, err := h.admin("PUT", "/admin/oauth2/auth/requests/consent/reject", "consent_challenge="+url.QueryEscape(ch),
				map[string]any{"error": "access_denied", "error_description": "The user denied the request"}, http.StatusOK)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			var red struct {
				RedirectTo string `json:"redirect_to"`
			}
			_ = json.Unmarshal(b, &red)
			http.Redirect(w, r, red.RedirectTo, http.StatusFound)
			return
		}
		b, err := h.admin("GET", "/admin/oauth2/auth/requests/consent", "consent_challenge="+url.QueryEscape(ch), nil, http.StatusOK)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		accept(w, r, "consent", ch, consentBody(b))
	})
	mux.HandleFunc("GET /logout", func(w http.ResponseWriter, r *http.Request) {
		accept(w, r, "logout", r.URL.Query().Get("logout_challenge"), nil)
	})
	mux.HandleFunc("GET /logged-out", func(w http.ResponseWriter, r *http.Request) { render(w, page{Kind: "logged-out"}) })
	return mux
}

// BinaryPath returns the hydra binary: $HYDRA, else the one scripts/hydra.sh
// builds into the user cache directory for the version in versionFile
// (test/tools/go.mod). It returns "" when there is none.
func BinaryPath(toolsGoMod string) string {
	if p := os.Getenv("HYDRA"); p != "" {
		return p
	}
	b, err := os.ReadFile(toolsGoMod)
	if err != nil {
		return ""
	}
	version := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "github.com/ory/hydra/v2" {
			version = f[1]
			break
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil || version == "" {
		return ""
	}
	p := filepath.Join(cache, "authgate-hydra-test", "hydra-"+version, "hydra")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// LoginAppURL is the login app's base URL.
func (h *Hydra) LoginAppURL() string { return h.appURL }
