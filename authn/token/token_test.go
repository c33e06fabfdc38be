package token_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/token"
)

var (
	t0       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	settings = token.Settings{Issuer: "authgate", Audience: "gateway", Leeway: 30 * time.Second}
	keyA     = token.Key{ID: "a", Secret: []byte(strings.Repeat("A", token.MinSecretBytes))}
	keyB     = token.Key{ID: "b", Secret: []byte(strings.Repeat("B", token.MinSecretBytes))}
)

func at(tm time.Time) func() time.Time { return func() time.Time { return tm } }

func mustKeySet(t *testing.T, current token.Key, previous ...token.Key) *token.KeySet {
	t.Helper()
	ks, err := token.NewKeySet(current, previous...)
	if err != nil {
		t.Fatalf("NewKeySet(%q) error = %v", current.ID, err)
	}
	return ks
}

func mint(t *testing.T, ks *token.KeySet, now time.Time, g token.Grant) (string, *token.Claims) {
	t.Helper()
	raw, c, err := token.NewSigner(ks, settings, token.Options{Now: at(now)}).Mint(g)
	if err != nil {
		t.Fatalf("Mint(%+v) error = %v", g, err)
	}
	return raw, c
}

// sign builds a token by hand, for claims the Signer never produces.
func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("SignedString(%s) error = %v", m.Alg(), err)
	}
	return s
}

// claims returns valid access-token claims at t0 that a test can spoil.
func claims() *token.Claims {
	return &token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    settings.Issuer,
			Subject:   "alice",
			Audience:  jwt.ClaimStrings{settings.Audience},
			ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
			IssuedAt:  jwt.NewNumericDate(t0),
			NotBefore: jwt.NewNumericDate(t0),
			ID:        "jti-1",
		},
		Roles: []string{"user"},
		Type:  token.TypeAccess,
	}
}

func TestNewKeySet(t *testing.T) {
	short := []byte("0123456789")
	tests := []struct {
		name     string
		current  token.Key
		previous []token.Key
		want     []string // substrings of the error; nil means success
	}{
		{name: "one key", current: keyA},
		{name: "with previous keys", current: keyA, previous: []token.Key{keyB}},
		{name: "short signing secret", current: token.Key{ID: "a", Secret: short},
			want: []string{`token: signing key (kid "a"): secret is 10 bytes, need at least 32`}},
		{name: "empty signing secret", current: token.Key{ID: "a"},
			want: []string{`secret is 0 bytes`}},
		{name: "empty kid", current: token.Key{Secret: keyA.Secret},
			want: []string{"token: signing key: empty kid"}},
		{name: "duplicate kid", current: keyA, previous: []token.Key{keyB, {ID: "a", Secret: keyB.Secret}},
			want: []string{`token: previous key 2: duplicate kid "a"`}},
		{name: "every problem joined", current: token.Key{Secret: keyA.Secret},
			previous: []token.Key{{ID: "b", Secret: short}, keyB},
			want: []string{
				"token: signing key: empty kid",
				`token: previous key 1 (kid "b"): secret is 10 bytes`,
				`token: previous key 2: duplicate kid "b"`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := token.NewKeySet(tt.current, tt.previous...)
			if tt.want == nil {
				if err != nil || ks == nil {
					t.Fatalf("NewKeySet() = %v, %v; want a key set", ks, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewKeySet() error = nil, want %q", tt.want)
			}
			if ks != nil {
				t.Errorf("NewKeySet() returned a key set along with error %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewKeySet() error = %q, want it to contain %q", err, w)
				}
			}
			if got, want := strings.Count(err.Error(), "\n")+1, len(tt.want); got != want {
				t.Errorf("NewKeySet() reported %d problems, want %d: %q", got, want, err)
			}
			if strings.Contains(err.Error(), string(short)) {
				t.Errorf("NewKeySet() error %q leaks the secret", err)
			}
		})
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	ks := mustKeySet(t, keyA)
	now := t0.Add(500 * time.Millisecond) // Mint truncates to the second.
	raw, c := mint(t, ks, now, token.Grant{
		Subject: "alice", Roles: []string{"user", "admin", "user", ""}, Type: token.TypeAccess, TTL: time.Hour,
	})
	if c.IssuedAt.Time != t0 || c.ExpiresAt.Time != t0.Add(time.Hour) || c.NotBefore.Time != t0 {
		t.Errorf("Mint() claims iat=%v nbf=%v exp=%v, want iat=nbf=%v exp=+1h", c.IssuedAt, c.NotBefore, c.ExpiresAt, t0)
	}
	if c.ID == "" {
		t.Error("Mint() claims have no jti")
	}
	v := token.NewVerifier(ks, settings, token.Options{Now: at(now.Add(time.Minute))})
	if v.Issuer() != "authgate" {
		t.Errorf("Issuer() = %q, want authgate", v.Issuer())
	}
	p, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("Verify(minted token) error = %v", err)
	}
	want := authn.Principal{
		Subject: "alice", Roles: []string{"admin", "user"}, Method: authn.MethodJWT,
		Issuer: "authgate", TokenID: c.ID, ExpiresAt: t0.Add(time.Hour),
	}
	if p.Subject != want.Subject || !slices.Equal(p.Roles, want.Roles) || p.Method != want.Method ||
		p.Issuer != want.Issuer || p.TokenID != want.TokenID || !p.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("Verify() = %+v, want %+v", p, want)
	}
	got, err := v.Parse(context.Background(), raw, token.TypeAccess)
	if err != nil {
		t.Fatalf("Parse(access) error = %v", err)
	}
	if got.ID != c.ID || got.Type != token.TypeAccess {
		t.Errorf("Parse() = jti %q type %q, want %q access", got.ID, got.Type, c.ID)
	}
}

