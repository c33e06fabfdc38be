// Package jose is the one strict decoding step for every JWT the gateway
// accepts: its own tokens (authn/token) and external issuers' tokens
// (authn/jwks). It replaces the parsing of golang-jwt, which still verifies
// signatures and validates the registered claims, so that the token whose
// signature is checked is exactly the token whose claims are read.
//
// # What is refused
//
// A token is refused before any key is looked up when:
//   - it is longer than MaxTokenBytes;
//   - it is not three base64url segments (a JWE has five; the JWS JSON
//     serialization is not accepted), or holds any byte outside the
//     base64url alphabet and the two dots: padding, white space, "+" or "/";
//   - a segment is not in canonical base64url: non-zero trailing bits, so
//     that one token would have several spellings (RFC 7515 §2, RFC 4648
//     §3.5), or an impossible length;
//   - the signature is empty (an unsigned token);
//   - the header or the claims set is not exactly one JSON object in UTF-8
//     (RFC 8259; no trailing data, no invalid UTF-8, at most 32 levels);
//   - an object has two members of the same name, or the header or claims
//     set two names equal under case folding ("roles" and "ROLES"):
//     encoding/json matches struct fields case-insensitively and lets the
//     last duplicate win, so either would let a claim be smuggled past a
//     reader that keeps the first one (RFC 7519 §4 allows rejecting);
//   - the header carries "crit" (RFC 7515 §4.1.11: no extension is
//     understood, so every critical one must be refused), "b64" (RFC 7797
//     changes what the signature covers), "zip" (compressed payloads, RFC
//     8725 §3.6), "enc" (a JWE), "cty" (nested JWTs, RFC 7519 §5.2), or
//     "jku", "x5u", "jwk" or "x5c" (a token naming its own key,
//     the CVE-2018-0114 class);
//   - "alg" is missing, not a string, or "none"; "kid" is present but not a
//     non-empty string; "typ" is present but not a string;
//   - "typ" is not allowed by the TypePolicy (see below);
//   - a registered claim has the wrong JSON type: "iss", "sub" and "jti"
//     must be strings, "aud" a string or an array of strings, and "exp",
//     "nbf" and "iat" numbers between 0 and 253402300799 (year 9999): a
//     string such as "1999999999", which encoding/json would accept into a
//     number, or 1e400, is refused.
//
// Unknown header parameters are ignored, as RFC 7515 §4 requires; this
// includes "x5t" and "x5t#S256", which Entra ID sends as key hints.
//
// # typ
//
// Media types are case-insensitive, and RFC 7515 §4.1.9 reads a "typ"
// without "/" as if "application/" were prepended. With TypeJWT a token
// without "typ", or with "JWT" or "at+jwt" in any of these spellings, is
// accepted and anything else ("refresh+jwt", "logout+jwt", "dpop+jwt",
// Okta's org server "application/okta-internal-at+jwt") is refused.
// TypeAccessToken accepts only "at+jwt" or "application/at+jwt" (RFC 9068
// §4), which keeps ID tokens and other JWTs of the same issuer and
// audience out (RFC 8725 §3.11, explicit typing).
//
// # Cost
//
// Decoding is one pass over each segment with no reflection: the JSON
// scanner checks syntax and member names as it goes, and only names with
// escapes are decoded through encoding/json. Callers cache verified tokens
// by digest, so the strict step runs once per distinct token.
package jose

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// MaxTokenBytes is the largest token, in bytes of its compact form, that
// any verifier of the gateway accepts. 16 KiB holds the largest tokens real
// providers issue (Entra ID replaces the groups claim by an overage claim
// beyond 200 groups, which keeps its tokens near 12 KiB at most) and bounds
// the hashing, decoding and memory spent on an unverified token. It is
// above nginx's default header line limit (large_client_header_buffers,
// 8 KiB) and far below Envoy's default request header limit (60 KiB).
const MaxTokenBytes = 16 << 10

