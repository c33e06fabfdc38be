package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/authn/jose/josetest"
)

// fakeVerifier records every token it is given and answers with p or err.
type fakeVerifier struct {
	iss string
	p   Principal
	err error

	mu  sync.Mutex
	got []string
}

func (v *fakeVerifier) Issuer() string { return v.iss }

func (v *fakeVerifier) Verify(_ context.Context, raw string) (Principal, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.got = append(v.got, raw)
	if v.err != nil {
		return Principal{}, v.err
	}
	return v.p, nil
}

func (v *fakeVerifier) calls() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.got)
}

// fakeAuth is an Authenticator that answers fixed values and counts calls.
type fakeAuth struct {
	p     Principal
	ok    bool
	err   error
	calls int
}

func (a *fakeAuth) Authenticate(*http.Request) (Principal, bool, error) {
	a.calls++
	return a.p, a.ok, a.err
}

// jws returns an unsigned compact token whose payload is the JSON of claims.
func jws(claims any) string {
	b, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256"}`)) + "." + enc(b) + ".c2ln"
}

func request(headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func TestNewBearerRejectsDuplicateIssuer(t *testing.T) {
	_, err := NewBearer(&fakeVerifier{iss: "a"}, &fakeVerifier{iss: "a"})
	if err == nil || !strings.Contains(err.Error(), `issuer "a" configured twice`) {
		t.Errorf("NewBearer(a, a) error = %v, want issuer configured twice", err)
	}
}

func TestBearerPicksVerifierByIssuer(t *testing.T) {
	tokA, tokB := jws(map[string]any{"iss": "a", "sub": "x"}), jws(map[string]any{"iss": "b", "sub": "x"})
	tests := []struct {
		name       string
		header     string
		wantA      []string
		wantB      []string
		wantOK     bool
		wantErr    error
		wantSubjct string
	}{
		{name: "iss a goes to a only", header: "Bearer " + tokA, wantA: []string{tokA}, wantOK: true, wantSubjct: "from-a"},
		{name: "iss b goes to b only", header: "Bearer " + tokB, wantB: []string{tokB}, wantOK: true, wantSubjct: "from-b"},
		{name: "scheme is case-insensitive", header: "bEARER " + tokB, wantB: []string{tokB}, wantOK: true, wantSubjct: "from-b"},
		{name: "surrounding space trimmed", header: "Bearer   " + tokA + " ", wantA: []string{tokA}, wantOK: true, wantSubjct: "from-a"},
		{name: "unknown issuer", header: "Bearer " + jws(map[string]any{"iss": "c"}), wantErr: ErrInvalidToken},
		{name: "issuer differs in case", header: "Bearer " + jws(map[string]any{"iss": "A"}), wantErr: ErrInvalidToken},
		{name: "no issuer", header: "Bearer " + jws(map[string]any{"sub": "x"}), wantErr: ErrInvalidToken},
		{name: "issuer not a string", header: "Bearer " + jws(map[string]any{"iss": 1}), wantErr: ErrInvalidToken},
		{name: "garbage token", header: "Bearer garbage", wantErr: ErrInvalidToken},
		{name: "basic credential", header: "Basic YTpi", wantErr: ErrMalformed},
		{name: "scheme only", header: "Bearer", wantErr: ErrMalformed},
		{name: "empty bearer", header: "Bearer ", wantErr: ErrMalformed},
		{name: "empty header", header: "", wantErr: ErrMalformed},
		{name: "token with a space", header: "Bearer " + tokA + " " + tokB, wantErr: ErrMalformed},
		{name: "token with a tab", header: "Bearer " + tokA + "\t" + tokB, wantErr: ErrMalformed},
		{name: "tab after scheme", header: "Bearer\t" + tokA, wantErr: ErrMalformed},
		{name: "trailing tab", header: "Bearer " + tokA + "\t", wantErr: ErrMalformed},
		{name: "no-break space after token", header: "Bearer " + tokA + "\u00a0", wantErr: ErrMalformed},
		{name: "token not token68", header: "Bearer " + tokA + ",x", wantErr: ErrMalformed},
		{name: "only padding", header: "Bearer ==", wantErr: ErrMalformed},
		{name: "too large", header: "Bearer " + jws(map[string]any{"iss": "a", "pad": strings.Repeat("x", jose.MaxTokenBytes)}), wantErr: ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &fakeVerifier{iss: "a", p: Principal{Subject: "from-a", Method: MethodJWT}}
			b := &fakeVerifier{iss: "b", p: Principal{Subject: "from-b", Method: MethodExternal}}
			bearer, err := NewBearer(a, b)
			if err != nil {
				t.Fatal(err)
			}
			p, ok, err := bearer.Authenticate(request("Authorization", tt.header))
			if ok != tt.wantOK || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Authenticate(%q) = ok %v, err %v; want ok %v, err %v", tt.header, ok, err, tt.wantOK, tt.wantErr)
			}
			if p.Subject != tt.wantSubjct {
				t.Errorf("Authenticate(%q) subject = %q, want %q", tt.header, p.Subject, tt.wantSubjct)
			}
			if got := a.calls(); !slices.Equal(got, tt.wantA) {
				t.Errorf("verifier a got %q, want %q", got, tt.wantA)
			}
			if got := b.calls(); !slices.Equal(got, tt.wantB) {
				t.Errorf("verifier b got %q, want %q", got, tt.wantB)
			}
		})
	}
}

