package jwks

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/policy"
)

// maxClaimDepth bounds the nesting of claim objects and arrays decoded for
// the policy.
const maxClaimDepth = 16

// fillClaims gives p the token's claims for the policy's claims and when
// conditions, its scopes and its email. Every nested object is decoded
// with the top level's duplicate-member check: a token whose
// {"org":{"tier":"free","TIER":"gold"}} would read one way here and
// another way upstream is refused (claim smuggling).
func fillClaims(p *authn.Principal, raw map[string]json.RawMessage) error {
	m := make(policy.ClaimMap, len(raw))
	for k, v := range raw {
		val, err := decodeClaim(v, 0)
		if err != nil {
			return err
		}
		m[k] = val
	}
	p.Claims = m
	p.Scopes = scopesOf(m)
	p.Email = emailOf(m)
	return nil
}

func decodeClaim(v json.RawMessage, depth int) (any, error) {
	if depth > maxClaimDepth {
		return nil, errors.New("jwks: claims: nested too deeply")
	}
	v = bytes.TrimSpace(v)
	switch {
	case len(v) > 0 && v[0] == '{':
		obj, err := decodeStrictObject(v)
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(obj))
		for k, e := range obj {
			if out[k], err = decodeClaim(e, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case len(v) > 0 && v[0] == '[':
		list, err := jose.Elements(v)
		if err != nil {
			return nil, errors.New("jwks: claims: malformed JSON")
		}
		if len(list) > maxClaimItems {
			return nil, errors.New("jwks: claims: array too long")
		}
		out := make([]any, len(list))
		for i, e := range list {
			var err error
			if out[i], err = decodeClaim(e, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if s, ok := decodeScalar(v); ok {
		return s, nil
	}
	var s any
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, errors.New("jwks: claims: malformed JSON")
	}
	return s, nil
}

// decodeScalar decodes the JSON scalars that need no encoding/json: a
// string without escapes, a number that fits a float64 (as encoding/json
// decodes numbers into any), true, false and null. It reports false for
// anything else.
func decodeScalar(v []byte) (any, bool) {
	if len(v) == 0 {
		return nil, false
	}
	switch c := v[0]; {
	case c == '"':
		s, ok := jose.PlainString(v)
		if !ok {
			return nil, false
		}
		return s, true
	case c == '-' || (c >= '0' && c <= '9'):
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return nil, false
		}
		return f, true
	}
	switch string(v) {
	case "true":
		return true, true
	case "false":
		return false, true
	case "null":
		return nil, true
	}
	return nil, false
}

// maxClaimItems bounds the items of one claim array, so a token cannot make
// the gateway build an unbounded value (the whole token is already capped
// by jose.MaxTokenBytes; this bounds the work per array).
const maxClaimItems = 1024

// scopesOf reads the OAuth scopes: "scope", a space-separated string (RFC
// 8693 §4.2, RFC 9068), else "scp", a list or a string (Azure AD, Okta).
func scopesOf(m policy.ClaimMap) []string {
	var out []string
	switch v := m["scope"].(type) {
	case string:
		out = strings.Fields(v)
	default:
		switch v := m["scp"].(type) {
		case string:
			out = strings.Fields(v)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok && s != "" && !strings.ContainsAny(s, " \t") {
					out = append(out, s)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// emailOf returns the "email" claim unless "email_verified" says false (as
// a boolean or the string "false"), as oauth2-proxy does: an address the
// provider has not verified can be anyone's, so email_domains must not
// trust it.
func emailOf(m policy.ClaimMap) string {
	email, _ := m["email"].(string)
	switch v := m["email_verified"].(type) {
	case bool:
		if !v {
			return ""
		}
	case string:
		if strings.EqualFold(v, "false") {
			return ""
		}
	}
	return email
}
