package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/config"
)

// mint signs claims with method and key, with kid k1 unless kid is set.
func mint(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid == "" {
		kid = "k1"
	}
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// goodClaims are valid access-token claims for subject alice with roles.
func goodClaims(roles ...string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": "authgate", "aud": "authgate", "sub": "alice", "jti": token.NewID(),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"type": "access", "roles": roles,
	}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestE2EValidCredentialsCarryIdentity(t *testing.T) {
	e := newEnv(t, "", nil)
	access, _, err := e.app.Signer().Mint(token.Grant{Subject: "svc-alice", Roles: []string{"user", "admin"}, Type: token.TypeAccess, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		hdr        []string
		path       string
		wantHeader map[string]string
		wantAbsent []string
	}{
		{"own JWT", []string{"Authorization", "Bearer " + access}, "/admin/panel?x=1",
			map[string]string{"X-Auth-Subject": "svc-alice", "X-Auth-Roles": "admin,user", "X-Auth-Method": "jwt"},
			[]string{"Authorization", "X-Auth-Key-Name"}},
		{"API key", []string{"X-API-Key", testAPIKey}, "/admin/panel?x=1",
			map[string]string{"X-Auth-Subject": "admin-bot", "X-Auth-Roles": "admin", "X-Auth-Method": "apikey", "X-Auth-Key-Name": "admin-bot"},
			[]string{"X-Api-Key"}},
		{"public path, anonymous", nil, "/public/a?x=1", nil,
			[]string{"X-Auth-Subject", "X-Auth-Roles", "X-Auth-Method"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do("GET", tc.path, tc.hdr...)
			if resp.StatusCode != 200 || body != "upstream ok" {
				t.Fatalf("GET %s = %d %q, want 200 from upstream", tc.path, resp.StatusCode, body)
			}
			got := e.up.last(t)
			for k, v := range tc.wantHeader {
				if g := got.Header.Get(k); g != v {
					t.Errorf("upstream saw %s = %q, want %q", k, g, v)
				}
			}
			for _, k := range tc.wantAbsent {
				if _, ok := got.Header[k]; ok {
					t.Errorf("upstream saw %s, want it removed", k)
				}
			}
			if got.RawQuery != "x=1" {
				t.Errorf("upstream query = %q, want x=1", got.RawQuery)
			}
			if rid := resp.Header.Get("X-Request-Id"); rid == "" || got.Header.Get("X-Request-Id") != rid {
				t.Errorf("request id: client %q, upstream %q; want the same non-empty id", rid, got.Header.Get("X-Request-Id"))
			}
		})
	}
}

func TestE2EBadTokensAre401AndNeverReachUpstream(t *testing.T) {
	e := newEnv(t, "", nil)
	secret := []byte(testSecret)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	refresh, _, _ := e.app.Signer().Mint(token.Grant{Subject: "alice", Roles: []string{"admin"}, Type: token.TypeRefresh, TTL: time.Hour, Family: "f1"})
	past := time.Now().Add(-time.Hour)
	tests := []struct {
		name  string
		token string
	}{
		{"expired", mint(t, jwt.SigningMethodHS256, secret, with(with(goodClaims("admin"), "exp", past.Unix()), "iat", past.Add(-time.Hour).Unix()), "")},
		{"wrong signature", mint(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef0123"), goodClaims("admin"), "")},
		{"alg none", mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, goodClaims("admin"), "")},
		{"HS256 keyed with an RSA public key", mint(t, jwt.SigningMethodHS256, pubDER, goodClaims("admin"), "")},
		{"RS256", mint(t, jwt.SigningMethodRS256, rsaKey, goodClaims("admin"), "")},
		{"wrong issuer", mint(t, jwt.SigningMethodHS256, secret, with(goodClaims("admin"), "iss", "evil"), "")},
		{"wrong audience", mint(t, jwt.SigningMethodHS256, secret, with(goodClaims("admin"), "aud", "other-app"), "")},
		{"no exp", mint(t, jwt.SigningMethodHS256, secret, with(goodClaims("admin"), "exp", nil), "")},
		{"exp zero", mint(t, jwt.SigningMethodHS256, secret, with(goodClaims("admin"), "exp", 0), "")},
		{"not yet valid", mint(t, jwt.SigningMethodHS256, secret, with(goodClaims("admin"), "nbf", time.Now().Add(time.Hour).Unix()), "")},
		{"issued in the future", mint(t, jwt.SigningMethodHS256, secret, with(goodClaims("admin"), "iat", time.Now().Add(time.Hour).Unix()), "")},
		{"refresh token as access", refresh},
		{"no type claim", mint(t, jwt.SigningMethodHS256, secret, with(goodClaims("admin"), "type", nil), "")},
		{"unknown kid", mint(t, jwt.SigningMethodHS256, secret, goodClaims("admin"), "k9")},
		{"garbage", "not-a-token"},
		{"three garbage parts", "a.b.c"},
		{"empty subject", mint(t, jwt.SigningMethodHS256, secret, with(goodClaims("admin"), "sub", ""), "")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.up.count()
			for _, path := range []string{"/admin/x", "/public/x"} {
				resp, body := e.do("GET", path, "Authorization", "Bearer "+tc.token)
				assertJSONError(t, resp, body, http.StatusUnauthorized)
				if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate = %q, want error=\"invalid_token\"", ch)
				}
				if strings.Contains(body, tc.token) {
					t.Error("error body echoes the token")
				}
			}
			if n := e.up.count() - before; n != 0 {
				t.Errorf("upstream saw %d requests, want 0", n)
			}
		})
	}
	t.Run("missing credential on a protected path", func(t *testing.T) {
		resp, body := e.do("GET", "/api/x")
		assertJSONError(t, resp, body, http.StatusUnauthorized)
		if ch := resp.Header.Get("WWW-Authenticate"); ch != `Bearer realm="authgate"` {
			t.Errorf("WWW-Authenticate = %q", ch)
		}
	})
	t.Run("other schemes", func(t *testing.T) {
		for _, h := range []string{"Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer a b", "bearer"} {
			resp, body := e.do("GET", "/public/x", "Authorization", h)
			assertJSONError(t, resp, body, http.StatusUnauthorized)
		}
	})
	t.Run("bad API keys", func(t *testing.T) {
		for _, k := range []string{"wrong", "agk_expired_key_0123456789", testAPIKey + "x", ""} {
			resp, body := e.do("GET", "/public/x", "X-API-Key", k)
			assertJSONError(t, resp, body, http.StatusUnauthorized)
		}
		resp, body := e.do("GET", "/public/x", "X-API-Key", testAPIKey, "X-API-Key", testAPIKey)
		assertJSONError(t, resp, body, http.StatusUnauthorized)
	})
	t.Run("bearer and API key together", func(t *testing.T) {
		good, _, _ := e.app.Signer().Mint(token.Grant{Subject: "alice", Roles: []string{"admin"}, Type: token.TypeAccess, TTL: time.Minute})
		resp, body := e.do("GET", "/admin/x", "Authorization", "Bearer "+good, "X-API-Key", testAPIKey)
		assertJSONError(t, resp, body, http.StatusBadRequest)
	})
	if n := e.up.count(); n != 0 {
		t.Errorf("upstream saw %d requests in total, want 0", n)
	}
}

