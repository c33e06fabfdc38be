package jose

import "unicode/utf8"

// Member is one member of a JSON object that passed the strict scan: its
// decoded name and the bytes of its value, without surrounding white
// space. Both may be views of the scanned bytes: they stay valid as long
// as those bytes are not modified.
type Member struct {
	Name  string
	Value []byte
}

// ClaimsDecoder is implemented by a claims type that decodes itself from
// the members the strict scan of Decode already found, instead of through
// encoding/json, which would scan and decode the claims set a second time.
// Parser.Parse calls DecodeClaims, when implemented, where it would call
// json.Unmarshal: after the signature verified and before the claims are
// validated. The members have passed every check of Decode (no duplicate
// or case-variant names, registered claims of the right JSON types).
type ClaimsDecoder interface {
	DecodeClaims(members []Member) error
}

// members returns the top-level members of the claims set.
func (t *Token) members() []Member {
	out := make([]Member, len(t.claims))
	for i, m := range t.claims {
		out[i] = Member{Name: m.name, Value: m.raw}
	}
	return out
}

// Members checks data as CheckObject does (exactly one JSON object, no
// duplicate member names at any level, no two top-level names equal under
// case folding) and returns its top-level members in order. A name with
// escapes is decoded; the values are left as JSON. Members is the strict
// replacement for json.Unmarshal into a map[string]json.RawMessage, and
// gives the same names and values for every object it accepts.
func Members(data []byte) ([]Member, error) {
	ms, err := scanObject(data)
	if err != nil {
		return nil, err
	}
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{Name: m.name, Value: m.raw}
	}
	return out, nil
}

// Elements checks that data is exactly one JSON array, as strictly as
// Members checks an object (UTF-8 only, no duplicate names in nested
// objects, bounded depth, no trailing data), and returns the bytes of its
// elements in order, without surrounding white space.
func Elements(data []byte) ([][]byte, error) {
	s := scanner{data: data}
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != '[' {
		return nil, errSyntax
	}
	out := [][]byte{}
	if _, err := s.array(0, &out); err != nil {
		return nil, err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return nil, errSyntax
	}
	return out, nil
}

// PlainString returns the value of the JSON string q (with its quotes)
// when it needs no decoding: no escapes, no control characters, valid
// UTF-8. It reports false for anything else (another JSON type, or a
// string to decode with encoding/json). The value is a copy.
func PlainString(q []byte) (string, bool) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return "", false
	}
	body := q[1 : len(q)-1]
	ascii := true
	for _, c := range body {
		switch {
		case c == '"' || c == '\\' || c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(body) {
		return "", false
	}
	return string(body), true
}