// The errors of the strict decoding step. Every error returned by Decode
// and Parser.Parse wraps one of them; their text is for logs only and
// never contains the token.
var (
	// ErrTooLarge is a token longer than MaxTokenBytes.
	ErrTooLarge = errors.New("jose: token too large")
	// ErrMalformed is a token that is not a canonical JWS compact
	// serialization of two JSON objects.
	ErrMalformed = errors.New("jose: malformed token")
	// ErrDuplicate is an object with duplicate or case-variant member
	// names.
	ErrDuplicate = errors.New("jose: duplicate member name")
	// ErrHeader is a header parameter that is refused or has the wrong
	// type.
	ErrHeader = errors.New("jose: refused header")
	// ErrType is a "typ" header the TypePolicy does not allow.
	ErrType = errors.New("jose: refused token type")
	// ErrClaim is a registered claim of the wrong JSON type or range.
	ErrClaim = errors.New("jose: malformed registered claim")
	// ErrAlgorithm is an "alg" outside the verifier's allow-list.
	ErrAlgorithm = errors.New("jose: algorithm not allowed")
	// ErrSignature is a signature that does not verify.
	ErrSignature = errors.New("jose: signature invalid")
	// ErrClaims is a claims set that failed validation (exp, nbf, iat, iss,
	// aud) or could not be decoded into the verifier's claims type.
	ErrClaims = errors.New("jose: claims invalid")
)

var (
	errSyntax    = fmt.Errorf("%w: invalid JSON", ErrMalformed)
	errNotObject = fmt.Errorf("%w: not a JSON object", ErrMalformed)
	errTooDeep   = fmt.Errorf("%w: JSON nested too deeply", ErrMalformed)
	errUTF8      = fmt.Errorf("%w: invalid UTF-8 in JSON", ErrMalformed)
)

// memberError names the member a rule refused. The name comes from the
// token, so it is quoted and cut short.
type memberError struct {
	err  error
	what string
	name string
}

func (e *memberError) Error() string {
	name := e.name
	if len(name) > 64 {
		name = name[:64] + "..."
	}
	return fmt.Sprintf("%v: %s %q", e.err, e.what, name)
}

func (e *memberError) Unwrap() error { return e.err }

// TypePolicy is the rule a verifier applies to the "typ" header.
type TypePolicy uint8

const (
	// TypeJWT, the zero value, accepts a token without "typ" or with "JWT"
	// or "at+jwt" (with or without "application/", in any case).
	TypeJWT TypePolicy = iota
	// TypeAccessToken accepts only "at+jwt" or "application/at+jwt", in any
	// case (RFC 9068 §4).
	TypeAccessToken
	// TypeIDToken accepts an OpenID Connect ID token: no "typ" or "JWT",
	// never "at+jwt", so an access token of the same provider cannot stand
	// in for an ID token.
	TypeIDToken
	// TypeLogoutToken accepts a back-channel logout token: "logout+jwt"
	// (OpenID Connect Back-Channel Logout 1.0 §2.4), or no "typ" or "JWT"
	// from providers older than that rule; never "at+jwt".
	TypeLogoutToken
)

// allows reports whether p accepts typ; present is false when the header
// has no "typ".
func (p TypePolicy) allows(typ string, present bool) bool {
	if !present {
		return p != TypeAccessToken
	}
	t := strings.ToLower(typ)
	if !strings.Contains(t, "/") {
		t = "application/" + t
	}
	switch t {
	case "application/at+jwt":
		return p == TypeJWT || p == TypeAccessToken
	case "application/jwt":
		return p != TypeAccessToken
	case "application/logout+jwt":
		return p == TypeLogoutToken
	}
	return false
}

// Header is the decoded JOSE header of a token.
type Header struct {
	// Alg is the "alg" parameter; never empty.
	Alg string
	// Kid is the "kid" parameter; empty when absent.
	Kid string
	// Typ is the "typ" parameter as sent; empty when absent.
	Typ string
	// HasTyp reports whether the header has a "typ".
	HasTyp bool
}

// Token is a token that passed every structural check of Decode. Its
// signature has NOT been verified: nothing in it may be trusted except to
// choose a verifier. The zero value is not a token.
type Token struct {
	// Header is the decoded header.
	Header Header
	// SigningInput is the text the signature covers: the first two
	// segments and the dot between them.
	SigningInput string
	// Signature is the decoded signature.
	Signature []byte
	// Payload is the decoded claims set, a JSON object.
	Payload []byte

	claims []member
}

// Claim returns the raw JSON value of the top-level claim name (matched
// exactly) and reports whether the claims set has it.
func (t *Token) Claim(name string) ([]byte, bool) {
	for _, m := range t.claims {
		if m.name == name {
			return m.raw, true
		}
	}
	return nil, false
}

// refusedHeaders are the header parameters that make a token unacceptable
// whatever their value, with the reason for each.
var refusedHeaders = map[string]string{
	"crit": "names critical extensions, none of which is supported (RFC 7515 §4.1.11)",
	"b64":  "changes what the signature covers (RFC 7797)",
	"zip":  "compresses the payload (RFC 8725 §3.6)",
	"enc":  "belongs to an encrypted token",
	"cty":  "marks a nested token (RFC 7519 §5.2)",
	"jku":  "points at a key set of the token's choosing",
	"x5u":  "points at a certificate of the token's choosing",
	"jwk":  "embeds a key of the token's choosing",
	"x5c":  "embeds a certificate chain of the token's choosing",
}

