package authn

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unsafe"

	"github.com/authgate/authgate/authn/jose"
	"github.com/authgate/authgate/internal/lru"
	"github.com/authgate/authgate/policy"
)

// Bearer authenticates "Authorization: Bearer" tokens. It reads the token's
// unverified "iss" claim only to pick a verifier, then trusts that
// verifier's keys and algorithms alone: a token naming issuer A can never be
// checked against issuer B's keys. It is safe for concurrent use.
type Bearer struct {
	byIssuer map[string]TokenVerifier
	only     TokenVerifier // the verifier when there is exactly one
	// chosen remembers which verifier a token's iss named, by token
	// digest, so a repeated token is not decoded twice. A token's iss
	// cannot change, so a remembered choice is never wrong; it only saves
	// the unverified peek, and the verifier still checks everything.
	chosen *lru.Cache[TokenVerifier]
}

// chosenTTL bounds how long a verifier choice is remembered.
const chosenTTL = time.Hour

// NewBearer returns a bearer authenticator over the given verifiers, one per
// issuer.
func NewBearer(vs ...TokenVerifier) (*Bearer, error) {
	b := &Bearer{byIssuer: make(map[string]TokenVerifier, len(vs))}
	for _, v := range vs {
		if _, dup := b.byIssuer[v.Issuer()]; dup {
			return nil, fmt.Errorf("authn: issuer %q configured twice", v.Issuer())
		}
		b.byIssuer[v.Issuer()] = v
	}
	if len(vs) == 1 {
		// With one issuer there is nothing to choose; the verifier checks
		// iss itself, so the unverified peek is skipped.
		b.only = vs[0]
	} else {
		b.chosen = lru.New[TokenVerifier](10000)
	}
	return b, nil
}

// Authenticate implements Authenticator.
func (b *Bearer) Authenticate(r *http.Request) (Principal, bool, error) {
	raw, present, err := BearerToken(r)
	if !present {
		return Principal{}, false, nil
	}
	if err != nil {
		return Principal{}, false, err
	}
	if len(raw) > jose.MaxTokenBytes {
		// One cap for every verifier, checked before any hashing or
		// decoding of an unverified token.
		return Principal{}, false, fmt.Errorf("%w: %w", ErrInvalidToken, jose.ErrTooLarge)
	}
	v := b.only
	var decoded *jose.Token
	if v == nil {
		var err error
		if v, decoded, err = b.choose(raw); err != nil {
			return Principal{}, false, err
		}
	}
	var p Principal
	if dv, ok := v.(DecodedVerifier); ok && decoded != nil {
		p, err = dv.VerifyDecoded(r.Context(), raw, decoded)
	} else {
		p, err = v.Verify(r.Context(), raw)
	}
	if err != nil {
		return Principal{}, false, err
	}
	return p, true, nil
}

// choose returns the verifier of the issuer raw names and, when it had to
// decode raw to find out, the decoded token (nil when the choice was
// remembered).
func (b *Bearer) choose(raw string) (TokenVerifier, *jose.Token, error) {
	// Sum256 neither keeps nor changes its input: no copy of the token.
	digest := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	now := time.Now()
	if v, res := b.chosen.Get(digest, now); res == lru.Hit {
		return v, nil, nil
	}
	iss, t, err := peekIssuer(raw)
	if err != nil {
		return nil, nil, err
	}
	v, ok := b.byIssuer[iss]
	if !ok {
		return nil, nil, fmt.Errorf("%w: unknown issuer", ErrInvalidToken)
	}
	b.chosen.Put(digest, v, now.Add(chosenTTL))
	return v, t, nil
}

// BearerToken returns the bearer token of r. present reports whether r has
// an Authorization header at all; err is set when it is not a single
// well-formed bearer credential: the scheme "Bearer" in any case, spaces,
// and one token68 (RFC 6750 §2.1: letters, digits and "-._~+/", then
// optional "="). Anything else, such as a second token, a tab or a
// non-ASCII space inside or around it, is malformed rather than trimmed, so
// the token checked is byte for byte the one an upstream would see.
func BearerToken(r *http.Request) (tok string, present bool, err error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", false, nil
	}
	if len(vals) > 1 {
		return "", true, fmt.Errorf("%w: %d Authorization headers", ErrMalformed, len(vals))
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	// RFC 7235: the scheme is case-insensitive.
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true, fmt.Errorf("%w: not a bearer credential", ErrMalformed)
	}
	tok = strings.Trim(tok, " ")
	if !isToken68(tok) {
		return "", true, fmt.Errorf("%w: empty or malformed bearer token", ErrMalformed)
	}
	return tok, true, nil
}

