package jose

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Options state every constraint of a Parser. They are read once by
// NewParser.
type Options struct {
	// Algorithms is the allow-list of "alg" values. "none" and names
	// golang-jwt does not implement never match.
	Algorithms []string
	// Type is the "typ" rule; the zero value is TypeJWT.
	Type TypePolicy
	// Claims, if non-nil, is a value of the claims type Parse decodes
	// into. Its JSON field names are then read by their exact names only:
	// a top-level claim whose name differs from one of them only in case
	// ("ROLES" for "roles") is refused, because encoding/json would decode
	// it into the field.
	Claims any
	// Validation are the golang-jwt options the claims are validated with
	// after the signature: WithIssuer, WithAudience,
	// WithExpirationRequired, WithIssuedAt, WithLeeway, WithTimeFunc.
	Validation []jwt.ParserOption
}

// Parser verifies tokens against one fixed set of constraints. It is
// immutable after NewParser and safe for concurrent use.
type Parser struct {
	methods   map[string]jwt.SigningMethod
	typ       TypePolicy
	validator *jwt.Validator
	exact     map[string]bool // the claims type's field names
	folded    map[string]bool // the same, folded
}

// NewParser returns a parser with the constraints of o.
func NewParser(o Options) *Parser {
	p := &Parser{
		methods:   make(map[string]jwt.SigningMethod, len(o.Algorithms)),
		typ:       o.Type,
		validator: jwt.NewValidator(o.Validation...),
	}
	for _, alg := range o.Algorithms {
		if m := jwt.GetSigningMethod(alg); m != nil && m != jwt.SigningMethodNone {
			p.methods[alg] = m
		}
	}
	if o.Claims != nil {
		p.exact, p.folded = map[string]bool{}, map[string]bool{}
		for _, n := range jsonFieldNames(reflect.TypeOf(o.Claims)) {
			p.exact[n] = true
			p.folded[foldName(n)] = true
		}
	}
	return p
}

// KeyFunc returns the key that verifies a token with the given header. It
// runs only after the structural, algorithm and type checks passed.
type KeyFunc func(Header) (any, error)

// Parse verifies raw and decodes its claims into claims, in this order:
// the structural checks of Decode, the algorithm allow-list, the "typ"
// rule, exact claim names, the key, the signature (by golang-jwt), the
// claims decoding (ClaimsDecoder when claims implements it, else
// encoding/json), and the claims validation (by golang-jwt). It returns
// the decoded token. Errors wrap one of this package's errors, or the
// KeyFunc's error.
func (p *Parser) Parse(raw string, claims jwt.Claims, key KeyFunc) (*Token, error) {
	t, err := Decode(raw)
	if err != nil {
		return nil, err
	}
	if err := p.ParseDecoded(t, claims, key); err != nil {
		return nil, err
	}
	return t, nil
}

// ParseDecoded is Parse for a token Decode already returned, so that a
// caller that had to decode it (to read its unverified "iss") does not
// decode it twice. It applies every check of Parse after Decode's own.
func (p *Parser) ParseDecoded(t *Token, claims jwt.Claims, key KeyFunc) error {
	method, ok := p.methods[t.Header.Alg]
	if !ok {
		// Only listed algorithms: this rules out "none" and algorithm
		// confusion (an HMAC keyed with a public key).
		return &memberError{err: ErrAlgorithm, what: "alg", name: t.Header.Alg}
	}
	if !p.typ.allows(t.Header.Typ, t.Header.HasTyp) {
		// Explicit typing (RFC 8725 §3.11): a JWT minted for another
		// purpose must not pass as this one.
		return &memberError{err: ErrType, what: "typ", name: t.Header.Typ}
	}
	if p.exact != nil {
		for _, m := range t.claims {
			if !p.exact[m.name] && p.folded[foldName(m.name)] {
				return &memberError{err: ErrDuplicate, what: "case-variant of a known claim", name: m.name}
			}
		}
	}
	k, err := key(t.Header)
	if err != nil {
		return fmt.Errorf("jose: key: %w", err)
	}
	if err := method.Verify(t.SigningInput, t.Signature, k); err != nil {
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	var err2 error
	if d, ok := claims.(ClaimsDecoder); ok {
		err2 = d.DecodeClaims(t.members())
	} else {
		err2 = json.Unmarshal(t.Payload, claims)
	}
	if err2 != nil {
		return fmt.Errorf("%w: %w", ErrClaims, err2)
	}
	if err := p.validator.Validate(claims); err != nil {
		return fmt.Errorf("%w: %w", ErrClaims, err)
	}
	return nil
}

// jsonFieldNames returns the top-level JSON member names encoding/json
// decodes into values of type t, following embedded structs.
func jsonFieldNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case tag == "-":
			continue
		case f.Anonymous && name == "":
			names = append(names, jsonFieldNames(f.Type)...)
			continue
		case !f.IsExported():
			continue
		case name == "":
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}