// Decode applies every structural check to raw and returns the decoded
// token. It checks neither the algorithm allow-list, the "typ" policy nor
// the signature; Parser.Parse does. Decode is safe for concurrent use.
func Decode(raw string) (*Token, error) {
	if len(raw) > MaxTokenBytes {
		return nil, ErrTooLarge
	}
	dot1, dot2 := -1, -1
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.' && dot1 < 0:
			dot1 = i
		case c == '.' && dot2 < 0:
			dot2 = i
		case c == '.':
			return nil, fmt.Errorf("%w: more than three segments", ErrMalformed)
		default:
			// Padding, white space and the standard alphabet's "+" and "/"
			// would give one token several spellings.
			return nil, fmt.Errorf("%w: byte 0x%02x outside the base64url alphabet", ErrMalformed, c)
		}
	}
	if dot2 < 0 {
		return nil, fmt.Errorf("%w: not three segments", ErrMalformed)
	}
	hseg, pseg, sseg := raw[:dot1], raw[dot1+1:dot2], raw[dot2+1:]
	if hseg == "" || pseg == "" || sseg == "" {
		return nil, fmt.Errorf("%w: empty segment", ErrMalformed)
	}
	enc := base64.RawURLEncoding.Strict()
	buf := make([]byte, enc.DecodedLen(len(hseg))+enc.DecodedLen(len(pseg))+enc.DecodedLen(len(sseg)))
	header, rest, err := decodeSegment(enc, buf, hseg)
	if err != nil {
		return nil, err
	}
	payload, rest, err := decodeSegment(enc, rest, pseg)
	if err != nil {
		return nil, err
	}
	sig, _, err := decodeSegment(enc, rest, sseg)
	if err != nil {
		return nil, err
	}
	t := &Token{SigningInput: raw[:dot2], Signature: sig, Payload: payload}
	hmembers, err := scanObject(header)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if t.Header, err = decodeHeader(hmembers); err != nil {
		return nil, err
	}
	if t.claims, err = scanObject(payload); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	if err := checkRegistered(t.claims); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeSegment decodes seg into the front of buf and returns the decoded
// bytes and the rest of buf.
func decodeSegment(enc *base64.Encoding, buf []byte, seg string) ([]byte, []byte, error) {
	// Decode neither keeps nor changes its input: no copy of the token.
	n, err := enc.Decode(buf, unsafe.Slice(unsafe.StringData(seg), len(seg)))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: segment is not canonical base64url", ErrMalformed)
	}
	return buf[:n:n], buf[n:], nil
}

func decodeHeader(members []member) (Header, error) {
	var h Header
	for _, m := range members {
		if why, refused := refusedHeaders[m.name]; refused {
			return Header{}, &memberError{err: ErrHeader, what: "parameter " + why + ":", name: m.name}
		}
		var dst *string
		switch m.name {
		case "alg":
			dst = &h.Alg
		case "kid":
			dst = &h.Kid
		case "typ":
			dst = &h.Typ
			h.HasTyp = true
		default:
			continue
		}
		if m.kind != kindString {
			return Header{}, &memberError{err: ErrHeader, what: "parameter is not a string:", name: m.name}
		}
		// A copy, not a view of the token: callers keep these strings
		// (in caches) without keeping the whole decoded token alive.
		*dst = strings.Clone(decodeString(m.raw, m.escaped))
		if *dst == "" && m.name != "typ" {
			return Header{}, &memberError{err: ErrHeader, what: "parameter is empty:", name: m.name}
		}
	}
	switch {
	case h.Alg == "":
		return Header{}, fmt.Errorf("%w: no alg", ErrHeader)
	case strings.EqualFold(h.Alg, "none"):
		return Header{}, fmt.Errorf("%w: alg none", ErrHeader)
	}
	return h, nil
}

// checkRegistered checks the JSON types of the registered claims.
func checkRegistered(members []member) error {
	for _, m := range members {
		ok := true
		switch m.name {
		case "iss", "sub", "jti":
			ok = m.kind == kindString
		case "aud":
			ok = m.kind == kindString || (m.kind == kindArray && m.strings)
		case "exp", "nbf", "iat":
			ok = m.kind == kindNumber && numericDate(m.raw)
		}
		if !ok {
			return &memberError{err: ErrClaim, what: "wrong type or range for claim", name: m.name}
		}
	}
	return nil
}