// isToken68 reports whether s is a non-empty token68 (RFC 7235 §2.1).
func isToken68(s string) bool {
	end := len(s)
	for end > 0 && s[end-1] == '=' {
		end--
	}
	if end == 0 {
		return false
	}
	for i := 0; i < end; i++ {
		if token68[s[i]] != '1' {
			return false
		}
	}
	return true
}

// token68 marks with '1' the bytes a token68 may hold: letters, digits and
// "-._~+/" (RFC 7235 §2.1), one entry per byte value.
const token68 = "0000000000000000000000000000000000000000000101111111111111000000" +
	"0111111111111111111111111110000101111111111111111111111111100010" +
	"0000000000000000000000000000000000000000000000000000000000000000" +
	"0000000000000000000000000000000000000000000000000000000000000000"

// peekIssuer returns the unverified "iss" of raw, after the same strict
// decoding every verifier applies, so a token with two "iss" members (or
// "iss" and "ISS") cannot be sent to one issuer's verifier while another
// reader sees the other value.
func peekIssuer(raw string) (string, *jose.Token, error) {
	t, err := jose.Decode(raw)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	var iss string
	if v, ok := t.Claim("iss"); ok {
		// Decode checked that iss is a string.
		if err := json.Unmarshal(v, &iss); err != nil {
			return "", nil, fmt.Errorf("%w: iss is not a string", ErrInvalidToken)
		}
	}
	return iss, t, nil
}

// Chain is the gateway's authenticator: a bearer token, an API key or a
// browser session cookie.
//
// A request that carries both an Authorization header and an X-API-Key is
// rejected with ErrAmbiguous, even when both are valid: two identities on
// one request have no single meaning, and picking one silently would let a
// weaker credential ride along (RFC 6750 §2 forbids more than one method).
//
// A session cookie is used only when the request carries neither: the
// credential a client chose to send wins over the one the browser attaches
// by itself, as in oauth2-proxy (a bearer token skips the cookie) and
// Pomerium. The cookie is then not consulted at all, so exactly one
// credential decides, and a page's script calling an API with a token is
// not refused for the cookie that rides along.
type Chain struct {
	// Bearer authenticates Authorization headers; nil rejects them.
	Bearer Authenticator
	// APIKey authenticates X-API-Key headers; nil rejects them.
	APIKey Authenticator
	// APIKeyHeader is the API key header name in canonical form
	// (http.CanonicalHeaderKey); empty means X-API-Key.
	APIKeyHeader string
	// Session authenticates browser session cookies; nil ignores them.
	Session Authenticator
}

// Authenticate implements Authenticator.
func (c Chain) Authenticate(r *http.Request) (Principal, bool, error) {
	keyHeader := c.APIKeyHeader
	if keyHeader == "" {
		keyHeader = "X-Api-Key"
	}
	_, hasAuth := r.Header["Authorization"]
	_, hasKey := r.Header[keyHeader]
	switch {
	case hasAuth && hasKey:
		return Principal{}, false, ErrAmbiguous
	case hasAuth:
		if c.Bearer == nil {
			return Principal{}, false, fmt.Errorf("%w: bearer tokens are not accepted", ErrInvalidToken)
		}
		return checked(c.Bearer.Authenticate(r))
	case hasKey:
		if c.APIKey == nil {
			return Principal{}, false, fmt.Errorf("%w: api keys are not accepted", ErrInvalidAPIKey)
		}
		return checked(c.APIKey.Authenticate(r))
	}
	if c.Session != nil {
		return checked(c.Session.Authenticate(r))
	}
	return Principal{}, false, nil
}

func checked(p Principal, ok bool, err error) (Principal, bool, error) {
	if err != nil || !ok {
		return p, ok, err
	}
	if p.Subject == "" || !printable(p.Subject) {
		return Principal{}, false, fmt.Errorf("%w: subject is empty or has control characters", ErrInvalidToken)
	}
	p.Roles = ForwardableRoles(p.Roles)
	return p, true, nil
}

// ForwardableRoles returns roles without those outside the role grammar
// (policy.ValidRoleName), which cannot be passed upstream unambiguously.
// Identity headers carry roles comma-separated, so a role containing a
// comma or white space would turn into several roles at the upstream
// (privilege escalation through a crafted IdP group name), control
// characters would break the header, and a name no rule can list would be
// granted upstream while the policy never sees it. Dropping a role can only
// take access away. The loaders already apply the grammar; this is the last
// check before a Principal leaves the chain. The input is not modified when
// nothing is dropped.
func ForwardableRoles(roles []string) []string {
	for i, r := range roles {
		if !forwardable(r) {
			out := append([]string(nil), roles[:i]...)
			for _, r := range roles[i+1:] {
				if forwardable(r) {
					out = append(out, r)
				}
			}
			return out
		}
	}
	return roles
}

func forwardable(r string) bool { return policy.ValidRoleName(r) }

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
