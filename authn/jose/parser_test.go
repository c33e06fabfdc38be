package jose

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	parserNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	parserSecret = []byte("parser-test-secret-0123456789abcdef")
)

// testClaims is a claims type like the gateway's own.
type testClaims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles,omitempty"`
	Type  string   `json:"type"`
	Skip  string   `json:"-"`
	Plain string
	plain string
}

// hs256 signs header and claims with parserSecret.
func hs256(t *testing.T, header, claims string) string {
	t.Helper()
	input := b64([]byte(header)) + "." + b64([]byte(claims))
	sig, err := jwt.SigningMethodHS256.Sign(input, parserSecret)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func claimsAt(extra string) string {
	return fmt.Sprintf(`{"iss":"gw","aud":"gw","sub":"alice","exp":%d,"iat":%d%s}`,
		parserNow.Add(time.Hour).Unix(), parserNow.Unix(), extra)
}

func newTestParser(typ TypePolicy) *Parser {
	return NewParser(Options{
		Algorithms: []string{"HS256", "none", "NOPE"},
		Type:       typ,
		Claims:     testClaims{},
		Validation: []jwt.ParserOption{
			jwt.WithIssuer("gw"), jwt.WithAudience("gw"), jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(), jwt.WithTimeFunc(func() time.Time { return parserNow }),
		},
	})
}

func TestParserAccepts(t *testing.T) {
	p := newTestParser(TypeJWT)
	for _, header := range []string{`{"alg":"HS256","kid":"k1"}`, `{"alg":"HS256","typ":"JWT"}`, `{"alg":"HS256","typ":"at+jwt"}`} {
		var c testClaims
		keyCalls := 0
		tk, err := p.Parse(hs256(t, header, claimsAt(`,"roles":["user"],"type":"access"`)), &c, func(h Header) (any, error) {
			keyCalls++
			return parserSecret, nil
		})
		if err != nil {
			t.Fatalf("Parse(%s) error = %v", header, err)
		}
		if c.Subject != "alice" || len(c.Roles) != 1 || c.Roles[0] != "user" || c.Type != "access" || tk.Header.Alg != "HS256" {
			t.Errorf("Parse(%s) claims = %+v", header, c)
		}
		if keyCalls != 1 {
			t.Errorf("Parse(%s) called the key func %d times, want 1", header, keyCalls)
		}
	}
}

func TestParserRefuses(t *testing.T) {
	errKey := errors.New("no such key")
	tests := []struct {
		name    string
		typ     TypePolicy
		raw     func(t *testing.T) string
		key     func(Header) (any, error)
		want    error
		keyUsed bool
	}{
		{"alg outside the allow-list", TypeJWT, func(t *testing.T) string {
			input := b64([]byte(`{"alg":"HS384"}`)) + "." + b64([]byte(claimsAt("")))
			sig, _ := jwt.SigningMethodHS384.Sign(input, parserSecret)
			return input + "." + b64(sig)
		}, nil, ErrAlgorithm, false},
		{"alg none listed by mistake still refused", TypeJWT, func(t *testing.T) string {
			return b64([]byte(`{"alg":"none"}`)) + "." + b64([]byte(claimsAt(""))) + ".AA"
		}, nil, ErrHeader, false},
		{"unknown alg listed by mistake never matches", TypeJWT, func(t *testing.T) string {
			return b64([]byte(`{"alg":"NOPE"}`)) + "." + b64([]byte(claimsAt(""))) + ".AA"
		}, nil, ErrAlgorithm, false},
		{"typ refresh+jwt", TypeJWT, func(t *testing.T) string { return hs256(t, `{"alg":"HS256","typ":"refresh+jwt"}`, claimsAt("")) }, nil, ErrType, false},
		{"typ JWT where at+jwt is required", TypeAccessToken, func(t *testing.T) string { return hs256(t, `{"alg":"HS256","typ":"JWT"}`, claimsAt("")) }, nil, ErrType, false},
		{"no typ where at+jwt is required", TypeAccessToken, func(t *testing.T) string { return hs256(t, `{"alg":"HS256"}`, claimsAt("")) }, nil, ErrType, false},
		{"lone case variant of a field", TypeJWT, func(t *testing.T) string { return hs256(t, `{"alg":"HS256"}`, claimsAt(`,"ROLES":["admin"]`)) }, nil, ErrDuplicate, false},
		{"case variant of an embedded field", TypeJWT, func(t *testing.T) string {
			return hs256(t, `{"alg":"HS256"}`, fmt.Sprintf(`{"iss":"gw","aud":"gw","sub":"a","EXP":%d}`, parserNow.Add(time.Hour).Unix()))
		}, nil, ErrDuplicate, false},
		{"case variant of a tagged field", TypeJWT, func(t *testing.T) string { return hs256(t, `{"alg":"HS256"}`, claimsAt(`,"TYPE":"access"`)) }, nil, ErrDuplicate, false},
		{"case variant of a field without a tag", TypeJWT, func(t *testing.T) string { return hs256(t, `{"alg":"HS256"}`, claimsAt(`,"PLAIN":"x"`)) }, nil, ErrDuplicate, false},
		{"key func error", TypeJWT, func(t *testing.T) string { return hs256(t, `{"alg":"HS256","kid":"x"}`, claimsAt("")) },
			func(Header) (any, error) { return nil, errKey }, errKey, true},
		{"wrong key", TypeJWT, func(t *testing.T) string { return hs256(t, `{"alg":"HS256"}`, claimsAt("")) },
			func(Header) (any, error) { return []byte("another-secret-0123456789abcdefgh"), nil }, ErrSignature, true},
		{"tampered claims", TypeJWT, func(t *testing.T) string {
			good := hs256(t, `{"alg":"HS256"}`, claimsAt(""))
			bad := hs256(t, `{"alg":"HS256"}`, claimsAt(`,"roles":["admin"]`))
			return good[:len(good)-43] + bad[len(bad)-43:]
		}, nil, ErrSignature, true},
		{"expired", TypeJWT, func(t *testing.T) string {
			return hs256(t, `{"alg":"HS256"}`, fmt.Sprintf(`{"iss":"gw","aud":"gw","exp":%d}`, parserNow.Add(-time.Hour).Unix()))
		}, nil, ErrClaims, true},
		{"wrong issuer", TypeJWT, func(t *testing.T) string {
			return hs256(t, `{"alg":"HS256"}`, fmt.Sprintf(`{"iss":"other","aud":"gw","exp":%d}`, parserNow.Add(time.Hour).Unix()))
		}, nil, ErrClaims, true},
		{"claims of the wrong Go type", TypeJWT, func(t *testing.T) string { return hs256(t, `{"alg":"HS256"}`, claimsAt(`,"roles":"admin"`)) }, nil, ErrClaims, true},
		{"crit before any key is looked up", TypeJWT, func(t *testing.T) string { return hs256(t, `{"alg":"HS256","crit":["x"],"x":1}`, claimsAt("")) }, nil, ErrHeader, false},
		{"duplicate claim before any key is looked up", TypeJWT, func(t *testing.T) string { return hs256(t, `{"alg":"HS256"}`, claimsAt(`,"sub":"root"`)) }, nil, ErrDuplicate, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestParser(tt.typ)
			used := false
			key := func(h Header) (any, error) {
				used = true
				if tt.key != nil {
					return tt.key(h)
				}
				return parserSecret, nil
			}
			var c testClaims
			tk, err := p.Parse(tt.raw(t), &c, key)
			if !errors.Is(err, tt.want) || tk != nil {
				t.Fatalf("Parse() = %v, %v; want %v", tk, err, tt.want)
			}
			if used != tt.keyUsed {
				t.Errorf("Parse() looked up a key: %v, want %v", used, tt.keyUsed)
			}
		})
	}
}

func TestParserAccessTokenType(t *testing.T) {
	p := newTestParser(TypeAccessToken)
	for _, typ := range []string{"at+jwt", "AT+JWT", "application/at+jwt"} {
		var c testClaims
		if _, err := p.Parse(hs256(t, `{"alg":"HS256","typ":"`+typ+`"}`, claimsAt("")), &c, func(Header) (any, error) { return parserSecret, nil }); err != nil {
			t.Errorf("Parse(typ %s) with TypeAccessToken error = %v, want nil", typ, err)
		}
	}
}

func TestJSONFieldNames(t *testing.T) {
	got := fmt.Sprint(jsonFieldNames(reflect.TypeOf(&testClaims{})))
	want := "[iss sub aud exp nbf iat jti roles type Plain]"
	if got != want {
		t.Errorf("jsonFieldNames(testClaims) = %s, want %s", got, want)
	}
}
