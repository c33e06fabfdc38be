package jose

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzStrictDecode checks Decode against encoding/json and base64 as
// oracles. Whenever a token is accepted:
//   - its segments are the canonical encodings of the decoded bytes (one
//     token, one spelling);
//   - header and claims are valid JSON objects, and decoding them into a
//     map loses no member (no duplicates), and no two top-level names are
//     equal under strings.EqualFold;
//   - no refused header parameter is present and alg is a non-empty string
//     other than none;
//   - registered claims have their JSON types.
//
// Whenever encoding/json rejects a segment, Decode must reject the token.
func FuzzStrictDecode(f *testing.F) {
	f.Add(okHeader, okClaims, "sig", "", uint8(0))
	f.Add(`{"alg":"RS256","crit":["b64"],"b64":false}`, `{}`, "s", "", uint8(0))
	f.Add(okHeader, `{"roles":["user"],"ROLES":["admin"]}`, "s", "", uint8(0))
	f.Add(okHeader, `{"sub":"a","sub":"b"}`, "s", "", uint8(0))
	f.Add(okHeader, `{"exp":"1900000000","aud":["a",1]}`, "s", "", uint8(0))
	f.Add(okHeader, `{"exp":1e400}`, "s", "", uint8(0))
	f.Add(okHeader, `{"\u212aind":1,"kind":2}`, "s", "", uint8(0))
	f.Add(`{"alg":"HS256","typ":"at+jwt","cty":"JWT"}`, `{"a":[{"b":{"c":null}}]}`, "s", "", uint8(0))
	f.Add("", "", "", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln", uint8(1))
	f.Add("", "", "", "eyJhbGciOiJIUzI1NiJ9.e31.c2ln", uint8(1))
	f.Add("", "", "", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln.x.y", uint8(1))
	f.Add("", "", "", "eyJhbGciOiJIUzI1NiJ9=.e30.c2ln", uint8(1))
	f.Add(okHeader, "{\"a\":\"\xff\"}", "s", "", uint8(2))
	f.Add(okHeader, `{"sub":"caf\u00e9","a":["\"x",{"b":"\\"}],"n":-1.5e3}`, "s", "", uint8(0))

	f.Fuzz(func(t *testing.T, header, claims, sig, raw string, mode uint8) {
		if mode%3 != 1 {
			// Build a token around the fuzzed JSON so the JSON rules are
			// reached, not only the segment rules.
			raw = b64([]byte(header)) + "." + b64([]byte(claims)) + "." + b64([]byte(sig))
			if mode%3 == 2 {
				raw = strings.Replace(raw, ".", "."+sig, 1)
			}
		}
		tk, err := Decode(raw)
		if err != nil {
			if tk != nil {
				t.Fatalf("Decode(%q) returned a token with error %v", raw, err)
			}
			return
		}
		segs := strings.Split(raw, ".")
		if len(segs) != 3 {
			t.Fatalf("Decode(%q) accepted %d segments", raw, len(segs))
		}
		enc := base64.RawURLEncoding
		h, err := enc.DecodeString(segs[0])
		if err != nil {
			t.Fatalf("Decode(%q) accepted a header segment base64 rejects: %v", raw, err)
		}
		for i, seg := range segs {
			b, _ := enc.DecodeString(seg)
			if enc.EncodeToString(b) != seg {
				t.Fatalf("Decode(%q) accepted segment %d, which is not the canonical spelling of its bytes", raw, i)
			}
		}
		if tk.SigningInput != segs[0]+"."+segs[1] || enc.EncodeToString(tk.Signature) != segs[2] || enc.EncodeToString(tk.Payload) != segs[1] {
			t.Fatalf("Decode(%q) returned parts that are not the token's", raw)
		}
		checkObjectOracle(t, "header", h)
		checkObjectOracle(t, "claims", tk.Payload)
		checkMembersOracle(t, h, 0)
		checkMembersOracle(t, tk.Payload, 0)

		var hm map[string]any
		_ = json.Unmarshal(h, &hm)
		for name := range refusedHeaders {
			if _, ok := hm[name]; ok {
				t.Fatalf("Decode(%q) accepted header parameter %q", raw, name)
			}
		}
		alg, ok := hm["alg"].(string)
		if !ok || alg == "" || strings.EqualFold(alg, "none") || alg != tk.Header.Alg {
			t.Fatalf("Decode(%q) accepted alg %v (header says %q)", raw, hm["alg"], tk.Header.Alg)
		}
		if kid, ok := hm["kid"]; ok && (kid == "" || kid != tk.Header.Kid) {
			t.Fatalf("Decode(%q) accepted kid %v (header says %q)", raw, kid, tk.Header.Kid)
		}

		var cm map[string]any
		_ = json.Unmarshal(tk.Payload, &cm)
		for _, name := range []string{"iss", "sub", "jti"} {
			if v, ok := cm[name]; ok {
				if _, isStr := v.(string); !isStr {
					t.Fatalf("Decode(%q) accepted %s = %v", raw, name, v)
				}
			}
		}
		for _, name := range []string{"exp", "nbf", "iat"} {
			if v, ok := cm[name]; ok {
				if n, isNum := v.(float64); !isNum || n < 0 || n > maxNumericDate {
					t.Fatalf("Decode(%q) accepted %s = %v", raw, name, v)
				}
			}
		}
		if v, ok := cm["aud"]; ok {
			switch a := v.(type) {
			case string:
			case []any:
				for _, e := range a {
					if _, isStr := e.(string); !isStr {
						t.Fatalf("Decode(%q) accepted aud = %v", raw, v)
					}
				}
			default:
				t.Fatalf("Decode(%q) accepted aud = %v", raw, v)
			}
		}
	})
}

// checkObjectOracle fails unless b is a valid JSON object whose members
// survive decoding into a map and whose top-level names are distinct under
// case folding.
func checkObjectOracle(t *testing.T, what string, b []byte) {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("Decode accepted %s %q, which encoding/json rejects", what, b)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("Decode accepted %s %q, which is not a JSON object: %v", what, b, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for dec.More() {
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(m) {
		t.Fatalf("Decode accepted %s %q with %d members but %d distinct names", what, b, n, len(m))
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	for i := range names {
		for j := range i {
			if strings.EqualFold(names[i], names[j]) {
				t.Fatalf("Decode accepted %s %q with names %q and %q", what, b, names[i], names[j])
			}
		}
	}
}

// checkMembersOracle compares Members, Elements and PlainString with
// encoding/json on an object the strict scan accepted, and on every
// object, array and string nested in it: Members must give the names and
// values of json.Unmarshal into map[string]json.RawMessage, Elements those
// of json.Unmarshal into []json.RawMessage, and PlainString, when it
// answers, the string json.Unmarshal decodes.
func checkMembersOracle(t *testing.T, b []byte, depth int) {
	t.Helper()
	var values [][]byte
	switch {
	case len(b) > 0 && b[0] == '{':
		ms, err := Members(b)
		if err != nil {
			if depth == 0 {
				t.Fatalf("Members(%q) = %v for an object Decode accepted", b, err)
			}
			if CheckObject(b) == nil {
				t.Fatalf("Members(%q) = %v, CheckObject accepts it", b, err)
			}
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("Members(%q) accepted what encoding/json rejects: %v", b, err)
		}
		if len(ms) != len(m) {
			t.Fatalf("Members(%q) gave %d members, encoding/json %d", b, len(ms), len(m))
		}
		for _, mb := range ms {
			if v, ok := m[mb.Name]; !ok || !bytes.Equal(v, mb.Value) {
				t.Fatalf("Members(%q): member %q = %q, encoding/json has %q", b, mb.Name, mb.Value, v)
			}
			values = append(values, mb.Value)
		}
	case len(b) > 0 && b[0] == '[':
		es, err := Elements(b)
		if err != nil {
			t.Fatalf("Elements(%q) = %v for an array nested in an accepted object", b, err)
		}
		var l []json.RawMessage
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("Elements(%q) accepted what encoding/json rejects: %v", b, err)
		}
		if len(es) != len(l) {
			t.Fatalf("Elements(%q) gave %d elements, encoding/json %d", b, len(es), len(l))
		}
		for i := range es {
			if !bytes.Equal(es[i], l[i]) {
				t.Fatalf("Elements(%q)[%d] = %q, encoding/json has %q", b, i, es[i], l[i])
			}
		}
		values = es
	case len(b) > 0 && b[0] == '"':
		if got, ok := PlainString(b); ok {
			var want string
			if err := json.Unmarshal(b, &want); err != nil || got != want {
				t.Fatalf("PlainString(%q) = %q, encoding/json gives %q (%v)", b, got, want, err)
			}
		}
	}
	if depth < 4 {
		for _, v := range values {
			checkMembersOracle(t, v, depth+1)
		}
	}
}