// decodedVerifier is a fakeVerifier that also takes decoded tokens and
// records which way each token came.
type decodedVerifier struct {
	fakeVerifier
	wayMu   sync.Mutex
	decoded []string // "decoded" or "raw", per call
}

func (v *decodedVerifier) Verify(ctx context.Context, raw string) (Principal, error) {
	v.wayMu.Lock()
	v.decoded = append(v.decoded, "raw")
	v.wayMu.Unlock()
	return v.fakeVerifier.Verify(ctx, raw)
}

func (v *decodedVerifier) VerifyDecoded(ctx context.Context, raw string, t *jose.Token) (Principal, error) {
	v.wayMu.Lock()
	// The decoded token must be raw's: its signing input is raw up to the
	// last dot, and its iss is this verifier's.
	way := "decoded"
	if iss, _ := t.Claim("iss"); t.SigningInput != raw[:strings.LastIndexByte(raw, '.')] || string(iss) != `"`+v.iss+`"` {
		way = "decoded from another token"
	}
	v.decoded = append(v.decoded, way)
	v.wayMu.Unlock()
	return v.fakeVerifier.Verify(ctx, raw)
}

// A token the bearer authenticator had to decode to choose its verifier is
// handed on decoded, once; a repeated token, whose choice is remembered,
// goes as the raw string; a verifier (or a wrapper, such as the revocation
// check) without VerifyDecoded always gets Verify.
func TestBearerHandsOnTheDecodedToken(t *testing.T) {
	a := &decodedVerifier{fakeVerifier: fakeVerifier{iss: "a", p: Principal{Subject: "from-a", Method: MethodExternal}}}
	b := &fakeVerifier{iss: "b", p: Principal{Subject: "from-b", Method: MethodJWT}}
	bearer, err := NewBearer(a, b)
	if err != nil {
		t.Fatal(err)
	}
	tokA, tokB := jws(map[string]any{"iss": "a", "sub": "x"}), jws(map[string]any{"iss": "b", "sub": "x"})
	for i, tc := range []struct {
		tok, want string
	}{{tokA, "from-a"}, {tokA, "from-a"}, {tokB, "from-b"}, {tokB, "from-b"}} {
		p, ok, err := bearer.Authenticate(request("Authorization", "Bearer "+tc.tok))
		if !ok || err != nil || p.Subject != tc.want {
			t.Fatalf("request %d: Authenticate = %+v, %v, %v; want %s", i, p, ok, err, tc.want)
		}
	}
	if want := []string{"decoded", "raw"}; !slices.Equal(a.decoded, want) {
		t.Errorf("verifier a was called %q, want %q", a.decoded, want)
	}
	if got := b.calls(); !slices.Equal(got, []string{tokB, tokB}) {
		t.Errorf("verifier b got %q, want the raw token twice", got)
	}
}

