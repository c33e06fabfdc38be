package apikey

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn"
)

var (
	keyCI     = "agk_ci-secret"
	keyDeploy = "agk_deploy-secret"
	t0        = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
)

func mustParse(t *testing.T, data string) *Set {
	t.Helper()
	s, err := Parse("keys.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	return s
}

func validFile() string {
	return `keys:
  - name: ci
    sha256: ` + Digest(keyCI) + `
    roles: [deploy, read, read]
  - name: deploy
    sha256: "` + strings.ToUpper(Digest(keyDeploy)) + `"
    roles: [deploy]
    expires: 2026-07-01T00:00:00Z
`
}

func TestParseValid(t *testing.T) {
	s := mustParse(t, validFile())
	if s.Len() != 2 {
		t.Errorf("Len() = %d, want 2", s.Len())
	}
	if got := s.Names(); !slices.Equal(got, []string{"ci", "deploy"}) {
		t.Errorf("Names() = %q, want [ci deploy]", got)
	}
	if got := s.Roles(); !slices.Equal(got, []string{"deploy", "read"}) {
		t.Errorf("Roles() = %q, want [deploy read]", got)
	}
	if s := mustParse(t, "keys: []\n"); s.Len() != 0 {
		t.Errorf("Parse(keys: []) Len() = %d, want 0", s.Len())
	}
}

func TestParseErrors(t *testing.T) {
	good := Digest("k1")
	tests := []struct {
		name string
		data string
		want []string // each a regexp that must match one line of the error
	}{
		{name: "empty file", data: "", want: []string{`^keys\.yaml: file is empty$`}},
		{name: "comments only", data: "# nothing\n", want: []string{`^keys\.yaml: file is empty$`}},
		{name: "bad digest", data: "keys:\n  - name: a\n    sha256: abc\n    roles: [r]\n",
			want: []string{`^keys\.yaml:2: key 1 \(a\): field sha256: want 64 hex characters`}},
		{name: "digest not hex", data: "keys:\n  - name: a\n    sha256: " + strings.Repeat("z", 64) + "\n    roles: [r]\n",
			want: []string{`^keys\.yaml:2: key 1 \(a\): field sha256:`}},
		{name: "missing roles", data: "keys:\n  - name: a\n    sha256: " + good + "\n",
			want: []string{`^keys\.yaml:2: key 1 \(a\): field roles: a key needs at least one role$`}},
		{name: "only empty roles", data: "keys:\n  - name: a\n    sha256: " + good + "\n    roles: [\"\"]\n",
			want: []string{`^keys\.yaml:2: key 1 \(a\): field roles:`}},
		{name: "bad name", data: "keys:\n  - name: \"a b\"\n    sha256: " + good + "\n    roles: [r]\n",
			want: []string{`^keys\.yaml:2: key 1 \(a b\): field name: must match`}},
		{name: "missing name", data: "keys:\n  - sha256: " + good + "\n    roles: [r]\n",
			want: []string{`^keys\.yaml:2: key 1 \(\): field name: must match`}},
		{name: "duplicate name", data: "keys:\n  - name: a\n    sha256: " + good + "\n    roles: [r]\n  - name: a\n    sha256: " + Digest("k2") + "\n    roles: [r]\n",
			want: []string{`^keys\.yaml:5: key 2 \(a\): field name: duplicate of the key on line 2$`}},
		{name: "duplicate digest", data: "keys:\n  - name: a\n    sha256: " + good + "\n    roles: [r]\n  - name: b\n    sha256: " + good + "\n    roles: [r]\n",
			want: []string{`^keys\.yaml:5: key 2 \(b\): field sha256: same digest as another key$`}},
		{name: "unknown key", data: "keys:\n  - name: a\n    sha256: " + good + "\n    role: [r]\n",
			want: []string{
				`^keys\.yaml:4: unknown key "role"$`,
				`^keys\.yaml:2: key 1 \(a\): field roles: a key needs at least one role$`,
			}},
		{name: "unknown top-level key", data: "key:\n  - name: a\n",
			want: []string{`^keys\.yaml:1: unknown key "key"$`}},
		{name: "bad expiry", data: "keys:\n  - name: a\n    sha256: " + good + "\n    roles: [r]\n    expires: soon\n",
			want: []string{`^keys\.yaml:5: `}},
		{name: "unknown key reported with the other errors", data: "keys:\n  - name: a\n    sha256: abc\n    roles: [r]\n    role: x\n",
			want: []string{
				`^keys\.yaml:5: unknown key "role"$`,
				`^keys\.yaml:2: key 1 \(a\): field sha256:`,
			}},
		{name: "every error at once", data: "keys:\n" +
			"  - name: a\n    sha256: nothex\n    roles: [r]\n" +
			"  - name: a\n    sha256: " + good + "\n" +
			"  - name: c\n    sha256: " + good + "\n    roles: [r]\n",
			want: []string{
				`^keys\.yaml:2: key 1 \(a\): field sha256:`,
				`^keys\.yaml:5: key 2 \(a\): field name: duplicate of the key on line 2$`,
				`^keys\.yaml:5: key 2 \(a\): field roles:`,
				`^keys\.yaml:7: key 3 \(c\): field sha256: same digest as another key$`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("keys.yaml", []byte(tt.data))
			if err == nil {
				t.Fatalf("Parse(%q) = %d keys, want errors %q", tt.data, s.Len(), tt.want)
			}
			if s != nil {
				t.Errorf("Parse(%q) returned a set along with an error", tt.data)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("Parse() reported %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for _, w := range tt.want {
				re := regexp.MustCompile(w)
				if !slices.ContainsFunc(lines, re.MatchString) {
					t.Errorf("Parse() error =\n%v\nwant a line matching %s", err, w)
				}
			}
		})
	}
}

func TestLookup(t *testing.T) {
	var st Store
	st.Swap(mustParse(t, validFile()))
	expiry := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		key      string
		now      time.Time
		wantName string
	}{
		{name: "valid", key: keyCI, now: t0, wantName: "ci"},
		{name: "valid without expiry far in the future", key: keyCI, now: t0.AddDate(50, 0, 0), wantName: "ci"},
		{name: "before expiry", key: keyDeploy, now: expiry.Add(-time.Nanosecond), wantName: "deploy"},
		{name: "at expiry", key: keyDeploy, now: expiry},
		{name: "after expiry", key: keyDeploy, now: expiry.Add(time.Hour)},
		{name: "unknown", key: "agk_unknown", now: t0},
		{name: "empty", key: "", now: t0},
		{name: "the digest itself", key: Digest(keyCI), now: t0},
		{name: "key with trailing space", key: keyCI + " ", now: t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAuthenticator(&st, func() time.Time { return tt.now })
			k, err := a.Lookup(tt.key)
			if tt.wantName == "" {
				if !errors.Is(err, authn.ErrInvalidAPIKey) || k != nil {
					t.Errorf("Lookup(%q) = %v, %v; want ErrInvalidAPIKey", tt.key, k, err)
				}
				return
			}
			if err != nil || k == nil || k.Name != tt.wantName {
				t.Fatalf("Lookup(%q) = %v, %v; want key %q", tt.key, k, err, tt.wantName)
			}
		})
	}
}

