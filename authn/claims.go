package authn

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/authgate/authgate/policy"
)

// MaxClaimText is the longest claim value passed on, after encoding; a
// longer one is dropped rather than cut, since a cut list is another list.
const MaxClaimText = 4096

// ClaimPaths are the token claims a verifier copies into Principal.Claims
// for the claim headers. Each is a path through nested claim objects,
// split on "." ("address.country"); a dot inside a name is written `\.`
// and a backslash `\\`. A ClaimPaths is immutable and safe for concurrent
// use; a nil *ClaimPaths copies nothing.
type ClaimPaths struct {
	paths []claimPath
}

type claimPath struct {
	name string   // the path as configured: the key in Principal.Claims
	segs []string // its segments
}

// NewClaimPaths compiles claim paths; duplicates count once. Every
// malformed path is reported.
func NewClaimPaths(paths []string) (*ClaimPaths, error) {
	c := &ClaimPaths{}
	seen := map[string]bool{}
	var errs []error
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		segs, err := SplitClaimPath(p)
		if err != nil {
			errs = append(errs, errors.New("authn: claim path "+quote(p)+": "+err.Error()))
			continue
		}
		c.paths = append(c.paths, claimPath{name: p, segs: segs})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Extract returns the text (see ClaimText) of every path lookup finds, keyed
// by the path as configured; nil when none is found. lookup returns the raw
// JSON value at a path and whether it is there; a path whose lookup fails,
// or whose value has no text form, is left out, never guessed.
func (c *ClaimPaths) Extract(lookup func(segs []string) (json.RawMessage, bool, error)) map[string]string {
	if c == nil {
		return nil
	}
	var out map[string]string
	for _, p := range c.paths {
		raw, ok, err := lookup(p.segs)
		if err != nil || !ok {
			continue
		}
		text, ok := ClaimText(raw)
		if !ok {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(c.paths))
		}
		out[p.name] = text
	}
	return out
}

// TopLevel is a lookup for Extract over the members of a flat claims
// object: only one-segment paths are found.
func TopLevel(members map[string]json.RawMessage) func([]string) (json.RawMessage, bool, error) {
	return func(segs []string) (json.RawMessage, bool, error) {
		if len(segs) != 1 {
			return nil, false, nil
		}
		v, ok := members[segs[0]]
		return v, ok, nil
	}
}

// SplitClaimPath splits a dotted claim path into its segments, with the
// policy's grammar (policy.SplitClaimPath): a literal dot inside a name is
// written `\.` and a literal backslash `\\`; an empty path or segment is
// an error.
func SplitClaimPath(p string) ([]string, error) {
	segs, err := policy.SplitClaimPath(p)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "policy: "))
	}
	return segs, nil
}

// ClaimText renders a JSON claim value as one header-safe line and reports
// whether it has one:
//   - a string is its text, a number its JSON literal, a boolean true or
//     false;
//   - an array of those is its items joined with "," (no space); an item
//     never contains a comma, so splitting on "," gives back the items;
//   - null, an object, an empty array, an array holding an object or an
//     array, and a result longer than MaxClaimText have none.
//
// Bytes that would break the line or its reading are percent-encoded as
// in RFC 3986: "%" itself, control characters (U+0000 to U+001F and
// U+007F, so no CR, LF or NUL ever reaches a header), leading and trailing
// spaces (which HTTP parsers strip), and in array items ",". Everything
// else, UTF-8 included, is passed as is; text without those bytes is
// unchanged, and percent-decoding the value (or each item) gives it back.
func ClaimText(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	var out string
	if raw[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil || len(items) == 0 {
			return "", false
		}
		var b strings.Builder
		for i, it := range items {
			s, ok := scalarText(it)
			if !ok {
				return "", false
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(encodeText(s, true))
			if b.Len() > MaxClaimText {
				return "", false
			}
		}
		out = b.String()
	} else {
		s, ok := scalarText(raw)
		if !ok {
			return "", false
		}
		out = encodeText(s, false)
	}
	if len(out) > MaxClaimText {
		return "", false
	}
	return out, true
}

// scalarText is the text of a JSON string, number or boolean.
func scalarText(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case c == 't' || c == 'f':
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return "", false
		}
		if b {
			return "true", true
		}
		return "false", true
	case c == '-' || ('0' <= c && c <= '9'):
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return "", false
		}
		return n.String(), true
	}
	return "", false
}

const hexDigits = "0123456789ABCDEF"

// encodeText percent-encodes what ClaimText says must be.
func encodeText(s string, item bool) string {
	needs := func(i int) bool {
		c := s[i]
		return c == '%' || c < 0x20 || c == 0x7f || (item && c == ',') || (c == ' ' && (i == 0 || i == len(s)-1))
	}
	first := -1
	for i := 0; i < len(s); i++ {
		if needs(i) {
			first = i
			break
		}
	}
	if first < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:first])
	for i := first; i < len(s); i++ {
		if needs(i) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[s[i]>>4])
			b.WriteByte(hexDigits[s[i]&15])
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
