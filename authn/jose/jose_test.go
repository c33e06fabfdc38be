package jose

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/authgate/authgate/authn/jose/josetest"
)

var b64 = base64.RawURLEncoding.EncodeToString

// tok assembles a compact token from a JSON header and claims set and a
// signature that is never checked by Decode.
func tok(header, claims string) string {
	return b64([]byte(header)) + "." + b64([]byte(claims)) + "." + b64([]byte("signature!"))
}

const (
	okHeader = `{"alg":"HS256","typ":"JWT","kid":"k1"}`
	okClaims = `{"iss":"authgate","sub":"alice","aud":"api","exp":1900000000,"iat":1800000000,"roles":["user"]}`
)

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name, header, claims string
	}{
		{"typical", okHeader, okClaims},
		{"no typ, no kid", `{"alg":"RS256"}`, `{"sub":"a"}`},
		{"escaped alg", `{"alg":"\u0048S256"}`, `{}`},
		{"unknown header parameters are ignored", `{"alg":"RS256","x5t":"abc","x5t#S256":"def","nonce":"n"}`, `{}`},
		{"aud as an array", okHeader, `{"aud":["a","b"]}`},
		{"aud as an empty array", okHeader, `{"aud":[]}`},
		{"fractional exp", okHeader, `{"exp":1900000000.5}`},
		{"exponent exp", okHeader, `{"exp":1.9e9}`},
		{"white space in JSON", " { \"alg\" : \"HS256\" }\n", "\t{ \"sub\" : \"a\" , \"n\" : [ 1 , -2.5e-3 , true , false , null ] }\r\n"},
		{"nested case variants are distinct names", okHeader, `{"resource_access":{"App":{"roles":["a"]},"app":{"roles":["b"]}}}`},
		{"not equal under simple folding", okHeader, `{"ß":1,"SS":2}`},
		{"deep but bounded", okHeader, `{"a":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`},
		{"unicode names", okHeader, `{"名前":"x","émoji😀":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tok(tt.header, tt.claims)
			got, err := Decode(raw)
			if err != nil {
				t.Fatalf("Decode(%s . %s) error = %v, want nil", tt.header, tt.claims, err)
			}
			if string(got.Payload) != tt.claims {
				t.Errorf("Decode() payload = %s, want %s", got.Payload, tt.claims)
			}
			if got.SigningInput != raw[:strings.LastIndexByte(raw, '.')] {
				t.Errorf("Decode() signing input = %q, want the first two segments", got.SigningInput)
			}
			if string(got.Signature) != "signature!" {
				t.Errorf("Decode() signature = %q, want %q", got.Signature, "signature!")
			}
		})
	}
}

func TestDecodeHeader(t *testing.T) {
	got, err := Decode(tok(`{"alg":"ES256","kid":"\u006b1","typ":"at+jwt"}`, `{}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Alg: "ES256", Kid: "k1", Typ: "at+jwt", HasTyp: true}
	if got.Header != want {
		t.Errorf("Decode() header = %+v, want %+v", got.Header, want)
	}
	got, err = Decode(tok(`{"alg":"ES256"}`, `{}`))
	if err != nil || got.Header != (Header{Alg: "ES256"}) {
		t.Errorf("Decode(no kid, no typ) header = %+v, %v; want only alg", got.Header, err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	valid := tok(okHeader, okClaims)
	segs := strings.Split(valid, ".")
	tests := []struct {
		name string
		raw  string
		want error
	}{
		// Size and structure.
		{"too large", tok(okHeader, `{"pad":"`+strings.Repeat("x", MaxTokenBytes)+`"}`), ErrTooLarge},
		{"empty", "", ErrMalformed},
		{"one segment", segs[0], ErrMalformed},
		{"two segments", segs[0] + "." + segs[1], ErrMalformed},
		{"unsigned (empty signature)", segs[0] + "." + segs[1] + ".", ErrMalformed},
		{"empty header segment", "." + segs[1] + "." + segs[2], ErrMalformed},
		{"empty payload segment", segs[0] + ".." + segs[2], ErrMalformed},
		{"four segments", valid + ".x", ErrMalformed},
		{"five segments (JWE)", segs[0] + ".a.b.c.d", ErrMalformed},
		{"JWS JSON serialization", `{"payload":"` + segs[1] + `","signatures":[]}`, ErrMalformed},
		// One token, one spelling.
		{"padding", segs[0] + "." + base64.URLEncoding.EncodeToString([]byte(`{"sub":"a"}`)) + "." + segs[2], ErrMalformed},
		{"padding bits set in the payload", segs[0] + "." + josetest.SetPaddingBit(t, segs[1]) + "." + segs[2], ErrMalformed},
		{"padding bits set in the header", josetest.SetPaddingBit(t, segs[0]) + "." + segs[1] + "." + segs[2], ErrMalformed},
		{"padding bits set in the signature", segs[0] + "." + segs[1] + "." + josetest.SetPaddingBit(t, segs[2]), ErrMalformed},
		{"impossible length", segs[0] + "." + impossibleLength(segs[1]) + "." + segs[2], ErrMalformed},
		{"standard alphabet +", segs[0] + "." + segs[1] + "." + segs[2][:4] + "+" + segs[2][5:], ErrMalformed},
		{"standard alphabet /", segs[0] + "." + segs[1] + "." + segs[2][:4] + "/" + segs[2][5:], ErrMalformed},
		{"newline inside", segs[0] + "." + segs[1][:4] + "\n" + segs[1][4:] + "." + segs[2], ErrMalformed},
		{"carriage return inside", segs[0] + "\r." + segs[1] + "." + segs[2], ErrMalformed},
		{"space inside", segs[0] + ". " + segs[1] + "." + segs[2], ErrMalformed},
		{"leading space", " " + valid, ErrMalformed},
		{"trailing newline", valid + "\n", ErrMalformed},
		{"NUL", valid[:10] + "\x00" + valid[10:], ErrMalformed},
		// JSON.
		{"header not JSON", tok(`alg=HS256`, okClaims), ErrMalformed},
		{"header an array", tok(`["alg","HS256"]`, okClaims), ErrMalformed},
		{"header a string", tok(`"HS256"`, okClaims), ErrMalformed},
		{"claims an array", tok(okHeader, `[{"sub":"a"}]`), ErrMalformed},
		{"claims a number", tok(okHeader, `1`), ErrMalformed},
		{"claims null", tok(okHeader, `null`), ErrMalformed},
		{"claims empty", tok(okHeader, ``), ErrMalformed},
		{"trailing data", tok(okHeader, okClaims+`{}`), ErrMalformed},
		{"two objects", tok(okHeader, `{} {}`), ErrMalformed},
		{"trailing comma", tok(okHeader, `{"sub":"a",}`), ErrMalformed},
		{"single quotes", tok(okHeader, `{'sub':'a'}`), ErrMalformed},
		{"unquoted name", tok(okHeader, `{sub:"a"}`), ErrMalformed},
		{"byte order mark", tok(okHeader, "\ufeff"+okClaims), ErrMalformed},
		{"invalid UTF-8 in a value", tok(okHeader, "{\"sub\":\"\xff\"}"), ErrMalformed},
		{"invalid UTF-8 in a name", tok(okHeader, "{\"\xfe\":1,\"\xff\":2}"), ErrMalformed},
		{"UTF-8 encoded surrogate", tok(okHeader, "{\"sub\":\"\xed\xa0\x80\"}"), ErrMalformed},
		{"raw control character", tok(okHeader, "{\"sub\":\"a\tb\"}"), ErrMalformed},
		{"bad escape", tok(okHeader, `{"sub":"\x41"}`), ErrMalformed},
		{"short unicode escape", tok(okHeader, `{"sub":"\u004"}`), ErrMalformed},
		{"leading zero", tok(okHeader, `{"n":01}`), ErrMalformed},
		{"leading plus", tok(okHeader, `{"n":+1}`), ErrMalformed},
		{"bare dot", tok(okHeader, `{"n":1.}`), ErrMalformed},
		{"NaN", tok(okHeader, `{"n":NaN}`), ErrMalformed},
		{"Infinity", tok(okHeader, `{"n":Infinity}`), ErrMalformed},
		{"too deep", tok(okHeader, `{"a":`+strings.Repeat("[", maxDepth)+strings.Repeat("]", maxDepth)+`}`), ErrMalformed},
		{"unterminated", tok(okHeader, `{"sub":"a"`), ErrMalformed},
		{"comment", tok(okHeader, `{"sub":"a"/* x */}`), ErrMalformed},
		// Duplicate and case-variant names.
		{"duplicate claim", tok(okHeader, `{"sub":"alice","sub":"root"}`), ErrDuplicate},
		{"case-variant claim", tok(okHeader, `{"roles":["user"],"ROLES":["admin"]}`), ErrDuplicate},
		{"escaped duplicate claim", tok(okHeader, `{"roles":["user"],"\u0072oles":["admin"]}`), ErrDuplicate},
		{"Kelvin sign case variant", tok(okHeader, `{"kind":"a","\u212aind":"b"}`), ErrDuplicate},
		{"long s case variant", tok(okHeader, `{"sub":"a","\u017fub":"b"}`), ErrDuplicate},
		{"lone surrogates decode alike", tok(okHeader, `{"\ud800":1,"\udbff":2}`), ErrDuplicate},
		{"nested duplicate", tok(okHeader, `{"realm_access":{"roles":["user"],"roles":["admin"]}}`), ErrDuplicate},
		{"duplicate deep in an array", tok(okHeader, `{"a":[{"b":1,"b":2}]}`), ErrDuplicate},
		{"duplicate among many", tok(okHeader, `{`+manyMembers(100)+`,"m7":1}`), ErrDuplicate},
		{"case variant among many", tok(okHeader, `{`+manyMembers(100)+`,"M99":1}`), ErrDuplicate},
		{"duplicate header parameter", tok(`{"alg":"HS256","alg":"none"}`, okClaims), ErrDuplicate},
		{"case-variant header parameter", tok(`{"alg":"HS256","ALG":"none"}`, okClaims), ErrDuplicate},
		{"duplicate kid", tok(`{"alg":"HS256","kid":"a","kid":"b"}`, okClaims), ErrDuplicate},
		// Header parameters.
		{"crit", tok(`{"alg":"HS256","crit":["exp"],"exp":1}`, okClaims), ErrHeader},
		{"empty crit", tok(`{"alg":"HS256","crit":[]}`, okClaims), ErrHeader},
		{"b64 false", tok(`{"alg":"HS256","b64":false,"crit":["b64"]}`, okClaims), ErrHeader},
		{"b64 false without crit", tok(`{"alg":"HS256","b64":false}`, okClaims), ErrHeader},
		{"zip", tok(`{"alg":"HS256","zip":"DEF"}`, okClaims), ErrHeader},
		{"enc", tok(`{"alg":"dir","enc":"A256GCM"}`, okClaims), ErrHeader},
		{"nested JWT", tok(`{"alg":"HS256","cty":"JWT"}`, okClaims), ErrHeader},
		{"cty", tok(`{"alg":"HS256","cty":"json"}`, okClaims), ErrHeader},
		{"jku", tok(`{"alg":"RS256","jku":"https://evil.example/jwks"}`, okClaims), ErrHeader},
		{"x5u", tok(`{"alg":"RS256","x5u":"https://evil.example/cert"}`, okClaims), ErrHeader},
		{"jwk", tok(`{"alg":"RS256","jwk":{"kty":"oct","k":"AAAA"}}`, okClaims), ErrHeader},
		{"x5c", tok(`{"alg":"RS256","x5c":["MIIB"]}`, okClaims), ErrHeader},
		{"no alg", tok(`{"typ":"JWT"}`, okClaims), ErrHeader},
		{"empty alg", tok(`{"alg":""}`, okClaims), ErrHeader},
		{"alg none", tok(`{"alg":"none"}`, okClaims), ErrHeader},
		{"alg NONE", tok(`{"alg":"NONE"}`, okClaims), ErrHeader},
		{"alg not a string", tok(`{"alg":["HS256"]}`, okClaims), ErrHeader},
		{"alg null", tok(`{"alg":null}`, okClaims), ErrHeader},
		{"kid not a string", tok(`{"alg":"HS256","kid":7}`, okClaims), ErrHeader},
		{"empty kid", tok(`{"alg":"HS256","kid":""}`, okClaims), ErrHeader},
		{"typ not a string", tok(`{"alg":"HS256","typ":1}`, okClaims), ErrHeader},
		// Registered claims.
		{"exp as a string", tok(okHeader, `{"exp":"1900000000"}`), ErrClaim},
		{"exp 1e400", tok(okHeader, `{"exp":1e400}`), ErrClaim},
		{"exp beyond year 9999", tok(okHeader, `{"exp":253402300800}`), ErrClaim},
		{"exp beyond int64", tok(okHeader, `{"exp":1e19}`), ErrClaim},
		{"negative exp", tok(okHeader, `{"exp":-1}`), ErrClaim},
		{"exp null", tok(okHeader, `{"exp":null}`), ErrClaim},
		{"exp true", tok(okHeader, `{"exp":true}`), ErrClaim},
		{"nbf as a string", tok(okHeader, `{"nbf":"0"}`), ErrClaim},
		{"iat an object", tok(okHeader, `{"iat":{}}`), ErrClaim},
		{"sub a number", tok(okHeader, `{"sub":1}`), ErrClaim},
		{"sub null", tok(okHeader, `{"sub":null}`), ErrClaim},
		{"iss an array", tok(okHeader, `{"iss":["a"]}`), ErrClaim},
		{"jti a number", tok(okHeader, `{"jti":1}`), ErrClaim},
		{"aud a number", tok(okHeader, `{"aud":1}`), ErrClaim},
		{"aud an array with a number", tok(okHeader, `{"aud":["a",1]}`), ErrClaim},
		{"aud an array of arrays", tok(okHeader, `{"aud":[["a"]]}`), ErrClaim},
		{"aud null", tok(okHeader, `{"aud":null}`), ErrClaim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.raw)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode(%.60q) error = %v, want %v", tt.raw, err, tt.want)
			}
			if got != nil {
				t.Errorf("Decode(%.60q) returned a token with an error", tt.raw)
			}
			if len(tt.raw) > 20 && strings.Contains(err.Error(), tt.raw) {
				t.Errorf("Decode() error contains the token")
			}
		})
	}
}