func TestZeroStoreRejects(t *testing.T) {
	a := NewAuthenticator(&Store{}, nil)
	if k, err := a.Lookup(keyCI); !errors.Is(err, authn.ErrInvalidAPIKey) || k != nil {
		t.Errorf("Lookup() on a zero Store = %v, %v; want ErrInvalidAPIKey", k, err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set(Header, keyCI)
	if _, ok, err := a.Authenticate(r); ok || !errors.Is(err, authn.ErrInvalidAPIKey) {
		t.Errorf("Authenticate() on a zero Store = %v, %v; want ErrInvalidAPIKey", ok, err)
	}
}

func TestAuthenticate(t *testing.T) {
	var st Store
	st.Swap(mustParse(t, validFile()))
	a := NewAuthenticator(&st, func() time.Time { return t0 })
	tests := []struct {
		name    string
		values  []string
		wantOK  bool
		wantErr error
	}{
		{name: "no header", wantOK: false},
		{name: "valid key", values: []string{keyCI}, wantOK: true},
		{name: "unknown key", values: []string{"nope"}, wantErr: authn.ErrInvalidAPIKey},
		{name: "empty key", values: []string{""}, wantErr: authn.ErrInvalidAPIKey},
		{name: "two headers", values: []string{keyCI, keyCI}, wantErr: authn.ErrMalformed},
		{name: "two different headers", values: []string{"nope", keyCI}, wantErr: authn.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, v := range tt.values {
				r.Header.Add(Header, v)
			}
			p, ok, err := a.Authenticate(r)
			if ok != tt.wantOK || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Authenticate(%q) = %v, %v; want ok %v, err %v", tt.values, ok, err, tt.wantOK, tt.wantErr)
			}
			if !ok {
				if p.Authenticated() {
					t.Errorf("Authenticate(%q) = principal %+v with ok=false", tt.values, p)
				}
				return
			}
			if p.Subject != "ci" || p.KeyName != "ci" || p.Method != authn.MethodAPIKey ||
				!slices.Equal(p.Roles, []string{"deploy", "read"}) || !p.ExpiresAt.IsZero() {
				t.Errorf("Authenticate(%q) = %+v, want the ci key with roles [deploy read]", tt.values, p)
			}
		})
	}
}

func TestDigestAndGenerate(t *testing.T) {
	// The SHA-256 test vector for "abc" (FIPS 180-2).
	if got, want := Digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf(`Digest("abc") = %q, want %q`, got, want)
	}
	format := regexp.MustCompile(`^agk_[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for range 50 {
		k := Generate()
		if !format.MatchString(k) {
			t.Fatalf("Generate() = %q, want agk_ and 43 base64url characters", k)
		}
		if seen[k] {
			t.Fatalf("Generate() returned %q twice", k)
		}
		seen[k] = true
	}
	k := Generate()
	var st Store
	st.Swap(mustParse(t, "keys:\n  - name: gen\n    sha256: "+Digest(k)+"\n    roles: [r]\n"))
	if got, err := NewAuthenticator(&st, nil).Lookup(k); err != nil || got.Name != "gen" {
		t.Errorf("Lookup(generated key) = %v, %v; want key gen", got, err)
	}
}

func TestWithHeader(t *testing.T) {
	var st Store
	st.Swap(mustParse(t, validFile()))
	base := NewAuthenticator(&st, func() time.Time { return t0 })
	custom := base.WithHeader("x-gateway-key")
	tests := []struct {
		name   string
		a      *Authenticator
		header string
		wantOK bool
	}{
		{"custom header read", custom, "X-Gateway-Key", true},
		{"default header ignored by custom", custom, Header, false},
		{"custom header ignored by default", base, "X-Gateway-Key", false},
		{"default header still read by the original", base, Header, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set(tt.header, keyCI)
			_, ok, err := tt.a.Authenticate(r)
			if ok != tt.wantOK || err != nil {
				t.Errorf("Authenticate(%s) = %v, %v; want ok %v", tt.header, ok, err, tt.wantOK)
			}
		})
	}
}
