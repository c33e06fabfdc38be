package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// mintAssertion signs an assertion like the gateway's with key, for the
// request method, host and path given.
func mintAssertion(t *testing.T, key ed25519.PrivateKey, aud, typ, method, host, path string) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": ownIssuer, "aud": aud, "sub": benchSubject, "auth_method": authMethodJWT,
		"iat": now.Unix(), "exp": now.Add(30 * time.Second).Unix(), "jti": randomHex(8),
		"req": map[string]string{"method": method, "host": host, "path": path}}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["typ"] = typ
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestVerifyAssertion drives the assertion check through an upstream
// recorder: it passes only when every request carried an assertion that
// verifies and binds the benchmark's request, and when the reuse matches
// the mode (reused with the cache, fresh without).
func TestVerifyAssertion(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	const up = "http://127.0.0.1:1234"
	good := func() string { return mintAssertion(t, key, up, assertTyp, http.MethodGet, "127.0.0.1:1234", apiPath) }
	same := good()
	always := func(a string) func(int) string { return func(int) string { return a } }
	for _, c := range []struct {
		name    string
		fresh   bool
		send    func(i int) string // the assertion of request i; "" sends none
		wantErr string
	}{
		{"reused, cached mode", false, always(same), ""},
		{"fresh, signing mode", true, func(int) string { return good() }, ""},
		{"reused in the signing mode", true, always(same), "assertions are being reused"},
		{"fresh in the cached mode", false, func(int) string { return good() }, "assertion cache is not used"},
		{"some requests without one", false, func(i int) string {
			if i%2 == 0 {
				return ""
			}
			return same
		}, "received 10 requests with"},
		{"wrong key", false, always(mintAssertion(t, other, up, assertTyp, "GET", "127.0.0.1:1234", apiPath)), "does not verify"},
		{"wrong audience", false, always(mintAssertion(t, key, "authgate", assertTyp, "GET", "127.0.0.1:1234", apiPath)), "does not verify"},
		{"an access token's typ", false, always(mintAssertion(t, key, up, "JWT", "GET", "127.0.0.1:1234", apiPath)), "typ"},
		{"bound to another path", false, always(mintAssertion(t, key, up, assertTyp, "GET", "127.0.0.1:1234", "/admin")), "want bench-user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := upstreamHandler()
			fx := &fixtures{Features: &featureState{Upstream: rec, SigningKey: key, UpstreamURL: up}}
			for i := range 20 {
				req := httptest.NewRequest(http.MethodGet, apiPath, nil)
				if a := c.send(i); a != "" {
					req.Header.Set(assertHeader, a)
				}
				rec.ServeHTTP(httptest.NewRecorder(), req)
			}
			err := verifyAssertion(c.fresh)(fx, promSnapshot{}, promSnapshot{}, loadResult{Requests: 20})
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("verifyAssertion(%v) = %v, want nil", c.fresh, err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("verifyAssertion(%v) = %v, want %q", c.fresh, err, c.wantErr)
			}
		})
	}
}

func TestVerifyRuleHitsAndRateLimit(t *testing.T) {
	res := loadResult{Requests: 100}
	hits := func(rule string, n int) promSnapshot {
		return snap(t, fmt.Sprintf("authgate_policy_rule_hits_total{decision=\"allow\",rule_id=%q} %d\n", rule, n))
	}
	if err := verifyRuleHits(celRule)(nil, hits(celRule, 5), hits(celRule, 105), res); err != nil {
		t.Errorf("every request by the rule: verifyRuleHits() = %v", err)
	}
	if err := verifyRuleHits(celRule)(nil, hits("api", 5), hits("api", 105), res); err == nil {
		t.Errorf("requests allowed by a broader rule: verifyRuleHits() = nil, want an error")
	}
	limit := func(allowed, limited, storeErr int) promSnapshot {
		return snap(t, fmt.Sprintf("authgate_rate_limit_total{result=\"allowed\",rule_id=%q} %d\n"+
			"authgate_rate_limit_total{result=\"limited\",rule_id=%q} %d\n"+
			"authgate_rate_limit_total{result=\"store_error\",rule_id=%q} %d\n", limitRule, allowed, limitRule, limited, limitRule, storeErr))
	}
	for _, c := range []struct {
		name    string
		after   promSnapshot
		wantErr string
	}{
		{"every request through the bucket", limit(100, 0, 0), ""},
		{"no bucket (limit not configured)", limit(0, 0, 0), "counted 0 allowed"},
		{"some refused", limit(100, 3, 0), "refused 3"},
		{"store errors (fail open)", limit(100, 0, 2), "2 store errors"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := verifyRateLimit(nil, limit(0, 0, 0), c.after, res)
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("verifyRateLimit() = %v, want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("verifyRateLimit() = %v, want %q", err, c.wantErr)
			}
		})
	}
}