// impossibleLength extends s to a length of 4n+1 characters, which no
// byte string encodes to.
func impossibleLength(s string) string {
	for len(s)%4 != 1 {
		s += "A"
	}
	return s
}

func manyMembers(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"m` + itoa(i) + `":1`
	}
	return strings.Join(parts, ",")
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestClaim(t *testing.T) {
	got, err := Decode(tok(okHeader, `{"iss":"a","n":{"iss":"b"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := got.Claim("iss"); !ok || string(v) != `"a"` {
		t.Errorf(`Claim("iss") = %s, %v; want "a", true`, v, ok)
	}
	if v, ok := got.Claim("n"); !ok || string(v) != `{"iss":"b"}` {
		t.Errorf(`Claim("n") = %s, %v; want the nested object`, v, ok)
	}
	if _, ok := got.Claim("ISS"); ok {
		t.Error(`Claim("ISS") found a claim; names match exactly`)
	}
}

func TestCheckObject(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{`{"a":1,"b":{"a":2,"A":3}}`, false}, // case folding applies to the top level
		{`{"roles":1,"ROLES":2}`, true},
		{`{"sub":1,"sub":2}`, true},
		{`{"kid":1,"\u212aid":2}`, true},
		{`{"a":{"b":1,"b":2}}`, true},
		{`[1]`, true},
		{`{"a":1} {}`, true},
		{`{"a":}`, true},
		{`{}`, false},
	}
	for _, tt := range tests {
		if err := CheckObject([]byte(tt.in)); (err != nil) != tt.wantErr {
			t.Errorf("CheckObject(%s) error = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
}

func TestFoldName(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"roles", "ROLES", true},
		{"Roles", "rOLES", true},
		{"kind", "\u212aind", true},
		{"sub", "\u017fub", true},
		{"ß", "SS", false},
		{"ß", "ẞ", true},
		{"a", "b", false},
		{"", "", true},
	}
	for _, tt := range tests {
		if got := FoldName(tt.a) == FoldName(tt.b); got != tt.same || got != strings.EqualFold(tt.a, tt.b) {
			t.Errorf("FoldName(%q) == FoldName(%q) is %v, want %v (strings.EqualFold)", tt.a, tt.b, got, tt.same)
		}
	}
}

func TestTypePolicy(t *testing.T) {
	tests := []struct {
		typ         string
		present     bool
		jwt, atOnly bool
	}{
		{"", false, true, false},
		{"JWT", true, true, false},
		{"jwt", true, true, false},
		{"application/jwt", true, true, false},
		{"Application/JWT", true, true, false},
		{"at+jwt", true, true, true},
		{"AT+JWT", true, true, true},
		{"application/at+jwt", true, true, true},
		{"APPLICATION/AT+JWT", true, true, true},
		{"", true, false, false},
		{"refresh+jwt", true, false, false},
		{"logout+jwt", true, false, false},
		{"dpop+jwt", true, false, false},
		{"secevent+jwt", true, false, false},
		{"JOSE", true, false, false},
		{"application/okta-internal-at+jwt", true, false, false},
		{"text/at+jwt", true, false, false},
		{"application/application/at+jwt", true, false, false},
		{" at+jwt", true, false, false},
		{"at+jwt ", true, false, false},
	}
	for _, tt := range tests {
		if got := TypeJWT.allows(tt.typ, tt.present); got != tt.jwt {
			t.Errorf("TypeJWT allows typ %q (present %v) = %v, want %v", tt.typ, tt.present, got, tt.jwt)
		}
		if got := TypeAccessToken.allows(tt.typ, tt.present); got != tt.atOnly {
			t.Errorf("TypeAccessToken allows typ %q (present %v) = %v, want %v", tt.typ, tt.present, got, tt.atOnly)
		}
	}
}
