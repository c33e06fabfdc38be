package jwks

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/authgate/authgate/authn/jose"
)

// FuzzClaimsDecode is a differential test of the claims decoding of a
// cold verification: for every claims set the strict decoding step
// accepts, tokenClaims.DecodeClaims over the scanned members must give
// exactly what tokenClaims.UnmarshalJSON (encoding/json over the whole
// claims set) gives, error or not: the same registered claims and the same
// raw members. fillClaims and the roles lookup must agree too.
func FuzzClaimsDecode(f *testing.F) {
	for _, c := range []string{
		`{"iss":"https://idp.example","sub":"u1","aud":"api","exp":1900000000,"iat":1700000000,"nbf":1700000000,"jti":"j","roles":["user","admin"]}`,
		`{"iss":"i","sub":"\u0075\u00e9","aud":["a","b"],"exp":1900000000.5,"nbf":1e9,"iat":0}`,
		`{"sub":"caf\u00e9 \"x\"","aud":[],"exp":253402300799,"realm_access":{"roles":["r"]},"scope":"a b"}`,
		`{"aud":"","sub":"","exp":1.2345678912e9,"n":null,"b":true,"f":-1.5e-3,"o":{"a":[1,{"b":"c"}]}}`,
		`{"sub":"\ud83d\ude00","email":"a@b.c","email_verified":false,"groups":"x y"}`,
		`{"exp":1900000000,"o":{"a":1,"A":2}}`,
		`{}`,
	} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, claims string) {
		raw := "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".c2ln"
		tk, err := jose.Decode(raw)
		if err != nil {
			return
		}
		members, err := jose.Members(tk.Payload)
		if err != nil {
			t.Fatalf("Members(%q) = %v for a claims set Decode accepted", tk.Payload, err)
		}
		var old, fast tokenClaims
		errOld := old.UnmarshalJSON(tk.Payload)
		errFast := fast.DecodeClaims(members)
		if (errOld == nil) != (errFast == nil) {
			t.Fatalf("claims %q: UnmarshalJSON error %v, DecodeClaims error %v", claims, errOld, errFast)
		}
		if errOld != nil {
			return
		}
		if !reflect.DeepEqual(old.RegisteredClaims, fast.RegisteredClaims) {
			t.Fatalf("claims %q: UnmarshalJSON gives %+v, DecodeClaims %+v", claims, old.RegisteredClaims, fast.RegisteredClaims)
		}
		if !reflect.DeepEqual(old.raw, fast.raw) {
			t.Fatalf("claims %q: raw members differ: %q and %q", claims, old.raw, fast.raw)
		}
		for name, v := range fast.raw {
			got, err := decodeClaim(v, 0)
			want, wantErr := decodeClaimJSON(v, 0)
			if (err == nil) != (wantErr == nil) || (err == nil && !reflect.DeepEqual(got, want)) {
				t.Fatalf("claim %q = %s: decodeClaim gives %#v, %v; encoding/json %#v, %v", name, v, got, err, want, wantErr)
			}
			roles, err := decodeRoles(v)
			wantRoles, wantErr := decodeRolesJSON(v)
			if (err == nil) != (wantErr == nil) || (err == nil && !reflect.DeepEqual(roles, wantRoles)) {
				t.Fatalf("claim %q = %s: decodeRoles gives %q, %v; encoding/json %q, %v", name, v, roles, err, wantRoles, wantErr)
			}
		}
	})
}

// decodeClaimJSON is the oracle for decodeClaim: the same rules with
// encoding/json doing every split and every scalar.
func decodeClaimJSON(v json.RawMessage, depth int) (any, error) {
	if depth > maxClaimDepth {
		return nil, errors.New("nested too deeply")
	}
	v = bytes.TrimSpace(v)
	switch {
	case len(v) > 0 && v[0] == '{':
		if err := jose.CheckObject(v); err != nil {
			return nil, err
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(v, &obj); err != nil {
			return nil, err
		}
		out := make(map[string]any, len(obj))
		for k, e := range obj {
			var err error
			if out[k], err = decodeClaimJSON(e, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case len(v) > 0 && v[0] == '[':
		var list []json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, err
		}
		if len(list) > maxClaimItems {
			return nil, errors.New("array too long")
		}
		out := make([]any, len(list))
		for i, e := range list {
			var err error
			if out[i], err = decodeClaimJSON(e, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	var s any
	err := json.Unmarshal(v, &s)
	return s, err
}

// decodeRolesJSON is the oracle for decodeRoles.
func decodeRolesJSON(v json.RawMessage) ([]string, error) {
	v = bytes.TrimSpace(v)
	if bytes.Equal(v, []byte("null")) {
		return nil, nil
	}
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, err
		}
		return strings.Fields(s), nil
	}
	var list []string
	err := json.Unmarshal(v, &list)
	return list, err
}
