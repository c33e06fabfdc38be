package issuer

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/token"
)

func TestRefreshRotationChain(t *testing.T) {
	f := newFixture(t)
	tr := f.mustTokens(f.login("alice", "alice-pw"))
	ctx := context.Background()
	first, err := f.verifier.Parse(ctx, tr.RefreshToken, token.TypeRefresh)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{tr.RefreshToken: true}
	for i := range 5 {
		f.clk.Advance(10 * time.Minute)
		next := f.mustTokens(f.refresh(tr.RefreshToken))
		if seen[next.RefreshToken] {
			t.Fatalf("refresh %d returned a refresh token seen before", i+1)
		}
		seen[next.RefreshToken] = true
		c, err := f.verifier.Parse(ctx, next.RefreshToken, token.TypeRefresh)
		if err != nil {
			t.Fatalf("refresh %d: Parse(new refresh token) error = %v", i+1, err)
		}
		if c.Family != first.Family {
			t.Errorf("refresh %d: family = %q, want %q", i+1, c.Family, first.Family)
		}
		if !c.ExpiresAt.Equal(f.clk.Now().Add(time.Hour)) {
			t.Errorf("refresh %d: expiry = %v, want now+1h", i+1, c.ExpiresAt)
		}
		if p, err := f.verifier.Verify(ctx, next.AccessToken); err != nil || p.Subject != "alice" {
			t.Errorf("refresh %d: Verify(access token) = %+v, %v", i+1, p, err)
		}
		tr = next
	}
	if got := counter(t, f.reg, "authgate_refreshes_total", "outcome", "success"); got != 5 {
		t.Errorf("authgate_refreshes_total{success} = %v, want 5", got)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	f := newFixture(t)
	r0 := f.mustTokens(f.login("alice", "alice-pw")).RefreshToken
	r1 := f.mustTokens(f.refresh(r0)).RefreshToken
	f.logs.TakeAll()

	// r0 was rotated: presenting it again means a copy exists.
	w := f.refresh(r0)
	if w.Code != http.StatusBadRequest || errorCode(t, w) != "invalid_grant" {
		t.Fatalf("refresh(rotated token) = %d %s, want 400 invalid_grant", w.Code, w.Body)
	}
	// The whole family is revoked, including its newest token.
	if w := f.refresh(r1); w.Code != http.StatusBadRequest || errorCode(t, w) != "invalid_grant" {
		t.Errorf("refresh(newest token after reuse) = %d %s, want 400 invalid_grant", w.Code, w.Body)
	}
	if got := counter(t, f.reg, "authgate_token_reuse_total"); got != 1 {
		t.Errorf("authgate_token_reuse_total = %v, want 1", got)
	}
	if got := counter(t, f.reg, "authgate_refreshes_total", "outcome", "reuse"); got != 1 {
		t.Errorf("authgate_refreshes_total{reuse} = %v, want 1", got)
	}
	events := f.logs.FilterField(stringField("event", "refresh_token_reuse")).All()
	if len(events) != 1 {
		t.Fatalf("refresh_token_reuse events = %d, want 1", len(events))
	}
	c, _ := f.verifier.Parse(context.Background(), r1, token.TypeRefresh)
	m := events[0].ContextMap()
	if m["subject"] != "alice" || m["client_ip"] != "192.0.2.1" || (c != nil && m["family"] != c.Family) {
		t.Errorf("reuse event fields = %v", m)
	}
	for _, e := range f.logs.All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && (strings.Contains(s, r0) || strings.Contains(s, r1)) {
				t.Errorf("log entry %q contains a token", e.Message)
			}
		}
	}
	// A new login starts a new, healthy family.
	f.mustTokens(f.refresh(f.mustTokens(f.login("alice", "alice-pw")).RefreshToken))
}

func TestRefreshRejects(t *testing.T) {
	tests := []struct {
		name     string
		body     func(f *fixture, tr tokenResponse) string
		wantCode string
	}{
		{"access token as refresh token", func(_ *fixture, tr tokenResponse) string {
			return form("grant_type", "refresh_token", "refresh_token", tr.AccessToken)
		}, "invalid_grant"},
		{"garbage", func(*fixture, tokenResponse) string {
			return form("grant_type", "refresh_token", "refresh_token", "x.y.z")
		}, "invalid_grant"},
		{"tampered", func(_ *fixture, tr tokenResponse) string {
			return form("grant_type", "refresh_token", "refresh_token", tr.RefreshToken[:len(tr.RefreshToken)-2]+"AA")
		}, "invalid_grant"},
		{"missing grant_type", func(_ *fixture, tr tokenResponse) string {
			return form("refresh_token", tr.RefreshToken)
		}, "invalid_request"},
		{"password grant", func(_ *fixture, tr tokenResponse) string {
			return form("grant_type", "password", "refresh_token", tr.RefreshToken)
		}, "unsupported_grant_type"},
		{"missing token", func(*fixture, tokenResponse) string {
			return form("grant_type", "refresh_token")
		}, "invalid_request"},
		{"service token minted for refresh", func(f *fixture, _ tokenResponse) string {
			raw, _, err := f.signer.Mint(token.Grant{Subject: "svc", Type: token.TypeRefresh, TTL: time.Hour, Family: "fam"})
			if err != nil {
				t.Fatal(err)
			}
			return form("grant_type", "refresh_token", "refresh_token", raw)
		}, "invalid_grant"},
		{"expired", func(f *fixture, tr tokenResponse) string {
			f.clk.Advance(2 * time.Hour)
			return form("grant_type", "refresh_token", "refresh_token", tr.RefreshToken)
		}, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tr := f.mustTokens(f.login("alice", "alice-pw"))
			w := f.do(request{path: "/auth/refresh", body: tt.body(f, tr)})
			if w.Code != http.StatusBadRequest || errorCode(t, w) != tt.wantCode {
				t.Errorf("refresh = %d %s, want 400 %s", w.Code, w.Body, tt.wantCode)
			}
		})
	}
}