func TestMintRejectsBadGrants(t *testing.T) {
	s := token.NewSigner(mustKeySet(t, keyA), settings, token.Options{Now: at(t0)})
	tests := []struct {
		name string
		g    token.Grant
	}{
		{"unknown type", token.Grant{Subject: "a", Type: "id", TTL: time.Hour}},
		{"empty type", token.Grant{Subject: "a", TTL: time.Hour}},
		{"empty subject", token.Grant{Type: token.TypeAccess, TTL: time.Hour}},
		{"zero ttl", token.Grant{Subject: "a", Type: token.TypeAccess}},
		{"negative ttl", token.Grant{Subject: "a", Type: token.TypeAccess, TTL: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if raw, _, err := s.Mint(tt.g); err == nil || raw != "" {
				t.Errorf("Mint(%+v) = %q, %v; want an error", tt.g, raw, err)
			}
		})
	}
}

func TestTokenTypeConfusion(t *testing.T) {
	ks := mustKeySet(t, keyA)
	v := token.NewVerifier(ks, settings, token.Options{Now: at(t0)})
	access, _ := mint(t, ks, t0, token.Grant{Subject: "alice", Type: token.TypeAccess, TTL: time.Hour})
	refresh, _ := mint(t, ks, t0, token.Grant{Subject: "alice", Type: token.TypeRefresh, TTL: time.Hour, Family: "fam"})
	tests := []struct {
		name    string
		raw     string
		typ     string
		wantErr bool
	}{
		{"access as access", access, token.TypeAccess, false},
		{"refresh as refresh", refresh, token.TypeRefresh, false},
		{"refresh as access", refresh, token.TypeAccess, true},
		{"access as refresh", access, token.TypeRefresh, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Parse(context.Background(), tt.raw, tt.typ)
			if tt.wantErr != (err != nil) {
				t.Fatalf("Parse(%s) error = %v, want error %v", tt.typ, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, authn.ErrInvalidToken) {
				t.Errorf("Parse(%s) error = %v, want ErrInvalidToken", tt.typ, err)
			}
		})
	}
	if _, err := v.Verify(context.Background(), refresh); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("Verify(refresh token) error = %v, want ErrInvalidToken", err)
	}
}