func TestBearerHeaderCount(t *testing.T) {
	a := &fakeVerifier{iss: "a", p: Principal{Subject: "s", Method: MethodJWT}}
	bearer, _ := NewBearer(a)
	tok := jws(map[string]any{"iss": "a"})
	t.Run("no Authorization header", func(t *testing.T) {
		p, ok, err := bearer.Authenticate(request())
		if ok || err != nil || p.Authenticated() {
			t.Errorf("Authenticate(no header) = %+v, %v, %v; want anonymous, false, nil", p, ok, err)
		}
	})
	t.Run("two Authorization headers", func(t *testing.T) {
		_, ok, err := bearer.Authenticate(request("Authorization", "Bearer "+tok, "Authorization", "Bearer "+tok))
		if ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("Authenticate(two headers) = %v, %v; want ErrMalformed", ok, err)
		}
	})
	if n := len(a.calls()); n != 0 {
		t.Errorf("verifier called %d times, want 0", n)
	}
}

func TestBearerVerifierError(t *testing.T) {
	bad := errors.New("signature mismatch")
	a := &fakeVerifier{iss: "a", err: bad}
	bearer, _ := NewBearer(a)
	p, ok, err := bearer.Authenticate(request("Authorization", "Bearer "+jws(map[string]any{"iss": "a"})))
	if ok || !errors.Is(err, bad) || p.Authenticated() {
		t.Errorf("Authenticate() = %+v, %v, %v; want the verifier's error", p, ok, err)
	}
}

func TestPeekIssuer(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr bool
	}{
		{name: "issuer", raw: jws(map[string]string{"iss": "https://idp"}), want: "https://idp"},
		{name: "no dots", raw: "abc", wantErr: true},
		{name: "one dot", raw: "a.b", wantErr: true},
		{name: "empty", raw: "", wantErr: true},
		{name: "payload not base64url", raw: "a.!!!.c", wantErr: true},
		{name: "padded payload", raw: "a." + base64.URLEncoding.EncodeToString([]byte(`{"iss":"a"}`)) + ".c", wantErr: true},
		{name: "payload an array", raw: "a." + enc([]byte(`["iss"]`)) + ".c", wantErr: true},
		{name: "payload not json", raw: "a." + enc([]byte(`iss=a`)) + ".c", wantErr: true},
		{name: "issuer a number", raw: "a." + enc([]byte(`{"iss":5}`)) + ".c", wantErr: true},
		{name: "too large", raw: jws(map[string]string{"iss": "a", "pad": strings.Repeat("x", jose.MaxTokenBytes)}), wantErr: true},
		{name: "issuer twice", raw: "a." + enc([]byte(`{"iss":"b","iss":"a"}`)) + ".c", wantErr: true},
		{name: "issuer and a case variant", raw: "a." + enc([]byte(`{"iss":"b","ISS":"a"}`)) + ".c", wantErr: true},
		{name: "payload with padding bits set", raw: "a." + josetest.SetPaddingBit(t, enc([]byte(`{"iss":"a"}`))) + ".c", wantErr: true},
		{name: "extra segments", raw: "a." + enc([]byte(`{"iss":"a"}`)) + ".b.c", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, tok, err := peekIssuer(tt.raw)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidToken) || tok != nil {
					t.Errorf("peekIssuer(%.40q) = %q, %v, %v; want ErrInvalidToken and no token", tt.raw, got, tok, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("peekIssuer(%.40q) = %q, %v; want %q", tt.raw, got, err, tt.want)
			}
			if tok == nil || tok.SigningInput != tt.raw[:strings.LastIndexByte(tt.raw, '.')] {
				t.Errorf("peekIssuer(%.40q) returned token %+v, want the decoded token", tt.raw, tok)
			}
		})
	}
}

