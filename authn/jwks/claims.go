package jwks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/jose"
)

// tokenClaims is the typed claim set of a token plus the raw members needed
// for the configurable subject and roles claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	raw map[string]json.RawMessage
}

// UnmarshalJSON decodes the claims strictly. encoding/json matches struct
// fields case-insensitively and lets the last duplicate win, so
// {"roles":["user"],"ROLES":["admin"]} would silently grant "admin"
// (claim-smuggling / parser-differential attack). The claims object is
// checked by jose.CheckObject (no duplicate names, no two top-level names
// equal under Unicode case folding), and registered claims are read by
// their exact names only.
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

// DecodeClaims builds the claims from the members the strict decoding
// step already scanned (jose.ClaimsDecoder), so a cold verification scans
// the claims set once: the members are the token's exact top-level names,
// free of duplicates and case variants, and the registered claims have
// their JSON types checked. The result is the one UnmarshalJSON gives.
func (c *tokenClaims) DecodeClaims(members []jose.Member) error {
	c.raw = make(map[string]json.RawMessage, len(members))
	for _, m := range members {
		c.raw[m.Name] = m.Value
	}
	for _, m := range members {
		var err error
		switch m.Name {
		case "iss":
			err = decodeStringClaim(m.Value, &c.Issuer)
		case "sub":
			err = decodeStringClaim(m.Value, &c.Subject)
		case "jti":
			err = decodeStringClaim(m.Value, &c.ID)
		case "aud":
			if s, ok := jose.PlainString(m.Value); ok {
				c.Audience = jwt.ClaimStrings{s}
			} else {
				err = json.Unmarshal(m.Value, &c.Audience)
			}
		case "exp":
			c.ExpiresAt, err = decodeNumericDate(m.Value)
		case "nbf":
			c.NotBefore, err = decodeNumericDate(m.Value)
		case "iat":
			c.IssuedAt, err = decodeNumericDate(m.Value)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("jwks: claim %q: wrong type", m.Name)
		}
	}
	return nil
}

// decodeStringClaim decodes the JSON string v into dst, without
// encoding/json when it needs no unescaping.
func decodeStringClaim(v []byte, dst *string) error {
	if s, ok := jose.PlainString(v); ok {
		*dst = s
		return nil
	}
	return json.Unmarshal(v, dst)
}

// decodeNumericDate decodes a NumericDate exactly as
// jwt.NumericDate.UnmarshalJSON does (seconds as a float64, split into
// whole seconds and nanoseconds, truncated to jwt.TimePrecision), without
// going through encoding/json.
func decodeNumericDate(v []byte) (*jwt.NumericDate, error) {
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return nil, err
	}
	round, frac := math.Modf(f)
	return jwt.NewNumericDate(time.Unix(int64(round), int64(frac*1e9))), nil
}

// decodeStrictObject decodes a JSON object into its members after
// jose.CheckObject: no duplicate member names, and no two names equal under
// strings.EqualFold.
//
// The check and the split are one pass of the strict scanner
// (jose.Members), which gives the names and values encoding/json would;
// the values are views of b.
func decodeStrictObject(b []byte) (map[string]json.RawMessage, error) {
	ms, err := jose.Members(b)
	if err != nil {
		return nil, fmt.Errorf("jwks: claims: %w", err)
	}
	out := make(map[string]json.RawMessage, len(ms))
	for _, m := range ms {
		out[m.Name] = m.Value
	}
	return out, nil
}

// splitClaimPath splits a dotted claim path with the policy's claim path
// grammar (policy.SplitClaimPath), so roles_claim, claim headers and a
// rule's claims read one path the same way.
func splitClaimPath(p string) ([]string, error) { return authn.SplitClaimPath(p) }

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
		if err := decodeStringClaim(v, &s); err != nil {
			return nil, errors.New("jwks: roles claim: malformed string")
		}
		return strings.Fields(s), nil
	}
	if list, ok := plainStrings(v); ok {
		return list, nil
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

// plainStrings returns the elements of the JSON array v when every one is
// a string that needs no unescaping (jose.PlainString); it reports false
// for anything else, which the caller decodes with encoding/json.
func plainStrings(v []byte) ([]string, bool) {
	if len(v) == 0 || v[0] != '[' {
		return nil, false
	}
	elems, err := jose.Elements(v)
	if err != nil {
		return nil, false
	}
	list := make([]string, len(elems))
	for i, e := range elems {
		s, ok := jose.PlainString(e)
		if !ok {
			return nil, false
		}
		list[i] = s
	}
	return list, true
}
