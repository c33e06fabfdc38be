package policy

import (
	"errors"
	"strings"
)

type segKind uint8

const (
	segLit segKind = iota
	segStar
	segDStar
)

type segment struct {
	kind segKind
	lit  string // canonical literal, for display
	key  string // folded literal, for matching
}

// pattern is a parsed rule path.
type pattern struct {
	canon string // canonical display form, without trailing slash
	key   string // folded form; equal keys mean equal patterns
	segs  []segment
}

// parsePattern parses a rule path. Literal segments go through the same
// canonicalization as request paths, so both compare in one form.
func parsePattern(raw string, ci bool) (pattern, error) {
	if raw == "" {
		return pattern{}, errors.New("path is required")
	}
	if raw[0] != '/' {
		return pattern{}, errors.New("path must start with /")
	}
	if strings.Contains(raw, "//") {
		return pattern{}, errors.New("path has an empty segment (//)")
	}
	body := raw[1:]
	if strings.HasSuffix(body, "/") {
		// A trailing slash is ignored for matching.
		body = body[:len(body)-1]
	}
	var p pattern
	if body != "" {
		parts := strings.Split(body, "/")
		for i, s := range parts {
			switch {
			case s == "":
				return pattern{}, errors.New("path has an empty segment (//)")
			case s == "**":
				if i != len(parts)-1 {
					return pattern{}, errors.New(`"**" is only allowed as the last segment`)
				}
				p.segs = append(p.segs, segment{kind: segDStar, lit: s, key: s})
			case s == "*":
				p.segs = append(p.segs, segment{kind: segStar, lit: s, key: s})
			case strings.Contains(s, "*"):
				// Partial wildcards would need regex-like semantics.
				return pattern{}, errors.New(`partial wildcard: "*" must be a whole segment`)
			default:
				c, err := Canonicalize("/" + s)
				if err != nil {
					return pattern{}, err
				}
				c = c[1:]
				p.segs = append(p.segs, segment{kind: segLit, lit: c, key: foldString(c, ci)})
			}
		}
	}
	var canon, key strings.Builder
	for _, s := range p.segs {
		canon.WriteByte('/')
		canon.WriteString(s.lit)
		key.WriteByte('/')
		key.WriteString(s.key)
	}
	p.canon, p.key = canon.String(), key.String()
	if p.canon == "" {
		p.canon, p.key = "/", "/"
	}
	return p, nil
}

// matches reports whether the folded request segments keys match p.
func (p *pattern) matches(keys []string) bool { return matchSegs(p.segs, keys) }

func matchSegs(segs []segment, keys []string) bool {
	for i, s := range segs {
		switch s.kind {
		case segDStar:
			return true
		case segStar:
			if i >= len(keys) || keys[i] == "" {
				return false
			}
		default:
			if i >= len(keys) || keys[i] != s.key {
				return false
			}
		}
	}
	return len(keys) == len(segs)
}

// pathKeys splits a canonical path into folded segments; a trailing slash is
// ignored.
func pathKeys(canon string, ci bool) []string {
	body := strings.TrimPrefix(canon, "/")
	body = strings.TrimSuffix(body, "/")
	if body == "" {
		return nil
	}
	parts := strings.Split(body, "/")
	for i := range parts {
		parts[i] = foldString(parts[i], ci)
	}
	return parts
}

// overlaps reports whether some path matches both a and b.
func overlaps(a, b []segment) bool {
	for {
		switch {
		case len(a) > 0 && a[0].kind == segDStar, len(b) > 0 && b[0].kind == segDStar:
			return true
		case len(a) == 0 || len(b) == 0:
			return len(a) == len(b)
		case a[0].kind == segLit && b[0].kind == segLit && a[0].key != b[0].key:
			return false
		}
		a, b = a[1:], b[1:]
	}
}

// within reports whether every path matching a also matches b.
func within(a, b []segment) bool {
	for {
		switch {
		case len(b) > 0 && b[0].kind == segDStar:
			return true
		case len(a) == 0 || len(b) == 0:
			return len(a) == len(b)
		case a[0].kind == segDStar:
			return false
		case b[0].kind == segStar:
		case a[0].kind != segLit || a[0].key != b[0].key:
			return false
		}
		a, b = a[1:], b[1:]
	}
}