func TestChain(t *testing.T) {
	valid := Principal{Subject: "alice", Roles: []string{"user"}, Method: MethodJWT}
	tests := []struct {
		name       string
		headers    []string
		keyHeader  string
		noBearer   bool
		noAPIKey   bool
		wantBearer int
		wantAPIKey int
		wantOK     bool
		wantErr    error
	}{
		{name: "no credential", wantOK: false},
		{name: "bearer", headers: []string{"Authorization", "Bearer x"}, wantBearer: 1, wantOK: true},
		{name: "api key", headers: []string{"X-Api-Key", "k"}, wantAPIKey: 1, wantOK: true},
		{name: "both", headers: []string{"Authorization", "Bearer x", "X-API-Key", "k"}, wantErr: ErrAmbiguous},
		{name: "both with empty authorization", headers: []string{"Authorization", "", "X-API-Key", "k"}, wantErr: ErrAmbiguous},
		{name: "both with empty api key", headers: []string{"Authorization", "Bearer x", "X-API-Key", ""}, wantErr: ErrAmbiguous},
		{name: "both empty", headers: []string{"Authorization", "", "X-API-Key", ""}, wantErr: ErrAmbiguous},
		{name: "custom key header", keyHeader: "X-Token", headers: []string{"X-Token", "k"}, wantAPIKey: 1, wantOK: true},
		{name: "custom key header with bearer", keyHeader: "X-Token", headers: []string{"X-Token", "k", "Authorization", "Bearer x"}, wantErr: ErrAmbiguous},
		{name: "bearer not configured", noBearer: true, headers: []string{"Authorization", "Bearer x"}, wantErr: ErrInvalidToken},
		{name: "api keys not configured", noAPIKey: true, headers: []string{"X-API-Key", "k"}, wantErr: ErrInvalidAPIKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bearer := &fakeAuth{p: valid, ok: true}
			key := &fakeAuth{p: valid, ok: true}
			c := Chain{Bearer: bearer, APIKey: key, APIKeyHeader: tt.keyHeader}
			if tt.noBearer {
				c.Bearer = nil
			}
			if tt.noAPIKey {
				c.APIKey = nil
			}
			p, ok, err := c.Authenticate(request(tt.headers...))
			if ok != tt.wantOK || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Chain.Authenticate(%q) = ok %v, err %v; want ok %v, err %v", tt.headers, ok, err, tt.wantOK, tt.wantErr)
			}
			if !ok && p.Authenticated() {
				t.Errorf("Chain.Authenticate(%q) returned principal %+v with ok=false", tt.headers, p)
			}
			if bearer.calls != tt.wantBearer || key.calls != tt.wantAPIKey {
				t.Errorf("Chain.Authenticate(%q) called bearer %d and api key %d times, want %d and %d",
					tt.headers, bearer.calls, key.calls, tt.wantBearer, tt.wantAPIKey)
			}
		})
	}
}

func TestChainChecksPrincipal(t *testing.T) {
	sentinel := errors.New("store down")
	tests := []struct {
		name      string
		inner     fakeAuth
		wantOK    bool
		wantErr   error
		wantRoles []string
	}{
		{name: "valid", inner: fakeAuth{p: Principal{Subject: "alice", Roles: []string{"a", "b"}}, ok: true}, wantOK: true, wantRoles: []string{"a", "b"}},
		{name: "utf-8 subject", inner: fakeAuth{p: Principal{Subject: "zoë"}, ok: true}, wantOK: true},
		{name: "empty subject", inner: fakeAuth{p: Principal{}, ok: true}, wantErr: ErrInvalidToken},
		{name: "newline in subject", inner: fakeAuth{p: Principal{Subject: "alice\nX-Roles: admin"}, ok: true}, wantErr: ErrInvalidToken},
		{name: "carriage return in subject", inner: fakeAuth{p: Principal{Subject: "alice\r"}, ok: true}, wantErr: ErrInvalidToken},
		{name: "NUL in subject", inner: fakeAuth{p: Principal{Subject: "alice\x00"}, ok: true}, wantErr: ErrInvalidToken},
		{name: "DEL in subject", inner: fakeAuth{p: Principal{Subject: "alice\x7f"}, ok: true}, wantErr: ErrInvalidToken},
		{name: "unforwardable roles dropped", inner: fakeAuth{p: Principal{Subject: "alice", Roles: []string{"user", "admin,ops", "x y"}}, ok: true}, wantOK: true, wantRoles: []string{"user"}},
		{name: "inner error passed through", inner: fakeAuth{err: sentinel}, wantErr: sentinel},
		{name: "inner no credential", inner: fakeAuth{}, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := tt.inner
			c := Chain{Bearer: &inner}
			p, ok, err := c.Authenticate(request("Authorization", "Bearer x"))
			if ok != tt.wantOK || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Chain.Authenticate() = %+v, %v, %v; want ok %v err %v", p, ok, err, tt.wantOK, tt.wantErr)
			}
			if err != nil && p.Subject != "" {
				t.Errorf("Chain.Authenticate() kept subject %q with an error", p.Subject)
			}
			if ok && !slices.Equal(p.Roles, tt.wantRoles) {
				t.Errorf("Chain.Authenticate() roles = %q, want %q", p.Roles, tt.wantRoles)
			}
		})
	}
}

