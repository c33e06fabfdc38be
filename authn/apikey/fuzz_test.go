package apikey

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn"
)

func FuzzAPIKeysParse(f *testing.F) {
	d1, d2 := Digest("k1"), Digest("k2")
	f.Add("keys:\n  - name: a\n    sha256: "+d1+"\n    roles: [r]\n", "k1")
	f.Add("keys:\n  - name: a\n    sha256: "+d1+"\n    roles: [r, s]\n    expires: 2030-01-01T00:00:00Z\n  - name: b.c\n    sha256: "+d2+"\n    roles: [x]\n", "k2")
	f.Add("keys:\n  - name: a\n    sha256: "+d1+"\n    roles: [r]\n    expires: 0001-01-01T00:00:01Z\n", "k1")
	f.Add("keys: []\n", "")
	f.Add("keys:\n  - {name: a, sha256: "+d1+", roles: [r]}\n  - {name: a, sha256: "+d1+"}\n", d1)
	f.Add("keys:\n  - name: a\n    role: [r]\n", "a")
	f.Add("", "k1")
	f.Add("---\nkeys: []\n---\n", "x")
	f.Add("keys: &a [*a]\n", "x")

	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data, probe string) {
		s, err := Parse("keys.yaml", []byte(data))
		if err != nil {
			if s != nil {
				t.Fatalf("Parse() returned a set along with error %v", err)
			}
			for _, e := range flatten(err) {
				if !strings.HasPrefix(e.Error(), "keys.yaml") {
					t.Fatalf("Parse() error %q does not name the file", e)
				}
			}
			return
		}
		names := map[string]bool{}
		for d, k := range s.byDigest {
			if !nameRE.MatchString(k.Name) {
				t.Fatalf("Parse() accepted key name %q", k.Name)
			}
			if names[k.Name] {
				t.Fatalf("Parse() accepted key name %q twice", k.Name)
			}
			names[k.Name] = true
			// A key whose every role is outside the role grammar loads
			// granting none, and only with a warning that says so.
			if len(k.Roles) == 0 && !slices.ContainsFunc(s.Warnings(), func(w string) bool { return strings.Contains(w, "grants no valid role") }) {
				t.Fatalf("Parse() accepted key %q with no roles and no warning", k.Name)
			}
			for _, r := range k.Roles {
				if r == "" {
					t.Fatalf("Parse() accepted key %q with an empty role", k.Name)
				}
			}
			if k.digest != d {
				t.Fatalf("key %q is stored under another digest", k.Name)
			}
		}
		if s.Len() != len(s.Names()) {
			t.Fatalf("Len() = %d, Names() has %d", s.Len(), len(s.Names()))
		}

		var st Store
		st.Swap(s)
		a := NewAuthenticator(&st, func() time.Time { return now })
		for _, presented := range []string{probe, Digest(probe)} {
			k, err := a.Lookup(presented)
			want, listed := s.byDigest[sha256.Sum256([]byte(presented))]
			live := listed && presented != "" && (want.Expires.IsZero() || now.Before(want.Expires))
			switch {
			case live && (err != nil || k != want):
				t.Fatalf("Lookup(%q) = %v, %v; want key %q", presented, k, err, want.Name)
			case !live && (err == nil || k != nil || !errors.Is(err, authn.ErrInvalidAPIKey)):
				t.Fatalf("Lookup(%q) = %v, %v; want ErrInvalidAPIKey", presented, k, err)
			}
		}
		// Presenting a stored digest never authenticates: only its
		// preimage does.
		for _, k := range s.byDigest {
			hexd := hex.EncodeToString(k.digest[:])
			if got, err := a.Lookup(hexd); err == nil && sha256.Sum256([]byte(hexd)) != k.digest {
				t.Fatalf("Lookup(stored digest of %q) = %q, want an error", k.Name, got.Name)
			}
		}
	})
}

// flatten returns the leaves of an errors.Join tree.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