func TestRefreshJSON(t *testing.T) {
	f := newFixture(t)
	tr := f.mustTokens(f.login("alice", "alice-pw"))
	w := f.do(request{path: "/auth/refresh", contentType: "application/json",
		body: `{"grant_type":"refresh_token","refresh_token":"` + tr.RefreshToken + `"}`})
	f.mustTokens(w)
}

// TestCredentialChangesEndTokens swaps the users file the way a reload does
// and checks that older refresh and access tokens stop working at once.
func TestCredentialChangesEndTokens(t *testing.T) {
	tests := []struct {
		name     string
		newUsers string
		relogin  string // password that works afterwards, if any
	}{
		{"password changed", strings.Replace(usersYAML, hashAlice, hashAliceNew, 1), "alice-new-pw"},
		{"user disabled", strings.Replace(usersYAML, "roles: [admin, user]\n", "roles: [admin, user]\n    disabled: true\n", 1), ""},
		{"user deleted", "users:\n  - username: carol\n    password_hash: \"" + hashCarol + "\"\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tr := f.mustTokens(f.login("alice", "alice-pw"))
			f.users.Swap(parseUsers(t, tt.newUsers))
			if w := f.refresh(tr.RefreshToken); w.Code != http.StatusBadRequest || errorCode(t, w) != "invalid_grant" {
				t.Errorf("refresh(old token) = %d %s, want 400 invalid_grant", w.Code, w.Body)
			}
			if _, err := f.verifier.Verify(context.Background(), tr.AccessToken); err == nil {
				t.Error("Verify(old access token) error = nil, want an error")
			}
			if w := f.login("alice", "alice-pw"); w.Code != http.StatusBadRequest {
				t.Errorf("login with the old password = %d, want 400", w.Code)
			}
			if tt.relogin != "" {
				// The change was observed in this second; a login in the
				// next one is not refused for it.
				f.clk.Advance(time.Second)
				next := f.mustTokens(f.login("alice", tt.relogin))
				if _, err := f.verifier.Verify(context.Background(), next.AccessToken); err != nil {
					t.Errorf("Verify(access token after the change) error = %v", err)
				}
			}
		})
	}
}

// TestRefreshChecksBindingWithoutVerifierBinding checks that the issuer
// re-checks credentials itself, even with a Verifier built without them.
func TestRefreshChecksBindingWithoutVerifierBinding(t *testing.T) {
	f := newFixture(t)
	ks, _ := token.NewKeySet(token.Key{ID: "k1", Secret: []byte(strings.Repeat("s", 32))})
	f.is.verifier = token.NewVerifier(ks, token.Settings{Issuer: "authgate", Audience: "authgate"}, token.Options{Now: f.clk.Now})
	tr := f.mustTokens(f.login("alice", "alice-pw"))
	f.users.Swap(parseUsers(t, strings.Replace(usersYAML, hashAlice, hashAliceNew, 1)))
	if w := f.refresh(tr.RefreshToken); w.Code != http.StatusBadRequest {
		t.Errorf("refresh after password change = %d, want 400", w.Code)
	}
	if n := f.logs.FilterField(stringField("reason", reasonCredsChanged)).Len(); n != 1 {
		t.Errorf("credentials_changed audit events = %d, want 1", n)
	}
}

func TestRoleChangeAppliesAtRefresh(t *testing.T) {
	f := newFixture(t)
	tr := f.mustTokens(f.login("alice", "alice-pw"))
	f.users.Swap(parseUsers(t, strings.Replace(usersYAML, "roles: [admin, user]", "roles: [auditor]", 1)))
	next := f.mustTokens(f.refresh(tr.RefreshToken))
	p, err := f.verifier.Verify(context.Background(), next.AccessToken)
	if err != nil || !slices.Equal(p.Roles, []string{"auditor"}) {
		t.Errorf("roles after refresh = %v (err %v), want [auditor]", p.Roles, err)
	}
}