func TestForwardableRoles(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"nil", nil, nil},
		{"all clean", []string{"admin", "user.read", "a-b_c:d"}, []string{"admin", "user.read", "a-b_c:d"}},
		{"comma", []string{"user", "admin,root"}, []string{"user"}},
		{"space", []string{"a b", "user"}, []string{"user"}},
		{"tab", []string{"user", "a\tb"}, []string{"user"}},
		{"newline", []string{"a\nb", "c", "d"}, []string{"c", "d"}},
		{"NUL", []string{"a\x00"}, []string{}},
		{"DEL", []string{"x", "a\x7f", "y"}, []string{"x", "y"}},
		{"empty string", []string{"", "x"}, []string{"x"}},
		{"every role bad", []string{",", " "}, []string{}},
		{"non-ascii dropped: no rule can name it", []string{"rôle", "x"}, []string{"x"}},
		{"longer than the grammar", []string{strings.Repeat("r", 129), "x"}, []string{"x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			got := ForwardableRoles(in)
			if !slices.Equal(got, tt.want) {
				t.Errorf("ForwardableRoles(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("ForwardableRoles(%q) modified its input to %q", tt.in, in)
			}
			if len(got) < len(in) && len(got) > 0 && &got[0] == &in[0] {
				t.Errorf("ForwardableRoles(%q) returned a slice sharing the input's array after dropping roles", tt.in)
			}
		})
	}
}

// TestChainSessionOnlyWithoutOtherCredentials: a bearer token or an API
// key decides alone, the session cookie is not even consulted; without
// them the session authenticates.
func TestChainSessionOnlyWithoutOtherCredentials(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hdr      []string
		want     string
		sessions int
		err      error
	}{
		{"cookie only", []string{"Cookie", "s=1"}, "alice-session", 1, nil},
		{"bearer and cookie", []string{"Authorization", "Bearer t", "Cookie", "s=1"}, "bearer-user", 0, nil},
		{"api key and cookie", []string{"X-API-Key", "k", "Cookie", "s=1"}, "key-user", 0, nil},
		{"bearer, key and cookie", []string{"Authorization", "Bearer t", "X-API-Key", "k", "Cookie", "s=1"}, "", 0, ErrAmbiguous},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := &fakeAuth{p: Principal{Subject: "alice-session", Method: MethodSession}, ok: true}
			c := Chain{
				Bearer:  &fakeAuth{p: Principal{Subject: "bearer-user", Method: MethodJWT}, ok: true},
				APIKey:  &fakeAuth{p: Principal{Subject: "key-user", Method: MethodAPIKey}, ok: true},
				Session: sess,
			}
			p, _, err := c.Authenticate(request(tc.hdr...))
			if !errors.Is(err, tc.err) || p.Subject != tc.want || sess.calls != tc.sessions {
				t.Fatalf("Authenticate() = %q, %v (session consulted %d times); want %q, %v, %d", p.Subject, err, sess.calls, tc.want, tc.err, tc.sessions)
			}
		})
	}
}
