package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/internal/config"
)

// tokenResponse is the RFC 6749 §5.1 body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

// post sends a form to the gateway and returns the response and raw body.
func (e *gwEnv) post(path string, form url.Values, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.gw.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func (e *gwEnv) login(user, pass string) tokenResponse {
	e.t.Helper()
	resp, body := e.post("/auth/login", url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}})
	var tr tokenResponse
	_ = json.Unmarshal([]byte(body), &tr)
	if resp.StatusCode != 200 || tr.AccessToken == "" || tr.RefreshToken == "" {
		e.t.Fatalf("login %s = %d %s", user, resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || tr.TokenType != "bearer" || tr.ExpiresIn != 900 {
		e.t.Errorf("login response: Cache-Control %q token_type %q expires_in %d", resp.Header.Get("Cache-Control"), tr.TokenType, tr.ExpiresIn)
	}
	registerSecret(tr.AccessToken)
	registerSecret(tr.RefreshToken)
	return tr
}

func (e *gwEnv) refresh(rt string) (int, tokenResponse) {
	e.t.Helper()
	resp, body := e.post("/auth/refresh", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	var tr tokenResponse
	_ = json.Unmarshal([]byte(body), &tr)
	if tr.AccessToken != "" {
		registerSecret(tr.AccessToken)
		registerSecret(tr.RefreshToken)
	}
	return resp.StatusCode, tr
}

func (e *gwEnv) bearerStatus(path, bearer string) int {
	e.t.Helper()
	resp, _ := e.do("GET", path, "Authorization", "Bearer "+bearer)
	return resp.StatusCode
}

func TestE2ELoginRefreshReuse(t *testing.T) {
	e := newEnv(t, "", nil, withUsers)
	tr := e.login("alice", "alice-password-1")
	if got := e.bearerStatus("/admin/x", tr.AccessToken); got != 200 {
		t.Fatalf("protected call with the login token = %d, want 200", got)
	}
	if s := e.up.last(t).Header.Get("X-Auth-Subject"); s != "alice" {
		t.Errorf("upstream subject = %q", s)
	}
	code, tr2 := e.refresh(tr.RefreshToken)
	if code != 200 || tr2.RefreshToken == "" || tr2.RefreshToken == tr.RefreshToken {
		t.Fatalf("refresh = %d, want a new refresh token", code)
	}
	if got := e.bearerStatus("/admin/x", tr2.AccessToken); got != 200 {
		t.Errorf("refreshed access token = %d, want 200", got)
	}
	// Replaying the rotated token is reuse: it fails and revokes the family.
	if code, _ := e.refresh(tr.RefreshToken); code != 400 {
		t.Errorf("reused refresh token = %d, want 400", code)
	}
	if code, _ := e.refresh(tr2.RefreshToken); code != 400 {
		t.Errorf("newest token of a revoked family = %d, want 400", code)
	}
	if e.logs.FilterMessageSnippet("reuse").Len() == 0 && e.logs.FilterField(zap.String("event", "refresh_token_reuse")).Len() == 0 {
		t.Error("no security event logged for refresh token reuse")
	}
}

func TestE2ELogoutRevokesFamily(t *testing.T) {
	e := newEnv(t, "", nil, withUsers)
	tr := e.login("bob", "bob-password-1")
	resp, body := e.post("/auth/logout", url.Values{"refresh_token": {tr.RefreshToken}})
	if resp.StatusCode != 200 {
		t.Fatalf("logout = %d %s", resp.StatusCode, body)
	}
	if code, _ := e.refresh(tr.RefreshToken); code != 400 {
		t.Errorf("refresh after logout = %d, want 400", code)
	}
}

func TestE2ETokenTypesAreNotInterchangeable(t *testing.T) {
	e := newEnv(t, "", nil, withUsers)
	tr := e.login("alice", "alice-password-1")
	if got := e.bearerStatus("/api/x", tr.RefreshToken); got != 401 {
		t.Errorf("refresh token as bearer = %d, want 401", got)
	}
	if code, _ := e.refresh(tr.AccessToken); code != 400 {
		t.Errorf("access token at /auth/refresh = %d, want 400", code)
	}
}

func TestE2EPasswordChangeEndsOldTokens(t *testing.T) {
	e := newEnv(t, "", nil, withUsers)
	tr := e.login("alice", "alice-password-1")
	if got := e.bearerStatus("/api/x", tr.AccessToken); got != 200 {
		t.Fatalf("before the change = %d", got)
	}
	writeFile(t, filepath.Join(e.dir, "users.yaml"), testUsers(t, "alice-password-2"))
	deadline := time.Now().Add(3 * time.Second)
	for e.bearerStatus("/api/x", tr.AccessToken) != 401 {
		if time.Now().After(deadline) {
			t.Fatal("old access token still accepted 3s after the password change")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := e.refresh(tr.RefreshToken); code != 400 {
		t.Errorf("old refresh token after the password change = %d, want 400", code)
	}
	resp, _ := e.post("/auth/login", url.Values{"username": {"alice"}, "password": {"alice-password-1"}})
	if resp.StatusCode != 400 {
		t.Errorf("login with the old password = %d, want 400", resp.StatusCode)
	}
	e.login("alice", "alice-password-2")
}

func TestE2EDisabledUser(t *testing.T) {
	e := newEnv(t, "", nil, withUsers)
	tr := e.login("bob", "bob-password-1")
	resp, _ := e.post("/auth/login", url.Values{"username": {"mallory"}, "password": {"mallory-password-1"}})
	if resp.StatusCode != 400 {
		t.Errorf("disabled user login = %d, want 400", resp.StatusCode)
	}
	// Disable bob: his tokens stop working.
	disabled := strings.Replace(testUsers(t, "alice-password-1"), "roles: [user]\n", "roles: [user]\n    disabled: true\n", 1)
	writeFile(t, filepath.Join(e.dir, "users.yaml"), disabled)
	deadline := time.Now().Add(3 * time.Second)
	for e.bearerStatus("/api/x", tr.AccessToken) != 401 {
		if time.Now().After(deadline) {
			t.Fatal("disabled user's token still accepted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := e.refresh(tr.RefreshToken); code != 400 {
		t.Errorf("disabled user's refresh = %d, want 400", code)
	}
}

func TestE2ELoginErrorsDoNotRevealUsers(t *testing.T) {
	e := newEnv(t, "", nil, withUsers)
	_, unknown := e.post("/auth/login", url.Values{"username": {"nobody"}, "password": {"whatever-1"}})
	_, wrong := e.post("/auth/login", url.Values{"username": {"alice"}, "password": {"whatever-1"}})
	_, disabled := e.post("/auth/login", url.Values{"username": {"mallory"}, "password": {"mallory-password-1"}})
	// Only the request id (a new one per request) may differ.
	rid := regexp.MustCompile(`"request_id":"[^"]+"`)
	for _, b := range []string{unknown, wrong, disabled} {
		if !rid.MatchString(b) {
			t.Errorf("body %q carries no request_id", b)
		}
	}
	unknown, wrong, disabled = rid.ReplaceAllString(unknown, ""), rid.ReplaceAllString(wrong, ""), rid.ReplaceAllString(disabled, "")
	if unknown != wrong || wrong != disabled {
		t.Errorf("bodies differ:\nunknown  %q\nwrong    %q\ndisabled %q", unknown, wrong, disabled)
	}
	if !strings.Contains(unknown, `"invalid_grant"`) {
		t.Errorf("body %q is not an RFC 6749 invalid_grant", unknown)
	}
}

func TestE2ELoginRateLimit(t *testing.T) {
	e := newEnv(t, "", nil, withUsers, func(c *config.Config) {
		c.Auth.Limits = issuer.Limits{
			LoginPerIP:   state.Limit{Every: time.Hour, Burst: 3},
			LoginPerUser: state.Limit{Every: time.Hour, Burst: 100},
			RefreshPerIP: state.Limit{Every: time.Second, Burst: 30},
		}
	})
	for i := 0; i < 3; i++ {
		resp, _ := e.post("/auth/login", url.Values{"username": {"u" + string(rune('a'+i))}, "password": {"x-wrong-1"}})
		if resp.StatusCode != 400 {
			t.Fatalf("attempt %d = %d, want 400", i+1, resp.StatusCode)
		}
	}
	// A spoofed X-Forwarded-For from an untrusted peer gives no new quota.
	for _, xff := range []string{"", "1.2.3.4", "5.6.7.8, 9.9.9.9"} {
		resp, body := e.post("/auth/login", url.Values{"username": {"alice"}, "password": {"alice-password-1"}}, "X-Forwarded-For", xff)
		if resp.StatusCode != 429 {
			t.Fatalf("over the limit with XFF %q = %d %s, want 429", xff, resp.StatusCode, body)
		}
		if resp.Header.Get("Retry-After") == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("429 without Retry-After or JSON: %v", resp.Header)
		}
	}
}

func TestE2EAuthPrefixIsNeverProxied(t *testing.T) {
	e := newEnv(t, `rules:
  - path: /**
    public: true
`, nil, withUsers)
	resp, body := e.do("GET", "/auth/other")
	assertJSONError(t, resp, body, http.StatusNotFound)
	resp, _ = e.do("GET", "/auth/login")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /auth/login = %d, want 405", resp.StatusCode)
	}
	if e.up.count() != 0 {
		t.Error("a path under the auth prefix reached the upstream")
	}
}

func TestE2ERateLimitedLoginIsTarpitted(t *testing.T) {
	for _, delay := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			e := newEnv(t, "", nil, withUsers, func(c *config.Config) {
				c.Auth.Limits.LoginPerIP = state.Limit{Every: time.Hour, Burst: 1}
				c.Auth.LimitedDelay = delay
			})
			e.post("/auth/login", url.Values{"username": {"nobody"}, "password": {"x-wrong-1"}})
			start := time.Now()
			resp, _ := e.post("/auth/login", url.Values{"username": {"nobody"}, "password": {"x-wrong-1"}})
			took := time.Since(start)
			if resp.StatusCode != 429 {
				t.Fatalf("second attempt = %d, want 429", resp.StatusCode)
			}
			if took < delay || (delay == 0 && took > 250*time.Millisecond) {
				t.Errorf("429 took %v with limited_delay %v", took, delay)
			}
		})
	}
}

// The token endpoints' audit lines carry the request id of the gateway's
// own line for the same request, so the two can be joined.
func TestE2EIssuerAuditCarriesRequestID(t *testing.T) {
	e := newEnv(t, "", nil, withUsers)
	req, _ := http.NewRequest("POST", e.gw.URL+"/auth/login", strings.NewReader(url.Values{"username": {"alice"}, "password": {"wrong-password-1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Request-Id", "audit-join-1")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var audit, gateway bool
	for _, l := range e.logs.All() {
		if l.ContextMap()["request_id"] != "audit-join-1" {
			continue
		}
		switch l.Message {
		case "issuer login":
			audit = true
			if l.ContextMap()["outcome"] != "failure" {
				t.Errorf("audit line %v, want outcome failure", l.ContextMap())
			}
		case "request":
			gateway = true
			if l.ContextMap()["decision"] != "deny" {
				t.Errorf("gateway line for a failed login has decision %v, want deny", l.ContextMap()["decision"])
			}
		}
	}
	if !audit || !gateway {
		t.Fatalf("audit line with the request id: %v, gateway line: %v", audit, gateway)
	}
}
