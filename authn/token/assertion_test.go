package token_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/assertion"
	"github.com/authgate/authgate/authn/token"
)

func TestAsserter(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	k1 := genKey(t, token.AlgEdDSA)
	store := token.NewKeyStore(mustSet(t, token.Material{Signing: k1}))
	a, err := token.NewAsserter(store, token.AssertionSettings{Issuer: "iss", Audience: "aud", TTL: 30 * time.Second, CacheSize: 100, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	alice := authn.Principal{Subject: "alice", Roles: []string{"admin"}, Method: authn.MethodJWT, Issuer: "iss", ExpiresAt: t0.Add(time.Hour)}
	must := func(p authn.Principal, m, h, path string) string {
		t.Helper()
		raw, err := a.Assert(p, m, h, path)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	parse := func(raw string) (*jwt.Token, *assertion.Claims) {
		c := &assertion.Claims{}
		tok, _, err := jwt.NewParser().ParseUnverified(raw, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok, c
	}
	first := must(alice, "GET", "h", "/a")
	tok, c := parse(first)
	if tok.Header["typ"] != assertion.Type || tok.Header["kid"] != store.Keys().SigningKeyID() || c.Request.Path != "/a" || c.ExpiresAt.Sub(c.IssuedAt.Time) != 30*time.Second {
		t.Fatalf("assertion header %v claims %+v", tok.Header, c)
	}
	if again := must(alice, "GET", "h", "/a"); again != first {
		t.Error("an identical request within TTL/2 was signed again")
	}
	for _, other := range []string{must(alice, "GET", "h", "/b"), must(alice, "POST", "h", "/a"), must(alice, "GET", "h2", "/a"),
		must(authn.Principal{Subject: "alice", Roles: []string{"admin", "x"}, Method: authn.MethodJWT, Issuer: "iss", ExpiresAt: t0.Add(time.Hour)}, "GET", "h", "/a")} {
		if other == first {
			t.Error("another request or caller reused the assertion")
		}
	}
	now = t0.Add(16 * time.Second)
	if must(alice, "GET", "h", "/a") == first {
		t.Error("reused past half its lifetime")
	}
	store.Swap(mustSet(t, token.Material{Signing: genKey(t, token.AlgES256)}))
	if _, c2 := parse(must(alice, "GET", "h", "/a")); c2 == nil {
		t.Fatal("no assertion after a rotation")
	} else if tok, _ := parse(must(alice, "GET", "h", "/a")); tok.Header["alg"] != "ES256" {
		t.Error("an assertion of the replaced key was reused")
	}
	// Never past the credential.
	short := alice
	short.ExpiresAt = now.Add(5 * time.Second)
	if _, c := parse(must(short, "GET", "h", "/a")); !c.ExpiresAt.Time.Equal(short.ExpiresAt.Truncate(time.Second)) {
		t.Errorf("exp %v, want the credential's %v", c.ExpiresAt, short.ExpiresAt)
	}
	// Anonymous.
	if _, c := parse(must(authn.Principal{Method: authn.MethodNone}, "GET", "h", "/public")); c.Subject != "" || c.AuthMethod != assertion.MethodNone {
		t.Errorf("anonymous claims %+v", c)
	}
	// Never with a shared secret.
	hs, _ := token.NewAsserter(mustKeySet(t, keyA), token.AssertionSettings{Issuer: "iss", Audience: "aud", TTL: time.Second})
	if _, err := hs.Assert(alice, "GET", "h", "/a"); err == nil {
		t.Error("an assertion was signed with an HMAC secret")
	}
	if _, err := token.NewAsserter(store, token.AssertionSettings{Issuer: "iss", Audience: "aud", TTL: 2 * time.Minute}); err == nil {
		t.Error("a 2m assertion ttl was accepted")
	}
}

// BenchmarkAssert is one assertion: "reused" for a repeated request,
// "signed" with the cache off (one signature each), per algorithm.
func BenchmarkAssert(b *testing.B) {
	p := authn.Principal{Subject: "alice", Roles: []string{"admin", "user"}, Method: authn.MethodJWT, Issuer: "https://login.example.com", ExpiresAt: time.Now().Add(time.Hour)}
	for _, alg := range []string{token.AlgEdDSA, token.AlgES256} {
		priv, _ := token.GenerateKey(alg)
		ks, _ := token.NewKeySetFrom(token.Material{Signing: priv})
		for _, c := range []struct {
			name string
			size int
		}{{"reused", 1000}, {"signed", 0}} {
			a, _ := token.NewAsserter(ks, token.AssertionSettings{Issuer: "https://login.example.com", Audience: "http://127.0.0.1:8081", TTL: 30 * time.Second, CacheSize: c.size})
			b.Run(alg+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := a.Assert(p, "GET", "app.example.com", "/api/items/42"); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