func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	oldSet := mustKeySet(t, keyA)
	rotated := mustKeySet(t, keyB, keyA)
	retired := mustKeySet(t, keyB)

	old, _ := mint(t, oldSet, t0, token.Grant{Subject: "alice", Type: token.TypeAccess, TTL: time.Hour})
	if _, err := token.NewVerifier(rotated, settings, token.Options{Now: at(t0)}).Verify(ctx, old); err != nil {
		t.Errorf("Verify(token of previous key) error = %v, want success while the key is listed", err)
	}
	_, err := token.NewVerifier(retired, settings, token.Options{Now: at(t0)}).Verify(ctx, old)
	if !errors.Is(err, authn.ErrInvalidToken) || !strings.Contains(err.Error(), `unknown kid "a"`) {
		t.Errorf("Verify(token of removed key) error = %v, want ErrInvalidToken for unknown kid", err)
	}

	fresh, _ := mint(t, rotated, t0, token.Grant{Subject: "alice", Type: token.TypeAccess, TTL: time.Hour})
	parsed, _, err := jwt.NewParser().ParseUnverified(fresh, &token.Claims{})
	if err != nil {
		t.Fatalf("ParseUnverified(new token) error = %v", err)
	}
	if kid := parsed.Header["kid"]; kid != "b" {
		t.Errorf("new token kid = %v, want the current key b", kid)
	}
	if _, err := token.NewVerifier(retired, settings, token.Options{Now: at(t0)}).Verify(ctx, fresh); err != nil {
		t.Errorf("Verify(new token) with only the current key error = %v", err)
	}
	// A token signed with key a's secret but naming kid b must fail: the
	// kid selects the secret, it does not widen the set.
	forged := sign(t, jwt.SigningMethodHS256, keyA.Secret, "b", claims())
	if _, err := token.NewVerifier(rotated, settings, token.Options{Now: at(t0)}).Verify(ctx, forged); err == nil {
		t.Error("Verify(token signed by key a with kid b) error = nil, want signature failure")
	}
}

func TestZeroKeySetVerifiesNothing(t *testing.T) {
	// A token signed with an empty HMAC key and no kid is what a missing
	// secret would produce.
	raw := sign(t, jwt.SigningMethodHS256, []byte{}, "", claims())
	v := token.NewVerifier(&token.KeySet{}, settings, token.Options{Now: at(t0)})
	if _, err := v.Verify(context.Background(), raw); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("Verify(empty-key token) with zero KeySet error = %v, want ErrInvalidToken", err)
	}
}

type recordingBinding struct {
	mu       sync.Mutex
	subjects []string
	vers     []string
	err      error
}

func (b *recordingBinding) CheckBinding(_ context.Context, c *token.Claims) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subjects = append(b.subjects, c.Subject)
	b.vers = append(b.vers, c.Ver)
	return b.err
}

func TestBinding(t *testing.T) {
	stale := errors.New("credentials changed")
	ks := mustKeySet(t, keyA)
	raw, _ := mint(t, ks, t0, token.Grant{Subject: "alice", Type: token.TypeAccess, TTL: time.Hour, Ver: "v1"})
	tests := []struct {
		name string
		err  error
	}{
		{"binding accepts", nil},
		{"binding rejects", stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &recordingBinding{err: tt.err}
			v := token.NewVerifier(ks, settings, token.Options{Now: at(t0), Binding: b})
			_, err := v.Verify(context.Background(), raw)
			if !slices.Equal(b.subjects, []string{"alice"}) || !slices.Equal(b.vers, []string{"v1"}) {
				t.Errorf("CheckBinding called with subjects %q vers %q, want [alice] [v1]", b.subjects, b.vers)
			}
			switch {
			case tt.err == nil && err != nil:
				t.Errorf("Verify() error = %v, want success", err)
			case tt.err != nil && (!errors.Is(err, authn.ErrInvalidToken) || !errors.Is(err, tt.err)):
				t.Errorf("Verify() error = %v, want ErrInvalidToken wrapping %v", err, tt.err)
			}
		})
	}
	t.Run("binding not consulted for a bad signature", func(t *testing.T) {
		b := &recordingBinding{}
		v := token.NewVerifier(ks, settings, token.Options{Now: at(t0), Binding: b})
		if _, err := v.Verify(context.Background(), raw[:len(raw)-2]+"xx"); err == nil {
			t.Fatal("Verify(tampered signature) error = nil")
		}
		if len(b.subjects) != 0 {
			t.Errorf("CheckBinding called %d times for an unverified token, want 0", len(b.subjects))
		}
	})
}

