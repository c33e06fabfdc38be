package jose

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// maxDepth bounds the nesting of objects and arrays in a header or claims
// set. Real tokens nest two or three levels; the bound keeps a crafted
// token from costing deep recursion.
const maxDepth = 32

// kind is the JSON type of a value.
type kind uint8

const (
	kindString kind = iota + 1
	kindNumber
	kindObject
	kindArray
	kindBool
	kindNull
)

// member is one member of the top-level object: its decoded name, the
// kind of its value and the value's bytes.
type member struct {
	name string
	kind kind
	raw  []byte
	// strings reports, for an array, whether every element is a string.
	strings bool
	// escaped reports, for a string, whether it holds escapes.
	escaped bool
}

// scanner checks one JSON text in a single pass, RFC 8259 strictly: UTF-8
// only, no control characters in strings, no trailing data, bounded depth.
// It refuses objects with two members of the same name at any level, and
// at the top level also names equal under Unicode case folding, because
// encoding/json matches struct fields case-insensitively and lets the last
// duplicate win (claim smuggling: {"roles":["user"],"ROLES":["admin"]}).
type scanner struct {
	data []byte
	pos  int
	// names holds the member names of the objects being scanned, innermost
	// last; each object checks and then drops its own.
	names []string
}

// scanObject checks that data is exactly one JSON object and returns its
// members.
func scanObject(data []byte) ([]member, error) {
	s := scanner{data: data, names: make([]string, 0, smallObject)}
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != '{' {
		return nil, errNotObject
	}
	members, err := s.object(0, true)
	if err != nil {
		return nil, err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return nil, errSyntax
	}
	return members, nil
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value checks one value and returns its kind and flag: for an array,
// whether all its elements are strings; for a string, whether it holds
// escapes.
func (s *scanner) value(depth int) (k kind, flag bool, err error) {
	if s.pos >= len(s.data) {
		return 0, false, errSyntax
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		_, err = s.object(depth, false)
		return kindObject, false, err
	case c == '[':
		flag, err = s.array(depth, nil)
		return kindArray, flag, err
	case c == '"':
		flag, err = s.str()
		return kindString, flag, err
	case c == '-' || (c >= '0' && c <= '9'):
		return kindNumber, false, s.number()
	case c == 't':
		return kindBool, false, s.literal("true")
	case c == 'f':
		return kindBool, false, s.literal("false")
	case c == 'n':
		return kindNull, false, s.literal("null")
	}
	return 0, false, errSyntax
}

// object checks an object starting at s.pos. With top it returns the
// members and applies the case-folding check.
func (s *scanner) object(depth int, top bool) ([]member, error) {
	if depth++; depth > maxDepth {
		return nil, errTooDeep
	}
	s.pos++ // '{'
	var members []member
	if top {
		members = make([]member, 0, 8)
	}
	first := len(s.names)
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return members, nil
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return nil, errSyntax
		}
		start := s.pos
		escaped, err := s.str()
		if err != nil {
			return nil, err
		}
		name := decodeString(s.data[start:s.pos], escaped)
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return nil, errSyntax
		}
		s.pos++
		s.skipSpace()
		vstart := s.pos
		k, flag, err := s.value(depth)
		if err != nil {
			return nil, err
		}
		if top {
			members = append(members, member{name: name, kind: k, raw: s.data[vstart:s.pos],
				strings: k == kindArray && flag, escaped: k == kindString && flag})
		}
		s.names = append(s.names, name)
		s.skipSpace()
		if s.pos >= len(s.data) {
			return nil, errSyntax
		}
		if s.data[s.pos] == '}' {
			s.pos++
			break
		}
		if s.data[s.pos] != ',' {
			return nil, errSyntax
		}
		s.pos++
	}
	if err := checkNames(s.names[first:], top); err != nil {
		return nil, err
	}
	s.names = s.names[:first]
	return members, nil
}

// array checks an array starting at s.pos and reports whether every
// element is a string. With elems, it appends each element's bytes.
func (s *scanner) array(depth int, elems *[][]byte) (bool, error) {
	if depth++; depth > maxDepth {
		return false, errTooDeep
	}
	s.pos++ // '['
	all := true
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return true, nil
	}
	for {
		s.skipSpace()
		start := s.pos
		k, _, err := s.value(depth)
		if err != nil {
			return false, err
		}
		if elems != nil {
			*elems = append(*elems, s.data[start:s.pos])
		}
		all = all && k == kindString
		s.skipSpace()
		if s.pos >= len(s.data) {
			return false, errSyntax
		}
		if s.data[s.pos] == ']' {
			s.pos++
			return all, nil
		}
		if s.data[s.pos] != ',' {
			return false, errSyntax
		}
		s.pos++
	}
}

