package jwks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/authgate/authgate/policy"
	"github.com/golang-jwt/jwt/v5"
)

// maxClaimKeys bounds the number of members in one claims object, so that a
// crafted token cannot make decoding arbitrarily expensive.
const maxClaimKeys = 1024

// tokenClaims is the typed claim set of a token plus the raw members needed
// for the configurable subject and roles claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	raw map[string]json.RawMessage
}

// UnmarshalJSON decodes the claims strictly. encoding/json matches struct
// fields case-insensitively and lets the last duplicate win, so
// {"roles":["user"],"ROLES":["admin"]} would silently grant "admin"
// (claim-smuggling / parser-differential attack). A claims object with two
// members whose names are equal under Unicode case folding is rejected, and
// registered claims are read by their exact names only.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	raw, err := decodeStrictObject(b)
	if err != nil {
		return err
	}
	c.raw = raw
	fields := []struct {
		name string
		dst  any
	}{
		{"iss", &c.Issuer},
		{"sub", &c.Subject},
		{"aud", &c.Audience},
		{"exp", &c.ExpiresAt},
		{"nbf", &c.NotBefore},
		{"iat", &c.IssuedAt},
		{"jti", &c.ID},
	}
	for _, f := range fields {
		v, ok := raw[f.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			return fmt.Errorf("jwks: claim %q: wrong type", f.name)
		}
	}
	return nil
}

// decodeStrictObject decodes a JSON object into its members, rejecting
// members whose names are equal under strings.EqualFold.
func decodeStrictObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("jwks: claims: malformed JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("jwks: claims: not a JSON object")
	}
	out := make(map[string]json.RawMessage)
	folded := make(map[string]struct{})
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("jwks: claims: malformed JSON")
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("jwks: claims: malformed JSON")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("jwks: claims: malformed JSON")
		}
		if len(out) >= maxClaimKeys {
			return nil, errors.New("jwks: claims: too many members")
		}
		f := foldKey(key)
		if _, dup := folded[f]; dup {
			return nil, errors.New("jwks: claims: duplicate or case-variant member names")
		}
		folded[f] = struct{}{}
		out[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("jwks: claims: malformed JSON")
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("jwks: claims: trailing data")
	}
	return out, nil
}

// foldKey maps s to a canonical form such that foldKey(a) == foldKey(b)
// exactly when strings.EqualFold(a, b): every rune is replaced by the
// smallest rune of its simple case-folding orbit.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < m {
				m = f
			}
		}
		b.WriteRune(m)
	}
	return b.String()
}

// splitClaimPath splits a dotted claim path with the policy's claim path
// grammar (policy.SplitClaimPath), so roles_claim and a rule's claims read
// one path the same way.
func splitClaimPath(p string) ([]string, error) {
	segs, err := policy.SplitClaimPath(p)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "policy: "))
	}
	return segs, nil
}

// lookupPath walks path through nested objects, decoding each level with
// the same duplicate-member check as the top level. It reports whether the
// claim is present.
func lookupPath(raw map[string]json.RawMessage, path []string) (json.RawMessage, bool, error) {
	obj := raw
	for i, seg := range path {
		v, ok := obj[seg]
		if !ok {
			return nil, false, nil
		}
		if i == len(path)-1 {
			return v, true, nil
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, false, nil
		}
		next, err := decodeStrictObject(v)
		if err != nil {
			return nil, false, err
		}
		obj = next
	}
	return nil, false, nil
}

// decodeRoles decodes a roles claim value: an array of strings or a
// space-separated string (as in the OAuth "scope" claim). null is no roles.
func decodeRoles(v json.RawMessage) ([]string, error) {
	v = bytes.TrimSpace(v)
	if bytes.Equal(v, []byte("null")) {
		return nil, nil
	}
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errors.New("jwks: roles claim: malformed string")
		}
		return strings.Fields(s), nil
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, errors.New("jwks: roles claim: not a string or an array of strings")
	}
	return list, nil
}

// mapRoles applies the role map (when set) and returns the roles sorted and
// without duplicates or empty names.
func mapRoles(in []string, roleMap map[string][]string) []string {
	var out []string
	for _, r := range in {
		if r == "" {
			continue
		}
		if roleMap == nil {
			out = append(out, r)
			continue
		}
		// With a role map only mapped roles are granted: an IdP group that
		// happens to share a name with a gateway role must not grant it.
		out = append(out, roleMap[r]...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