func TestRefreshRateLimit(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *hooks) {
		o.Limits.RefreshPerIP.Burst = 2
	})
	tr := f.mustTokens(f.login("alice", "alice-pw"))
	tr = f.mustTokens(f.refresh(tr.RefreshToken))
	if w := f.refresh("garbage"); w.Code != http.StatusBadRequest {
		t.Fatalf("refresh(garbage) = %d, want 400", w.Code)
	}
	w := f.refresh(tr.RefreshToken)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Errorf("third refresh = %d Retry-After %q, want 429 Retry-After 1", w.Code, w.Header().Get("Retry-After"))
	}
	if got := counter(t, f.reg, "authgate_rate_limited_total", "endpoint", "refresh", "key", "ip"); got != 1 {
		t.Errorf("authgate_rate_limited_total{refresh,ip} = %v, want 1", got)
	}
	f.clk.Advance(time.Second)
	f.mustTokens(f.refresh(tr.RefreshToken))
}

func TestLogout(t *testing.T) {
	f := newFixture(t)
	tr := f.mustTokens(f.login("alice", "alice-pw"))
	ctx := context.Background()
	ac, err := f.verifier.Parse(ctx, tr.AccessToken, token.TypeAccess)
	if err != nil {
		t.Fatal(err)
	}
	w := f.do(request{path: "/auth/logout", body: form("refresh_token", tr.RefreshToken),
		header: http.Header{"Authorization": {"Bearer " + tr.AccessToken}}})
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"status":"logged_out"}` {
		t.Fatalf("logout = %d %s, want 200 logged_out", w.Code, w.Body)
	}
	if w := f.refresh(tr.RefreshToken); w.Code != http.StatusBadRequest || errorCode(t, w) != "invalid_grant" {
		t.Errorf("refresh after logout = %d %s, want 400 invalid_grant", w.Code, w.Body)
	}
	if revoked, err := f.mem.IsRevoked(ctx, ac.ID); err != nil || !revoked {
		t.Errorf("IsRevoked(access jti) = %v, %v; want true", revoked, err)
	}
	if got := counter(t, f.reg, "authgate_logouts_total", "outcome", "success"); got != 1 {
		t.Errorf("authgate_logouts_total = %v, want 1", got)
	}
	// Idempotent, and a token that does not verify is not an error
	// (RFC 7009 §2.2).
	for _, rt := range []string{tr.RefreshToken, "garbage"} {
		if w := f.do(request{path: "/auth/logout", body: form("refresh_token", rt)}); w.Code != http.StatusOK {
			t.Errorf("logout again = %d, want 200", w.Code)
		}
	}
}

func TestLogoutAfterRotationRevokesNewestToken(t *testing.T) {
	f := newFixture(t)
	r0 := f.mustTokens(f.login("alice", "alice-pw")).RefreshToken
	r1 := f.mustTokens(f.refresh(r0)).RefreshToken
	if w := f.do(request{path: "/auth/logout", contentType: "application/json", body: `{"refresh_token":"` + r1 + `"}`}); w.Code != http.StatusOK {
		t.Fatalf("logout = %d, want 200", w.Code)
	}
	if w := f.refresh(r1); w.Code != http.StatusBadRequest {
		t.Errorf("refresh after logout = %d, want 400", w.Code)
	}
}

func TestLogoutBadRequests(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		rq   request
		want int
	}{
		{"GET", request{method: http.MethodGet, path: "/auth/logout"}, 405},
		{"missing token", request{path: "/auth/logout", body: form("x", "y")}, 400},
		{"token in query", request{path: "/auth/logout?refresh_token=abc", body: ""}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w := f.do(tt.rq); w.Code != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.rq.method, tt.rq.path, w.Code, tt.want)
			}
		})
	}
}

func TestRefreshAndLogoutStateUnavailable(t *testing.T) {
	tests := []struct {
		name     string
		fail     string
		endpoint string
		bearer   bool
	}{
		{"refresh limiter", "allow", "/auth/refresh", false},
		{"refresh rotate", "rotate", "/auth/refresh", false},
		{"logout limiter", "allow", "/auth/logout", false},
		{"logout revoke family", "revoke_family", "/auth/logout", false},
		{"logout revoke access token", "revoke", "/auth/logout", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := &failingStore{}
			f := newFixture(t, func(o *Options, _ *hooks) {
				fs.Store = o.State
				o.State = fs
			})
			tr := f.mustTokens(f.login("alice", "alice-pw"))
			fs.mu.Lock()
			fs.fail = map[string]bool{tt.fail: true}
			fs.mu.Unlock()
			body := form("grant_type", "refresh_token", "refresh_token", tr.RefreshToken)
			if tt.endpoint == "/auth/logout" {
				body = form("refresh_token", tr.RefreshToken)
			}
			h := http.Header{}
			if tt.bearer {
				h.Set("Authorization", "Bearer "+tr.AccessToken)
			}
			w := f.do(request{path: tt.endpoint, body: body, header: h})
			if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != "temporarily_unavailable" || w.Header().Get("Retry-After") == "" {
				t.Errorf("POST %s = %d %s Retry-After %q, want 503 temporarily_unavailable with Retry-After",
					tt.endpoint, w.Code, w.Body, w.Header().Get("Retry-After"))
			}
		})
	}
}