// str checks a string starting at s.pos (the opening quote) and reports
// whether it holds escapes.
func (s *scanner) str() (escaped bool, err error) {
	s.pos++ // '"'
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return escaped, nil
		case c == '\\':
			escaped = true
			if s.pos+1 >= len(s.data) {
				return false, errSyntax
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) {
					return false, errSyntax
				}
				for _, h := range s.data[s.pos+2 : s.pos+6] {
					if !isHex(h) {
						return false, errSyntax
					}
				}
				s.pos += 6
			default:
				return false, errSyntax
			}
		case c < 0x20:
			return false, errSyntax
		case c < utf8.RuneSelf:
			s.pos++
		default:
			// Invalid UTF-8 is refused rather than replaced: encoding/json
			// turns every bad byte into U+FFFD, so two different names
			// would decode to one.
			r, size := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && size <= 1 {
				return false, errUTF8
			}
			s.pos += size
		}
	}
	return false, errSyntax
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number checks a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	d := s.data
	if d[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(d) && d[s.pos] == '0':
		s.pos++
	case s.pos < len(d) && d[s.pos] >= '1' && d[s.pos] <= '9':
		s.digits()
	default:
		return errSyntax
	}
	if s.pos < len(d) && d[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return errSyntax
		}
	}
	if s.pos < len(d) && (d[s.pos] == 'e' || d[s.pos] == 'E') {
		s.pos++
		if s.pos < len(d) && (d[s.pos] == '+' || d[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return errSyntax
		}
	}
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return errSyntax
	}
	s.pos += len(lit)
	return nil
}

// decodeString returns the value of the JSON string q (with its quotes).
// Escaped strings are decoded by encoding/json itself, so a name is
// compared exactly as the claims decoder will see it ("\u0072oles" is
// "roles").
//
// An unescaped string is returned as a view of q, without a copy: callers
// never modify the bytes they scan, and the views live no longer than the
// Token that owns them.
func decodeString(q []byte, escaped bool) string {
	if !escaped {
		if len(q) == 2 {
			return ""
		}
		return unsafe.String(&q[1], len(q)-2)
	}
	var v string
	if json.Unmarshal(q, &v) != nil {
		// Unreachable: the scanner accepted q as a string.
		return string(q)
	}
	return v
}

// smallObject is the member count up to which names are compared pairwise;
// larger objects use a map.
const smallObject = 16

// checkNames refuses two equal names; with fold, also two names equal
// under Unicode case folding (strings.EqualFold).
func checkNames(names []string, fold bool) error {
	if len(names) < 2 {
		return nil
	}
	if len(names) <= smallObject {
		for i := 1; i < len(names); i++ {
			for j := range i {
				if names[i] == names[j] || (fold && strings.EqualFold(names[i], names[j])) {
					return dupError(names[i], names[i] != names[j])
				}
			}
		}
		return nil
	}
	seen := make(map[string]int, len(names))
	for i, n := range names {
		k := n
		if fold {
			k = foldName(n)
		}
		if j, dup := seen[k]; dup {
			return dupError(names[i], names[i] != names[j])
		}
		seen[k] = i
	}
	return nil
}

func dupError(name string, caseVariant bool) error {
	if caseVariant {
		return &memberError{err: ErrDuplicate, what: "case-variant member name", name: name}
	}
	return &memberError{err: ErrDuplicate, what: "duplicate member name", name: name}
}

// foldName maps s to a canonical form such that foldName(a) == foldName(b)
// exactly when strings.EqualFold(a, b): ASCII letters are lower-cased, and
// every other rune is replaced by the smallest rune of its simple
// case-folding orbit (so the Kelvin sign folds with "k").
func foldName(s string) string {
	ascii, upper := true, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		upper = upper || (c >= 'A' && c <= 'Z')
	}
	if ascii && !upper {
		return s
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		if m >= 'A' && m <= 'Z' {
			m += 'a' - 'A'
		}
		b = utf8.AppendRune(b, m)
	}
	return string(b)
}

// FoldName returns a canonical form of name such that FoldName(a) ==
// FoldName(b) exactly when strings.EqualFold(a, b).
func FoldName(name string) string { return foldName(name) }

// CheckObject reports whether data is exactly one JSON object, strict as
// the claims set of a token is: no duplicate member names at any level and
// no two top-level names equal under case folding. Claim paths that reach
// into nested objects (a roles claim such as "realm_access.roles") apply it
// to each object on the path.
func CheckObject(data []byte) error {
	_, err := scanObject(data)
	return err
}

// numericDate parses a NumericDate (RFC 7519 §2): a JSON number of seconds,
// which must be finite and between 0 and the end of year 9999. Larger
// values would overflow the conversion to time.Time.
func numericDate(raw []byte) bool {
	f, err := strconv.ParseFloat(string(raw), 64)
	return err == nil && f >= 0 && f <= maxNumericDate
}

// maxNumericDate is 9999-12-31T23:59:59Z in seconds.
const maxNumericDate = 253402300799