func TestE2EAuthorization(t *testing.T) {
	e := newEnv(t, "", nil)
	tok := func(roles ...string) string {
		s, _, err := e.app.Signer().Mint(token.Grant{Subject: "svc-bob", Roles: roles, Type: token.TypeAccess, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + s
	}
	tests := []struct {
		name, method, path string
		hdr                []string
		want               int
	}{
		{"role-less caller on a role rule", "GET", "/admin/x", []string{"Authorization", tok()}, 403},
		{"wrong role", "GET", "/admin/x", []string{"Authorization", tok("user")}, 403},
		{"right role", "GET", "/admin/x", []string{"Authorization", tok("admin")}, 200},
		{"any-of roles", "GET", "/reports/q3", []string{"X-API-Key", testReaderKey}, 200},
		{"method not in rule, authenticated", "POST", "/reports/q3", []string{"X-API-Key", testReaderKey}, 403},
		{"method not in rule, anonymous", "POST", "/reports/q3", nil, 401},
		{"* is one segment", "GET", "/reports/q3/detail", []string{"X-API-Key", testAPIKey}, 403},
		{"unmatched path, anonymous", "GET", "/nothing", nil, 401},
		{"unmatched path, authenticated", "GET", "/nothing", []string{"X-API-Key", testAPIKey}, 403},
		{"root unmatched", "GET", "/", []string{"X-API-Key", testAPIKey}, 403},
		{"authenticated rule", "DELETE", "/api/v1/items/7", []string{"Authorization", tok()}, 200},
		{"public rule", "POST", "/public/form", nil, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.up.count()
			resp, body := e.do(tc.method, tc.path, tc.hdr...)
			if tc.want != 200 {
				assertJSONError(t, resp, body, tc.want)
				if e.up.count() != before {
					t.Errorf("upstream saw a denied request")
				}
				return
			}
			if resp.StatusCode != 200 || e.up.count() != before+1 {
				t.Fatalf("%s %s = %d %q, want 200 via upstream", tc.method, tc.path, resp.StatusCode, body)
			}
		})
	}
}

func TestE2ESpoofedIdentityHeadersNeverArrive(t *testing.T) {
	e := newEnv(t, "", nil)
	spoofs := []string{"X-Auth-Subject", "x-auth-subject", "X_Auth_Subject", "x_auth_roles", "X-AUTH-ROLES", "X-Auth_Method", "X_AUTH_KEY_NAME", "X-Auth-Key-Name"}
	for _, path := range []string{"/public/x", "/api/x"} {
		for _, h := range spoofs {
			t.Run(path+" "+h, func(t *testing.T) {
				// Sent raw: the Go client would canonicalize the names.
				req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nX-API-Key: " + testReaderKey + "\r\n" + h + ": admin\r\nConnection: close\r\n\r\n"
				code, body := raw(t, e.addr(), req)
				if code != 200 {
					t.Fatalf("status %d %s", code, body)
				}
				got := e.up.last(t)
				for k, v := range got.Header {
					norm := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
					if strings.HasPrefix(norm, "x-auth-") && strings.Join(v, ",") == "admin" {
						t.Errorf("upstream saw spoofed %s: %v", k, v)
					}
				}
				if got.Header.Get("X-Auth-Subject") != "reader-bot" {
					t.Errorf("upstream subject = %q, want reader-bot", got.Header.Get("X-Auth-Subject"))
				}
			})
		}
	}
	t.Run("Connection cannot remove identity headers", func(t *testing.T) {
		e.do("GET", "/api/x", "X-API-Key", testReaderKey, "Connection", "X-Auth-Subject, X-Auth-Roles")
		got := e.up.last(t)
		if got.Header.Get("X-Auth-Subject") != "reader-bot" || got.Header.Get("X-Auth-Roles") != "reader" {
			t.Errorf("identity headers = %q/%q, want reader-bot/reader", got.Header.Get("X-Auth-Subject"), got.Header.Get("X-Auth-Roles"))
		}
	})
}

func TestE2EForwardedHeaders(t *testing.T) {
	t.Run("untrusted peer", func(t *testing.T) {
		e := newEnv(t, "", nil)
		e.do("GET", "/public/x", "X-Forwarded-For", "6.6.6.6", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil", "X_Forwarded_For", "7.7.7.7", "Forwarded", "for=8.8.8.8")
		got := e.up.last(t)
		if xff := got.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want the peer only", xff)
		}
		if p := got.Header.Get("X-Forwarded-Proto"); p != "http" {
			t.Errorf("X-Forwarded-Proto = %q, want http", p)
		}
		if h := got.Header.Get("X-Forwarded-Host"); h == "evil" {
			t.Errorf("X-Forwarded-Host = %q, want the request host", h)
		}
		for _, k := range []string{"X_forwarded_for", "Forwarded", "X_Forwarded_For"} {
			if _, ok := got.Header[k]; ok {
				t.Errorf("upstream saw %s", k)
			}
		}
	})
	t.Run("trusted peer", func(t *testing.T) {
		e := newEnv(t, "", nil, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.0/8", "::1"} })
		e.do("GET", "/public/x", "X-Forwarded-For", "203.0.113.9", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example")
		got := e.up.last(t)
		if xff := got.Header.Get("X-Forwarded-For"); xff != "203.0.113.9, 127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want the chain with the peer appended", xff)
		}
		if got.Header.Get("X-Forwarded-Proto") != "https" || got.Header.Get("X-Forwarded-Host") != "app.example" {
			t.Errorf("trusted X-Forwarded-Proto/Host not kept: %q %q", got.Header.Get("X-Forwarded-Proto"), got.Header.Get("X-Forwarded-Host"))
		}
	})
	t.Run("host header", func(t *testing.T) {
		e := newEnv(t, "", nil)
		e.do("GET", "/public/x")
		if h := e.up.last(t).Host; h != e.addr() {
			t.Errorf("preserve: upstream Host = %q, want the client's %q", h, e.addr())
		}
		e2 := newEnv(t, "", nil, func(c *config.Config) { c.Upstream.HostHeader = "upstream" })
		e2.do("GET", "/public/x")
		if h := e2.up.last(t).Host; h != strings.TrimPrefix(e2.upstream.URL, "http://") {
			t.Errorf("upstream: upstream Host = %q, want %q", h, strings.TrimPrefix(e2.upstream.URL, "http://"))
		}
	})
	t.Run("authorization forwarding is opt-in", func(t *testing.T) {
		e := newEnv(t, "", nil, func(c *config.Config) { c.Upstream.ForwardAuthorization = true })
		tok, _, _ := e.app.Signer().Mint(token.Grant{Subject: "a", Type: token.TypeAccess, TTL: time.Minute})
		e.do("GET", "/api/x", "Authorization", "Bearer "+tok)
		if got := e.up.last(t).Header.Get("Authorization"); got != "Bearer "+tok {
			t.Errorf("Authorization not forwarded with forward_authorization")
		}
	})
}

func TestE2ERequestTargetChecks(t *testing.T) {
	e := newEnv(t, "", nil)
	tests := []struct {
		name, req string
		want      int
	}{
		{"opaque target", "GET http:admin/users HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"CONNECT", "CONNECT upstream:443 HTTP/1.1\r\nHost: upstream:443\r\n\r\n", 405},
		{"TRACE", "TRACE /public/x HTTP/1.1\r\nHost: x\r\n\r\n", 405},
		{"lower-case method", "get /public/x HTTP/1.1\r\nHost: x\r\n\r\n", 405},
		{"h2c upgrade", "GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", 400},
		{"absolute form is fine", "GET http://x/public/ok HTTP/1.1\r\nHost: x\r\n\r\n", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.up.count()
			code, body := raw(t, e.addr(), strings.Replace(tc.req, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
			if code != tc.want {
				t.Fatalf("%q = %d %s, want %d", firstLine(tc.req), code, body, tc.want)
			}
			if tc.want != 200 && e.up.count() != before {
				t.Errorf("upstream saw a rejected request")
			}
		})
	}
}

func TestE2EUpstreamFailures(t *testing.T) {
	t.Run("upstream down is 502", func(t *testing.T) {
		e := newEnv(t, "", nil)
		e.upstream.Close()
		resp, body := e.do("GET", "/public/x")
		assertJSONError(t, resp, body, http.StatusBadGateway)
	})
	t.Run("upstream slow is 504", func(t *testing.T) {
		release := make(chan struct{})
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		e := newEnv(t, "", slow, func(c *config.Config) { c.Upstream.ResponseHeaderTimeout = 200 * time.Millisecond })
		defer close(release)
		start := time.Now()
		resp, body := e.do("GET", "/slow")
		assertJSONError(t, resp, body, http.StatusGatewayTimeout)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("504 took %v", d)
		}
	})
}

func TestE2EStreamingFlushesIncrementally(t *testing.T) {
	next := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-next
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	e := newEnv(t, "", h)
	req, _ := http.NewRequest("GET", e.gw.URL+"/stream", nil)
	req.Header.Set("X-API-Key", testReaderKey)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	n, err := resp.Body.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "data: one") {
		t.Fatalf("first event not delivered before the upstream finished: %q %v", buf[:n], err)
	}
	close(next)
	rest, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(rest), "data: two") {
		t.Errorf("second event missing: %q", rest)
	}
}

func TestE2EWebSocketEcho(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Auth-Subject") != "reader-bot" {
			http.Error(w, "no identity", 400)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		_ = c.Write(r.Context(), typ, msg)
		_ = c.Close(websocket.StatusNormalClosure, "")
	})
	e := newEnv(t, "", echo)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(e.gw.URL, "http") + "/ws"
	if _, resp, err := websocket.Dial(ctx, url, nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("anonymous WebSocket upgrade: err=%v resp=%v, want 401", err, resp)
	}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"X-API-Key": {testReaderKey}}})
	if err != nil {
		t.Fatalf("dial through gateway: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "hello" {
		t.Fatalf("echo = %q %v, want hello", msg, err)
	}
}