func TestLeeway(t *testing.T) {
	ks := mustKeySet(t, keyA)
	raw, _ := mint(t, ks, t0, token.Grant{Subject: "alice", Type: token.TypeAccess, TTL: time.Minute})
	exp := t0.Add(time.Minute)
	tests := []struct {
		name    string
		now     time.Time
		wantErr bool
	}{
		{"before exp", exp.Add(-time.Second), false},
		{"inside leeway after exp", exp.Add(settings.Leeway - time.Second), false},
		{"past leeway", exp.Add(settings.Leeway + time.Second), true},
		{"issued in the future within leeway", t0.Add(-settings.Leeway + time.Second), false},
		{"issued in the future beyond leeway", t0.Add(-settings.Leeway - time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := token.NewVerifier(ks, settings, token.Options{Now: at(tt.now)})
			_, err := v.Verify(context.Background(), raw)
			if tt.wantErr != (err != nil) {
				t.Errorf("Verify() at exp%+v error = %v, want error %v", tt.now.Sub(exp), err, tt.wantErr)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	with := func(mod func(c *token.Claims)) *token.Claims {
		c := claims()
		mod(c)
		return c
	}
	hs := func(c *token.Claims) string { return sign(t, jwt.SigningMethodHS256, keyA.Secret, "a", c) }
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "a", claims())
	tests := []struct {
		name string
		raw  string
		typ  string
	}{
		{"missing jti", hs(with(func(c *token.Claims) { c.ID = "" })), token.TypeAccess},
		{"empty subject", hs(with(func(c *token.Claims) { c.Subject = "" })), token.TypeAccess},
		{"refresh without family", hs(with(func(c *token.Claims) { c.Type = token.TypeRefresh })), token.TypeRefresh},
		{"missing type", hs(with(func(c *token.Claims) { c.Type = "" })), token.TypeAccess},
		{"missing exp", hs(with(func(c *token.Claims) { c.ExpiresAt = nil })), token.TypeAccess},
		{"wrong issuer", hs(with(func(c *token.Claims) { c.Issuer = "other" })), token.TypeAccess},
		{"wrong audience", hs(with(func(c *token.Claims) { c.Audience = jwt.ClaimStrings{"other"} })), token.TypeAccess},
		{"no audience", hs(with(func(c *token.Claims) { c.Audience = nil })), token.TypeAccess},
		{"not yet valid", hs(with(func(c *token.Claims) { c.NotBefore = jwt.NewNumericDate(t0.Add(time.Hour)) })), token.TypeAccess},
		{"no kid", sign(t, jwt.SigningMethodHS256, keyA.Secret, "", claims()), token.TypeAccess},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, keyB.Secret, "a", claims()), token.TypeAccess},
		{"alg none", none, token.TypeAccess},
		{"alg none without signature", strings.TrimSuffix(none, "."), token.TypeAccess},
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, "a", claims()), token.TypeAccess},
		{"HS384 with the right secret", sign(t, jwt.SigningMethodHS384, keyA.Secret, "a", claims()), token.TypeAccess},
		{"HS512 with the right secret", sign(t, jwt.SigningMethodHS512, keyA.Secret, "a", claims()), token.TypeAccess},
		{"garbage", "not.a.token", token.TypeAccess},
		{"empty", "", token.TypeAccess},
	}
	v := token.NewVerifier(mustKeySet(t, keyA), settings, token.Options{Now: at(t0)})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Parse(context.Background(), tt.raw, tt.typ)
			if err == nil || c != nil {
				t.Fatalf("Parse(%s) = %+v, %v; want ErrInvalidToken", tt.name, c, err)
			}
			if !errors.Is(err, authn.ErrInvalidToken) {
				t.Errorf("Parse(%s) error = %v, want ErrInvalidToken", tt.name, err)
			}
		})
	}
	// The control case: the same helper with untouched claims verifies, so
	// each rejection above is caused by the one change it names.
	if _, err := v.Parse(context.Background(), hs(claims()), token.TypeAccess); err != nil {
		t.Fatalf("Parse(unmodified claims) error = %v", err)
	}
	if _, err := v.Parse(context.Background(), hs(with(func(c *token.Claims) { c.Type = token.TypeRefresh; c.Family = "f" })), token.TypeRefresh); err != nil {
		t.Fatalf("Parse(refresh with family) error = %v", err)
	}
}

