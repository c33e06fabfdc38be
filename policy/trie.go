package policy

import (
	"bytes"
	"slices"
)

// method-specific rules first, so a method list beats no method list.
type node struct {
	lit   map[string]*node
	star  *node
	exact []*crule // rules whose pattern ends here
	rest  []*crule // rules whose pattern ends with "**" here
}

func (n *node) insert(r *crule) {
	for _, s := range r.pat.segs {
		switch s.kind {
		case segDStar:
			n.rest = insertOrdered(n.rest, r)
			return
		case segStar:
			if n.star == nil {
				n.star = &node{}
			}
			n = n.star
		default:
			if n.lit == nil {
				n.lit = map[string]*node{}
			}
			c := n.lit[s.key]
			if c == nil {
				c = &node{}
				n.lit[s.key] = c
			}
			n = c
		}
	}
	n.exact = insertOrdered(n.exact, r)
}

func insertOrdered(list []*crule, r *crule) []*crule {
	list = append(list, r)
	slices.SortStableFunc(list, func(a, b *crule) int {
		am, bm := len(a.Methods) > 0, len(b.Methods) > 0
		switch {
		case am == bm:
			return a.index - b.index
		case am:
			return -1
		}
		return 1
	})
	return list
}

// pick returns the first rule of list that takes method and, when req is
// not nil (the deny trie), whose conditions req satisfies.
func pick(list []*crule, method string, req *Request) *crule {
	for _, r := range list {
		if r.allowsMethod(method) && (req == nil || r.cond.failing(req, true) == "") {
			return r
		}
	}
	return nil
}

// lookup walks the trie depth first: literal child, then "*", then "**",
// and returns the first rule pick accepts, so the most specific one.
// rest is the folded path after the leading slash, without trailing slash.
// A trie node sits at one depth, so each node is visited at most once per
// lookup: backtracking is bounded by the size of the trie, not the path.
func (n *node) lookup(rest []byte, method string, req *Request) *crule {
	if len(rest) == 0 {
		if r := pick(n.exact, method, req); r != nil {
			return r
		}
		return pick(n.rest, method, req)
	}
	seg, tail := rest, rest[len(rest):]
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		seg, tail = rest[:i], rest[i+1:]
	}
	if n.lit != nil {
		if c := n.lit[string(seg)]; c != nil {
			if r := c.lookup(tail, method, req); r != nil {
				return r
			}
		}
	}
	if n.star != nil && len(seg) > 0 {
		if r := n.star.lookup(tail, method, req); r != nil {
			return r
		}
	}
	return pick(n.rest, method, req)
}