func TestNormalizeRoles(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"nil", nil, nil},
		{"empty", []string{}, nil},
		{"only empty strings", []string{"", ""}, []string{}},
		{"sorted and deduplicated", []string{"user", "admin", "user", "", "admin"}, []string{"admin", "user"}},
		{"case kept", []string{"b", "B"}, []string{"B", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			got := token.NormalizeRoles(in)
			if !slices.Equal(got, tt.want) {
				t.Errorf("NormalizeRoles(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("NormalizeRoles(%q) modified its argument to %q", tt.in, in)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := token.NewID()
		if len(id) != 22 || strings.ContainsAny(id, "+/=") {
			t.Fatalf("NewID() = %q, want 22 base64url characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID() returned %q twice", id)
		}
		seen[id] = true
	}
}

func TestVerifierCache(t *testing.T) {
	ctx := context.Background()
	ks := mustKeySet(t, keyA)
	raw, _ := mint(t, ks, t0, token.Grant{Subject: "alice", Type: token.TypeAccess, TTL: time.Minute, Ver: "v1"})
	exp := t0.Add(time.Minute)

	t.Run("leeway applies as without the cache", func(t *testing.T) {
		now := t0
		v := token.NewVerifier(ks, settings, token.Options{Now: func() time.Time { return now }, CacheSize: 8})
		if _, err := v.Verify(ctx, raw); err != nil {
			t.Fatalf("Verify() at iat error = %v", err)
		}
		now = exp.Add(settings.Leeway / 2)
		for i := range 3 {
			if _, err := v.Verify(ctx, raw); err != nil {
				t.Errorf("Verify() #%d inside the leeway after exp error = %v, want success as an uncached verifier gives", i+1, err)
			}
		}
		now = exp.Add(settings.Leeway + time.Second)
		for i := range 3 {
			if _, err := v.Verify(ctx, raw); !errors.Is(err, authn.ErrInvalidToken) {
				t.Errorf("Verify() #%d past the leeway error = %v, want ErrInvalidToken", i+1, err)
			}
		}
	})
	t.Run("binding checked on every hit", func(t *testing.T) {
		b := &recordingBinding{}
		v := token.NewVerifier(ks, settings, token.Options{Now: at(t0), Binding: b, CacheSize: 8})
		if _, err := v.Verify(ctx, raw); err != nil {
			t.Fatalf("Verify() error = %v", err)
		}
		b.mu.Lock()
		b.err = errors.New("password changed")
		b.mu.Unlock()
		if _, err := v.Verify(ctx, raw); !errors.Is(err, authn.ErrInvalidToken) {
			t.Errorf("Verify(cached token) after a password change error = %v, want ErrInvalidToken", err)
		}
		if len(b.subjects) != 2 {
			t.Errorf("CheckBinding called %d times for two verifications, want 2", len(b.subjects))
		}
	})
	t.Run("cached access token is not a refresh token", func(t *testing.T) {
		v := token.NewVerifier(ks, settings, token.Options{Now: at(t0), CacheSize: 8})
		if _, err := v.Verify(ctx, raw); err != nil {
			t.Fatalf("Verify() error = %v", err)
		}
		if _, err := v.Parse(ctx, raw, token.TypeRefresh); !errors.Is(err, authn.ErrInvalidToken) {
			t.Errorf("Parse(cached access token, refresh) error = %v, want ErrInvalidToken", err)
		}
	})
	t.Run("tampered token is not a cache hit", func(t *testing.T) {
		v := token.NewVerifier(ks, settings, token.Options{Now: at(t0), CacheSize: 8})
		if _, err := v.Verify(ctx, raw); err != nil {
			t.Fatalf("Verify() error = %v", err)
		}
		if _, err := v.Verify(ctx, raw+"x"); !errors.Is(err, authn.ErrInvalidToken) {
			t.Errorf("Verify(token with a byte appended) error = %v, want ErrInvalidToken", err)
		}
	})
}
