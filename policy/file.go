package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalidPolicy is wrapped by every *Error returned by Parse, Compile and
// Load, so callers can test for a rejected policy with errors.Is.
var ErrInvalidPolicy = errors.New("policy: invalid policy")

// Error is one problem found in a policy file. Parse, Compile and Load return
// every problem at once, joined with errors.Join. The zero value is not
// useful; Error values are created by this package and are immutable.
type Error struct {
	File  string // file name as passed to Parse
	Line  int    // 1-based line, 0 when unknown
	Where string // e.g. `rule 3 (GET /admin/**)` or `test "admin can list"`; may be empty
	Msg   string // lower-case description
}

// Error formats e as `policy.yaml:12: rule 3 (GET /admin/**): unknown key "role"`.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Where != "" {
		b.WriteString(e.Where)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrInvalidPolicy.
func (e *Error) Unwrap() error { return ErrInvalidPolicy }

// File is a policy file that has been decoded strictly but not yet
// validated; pass it to Compile. Obtain one from Parse: the zero value has
// no rules and does not compile. A File is not modified by Compile and may be
// read concurrently.
type File struct {
	name            string
	hash            string
	roles           []string
	rolesDeclared   bool
	rolesLine       int
	caseInsensitive bool
	cors            *corsSpec
	rules           []ruleSpec
	tests           []testSpec
}

// Name returns the file name given to Parse.
func (f *File) Name() string { return f.name }

type ruleSpec struct {
	index         int // 1-based
	line          int
	keyLines      map[string]int
	id            string
	path          string
	methods       []string
	roles         []string
	allRoles      []string
	public        *bool
	authenticated *bool
	deny          *bool
	shadow        bool
	onUnauth      string

	issuers      []string
	authMethods  []string
	keyNames     []string
	claims       []claimSpec
	anyScopes    []string
	allScopes    []string
	emailDomains []string
	sourceCIDRs  []string
	hosts        []string
	when         *string
	rateLimit    *rateLimitSpec
	cors         *corsSpec
}

// claimSpec is one entry of a rule's claims list, as written.
type claimSpec struct {
	line   int
	path   string
	op     claimOp
	values []any
}

// rateLimitSpec is a rule's rate_limit block, as written.
type rateLimitSpec struct {
	line  int
	per   string
	every time.Duration
	burst int
}

// corsSpec is a cors block, as written.
type corsSpec struct {
	line int
	c    CORS
}

// lineOf returns the line of key in the rule, or the rule's line.
func (r *ruleSpec) lineOf(key string) int {
	if l, ok := r.keyLines[key]; ok {
		return l
	}
	return r.line
}

// label returns `rule 3 (GET,POST /admin/**)`.
func (r *ruleSpec) label() string {
	if len(r.methods) > 0 {
		return fmt.Sprintf("rule %d (%s %s)", r.index, strings.Join(r.methods, ","), r.path)
	}
	return fmt.Sprintf("rule %d (%s)", r.index, r.path)
}

type testSpec struct {
	index     int
	line      int
	keyLines  map[string]int
	name      string
	method    string
	path      string
	roles     []string
	anonymous bool
	expect    string
	rule      string

	subject    string
	issuer     string
	authMethod string
	keyName    string
	claims     map[string]any
	scopes     []string
	email      string
	clientIP   string
	host       string
}

func (t *testSpec) lineOf(key string) int {
	if l, ok := t.keyLines[key]; ok {
		return l
	}
	return t.line
}

func (t *testSpec) label() string {
	if t.name != "" {
		return fmt.Sprintf("test %q", t.name)
	}
	return fmt.Sprintf("test %d", t.index)
}

// Parse decodes a policy file strictly: unknown or duplicate keys, values of
// the wrong type, several YAML documents and an empty file are errors. All
// problems are reported at once as *Error values joined with errors.Join.
// filename is only used in messages. Parse is safe for concurrent use.
func Parse(filename string, data []byte) (*File, error) {
	sum := sha256.Sum256(data)
	f := &File{name: filename, hash: hex.EncodeToString(sum[:])}
	p := &parser{file: filename}
	if len(bytes.TrimSpace(data)) == 0 {
		// An empty file decodes to nothing; treating it as "no rules" would
		// make a truncated ConfigMap deny or, worse, be mistaken for valid.
		return nil, p.add(0, "", "empty policy file")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, p.add(0, "", "empty policy file")
		}
		line, msg := yamlErrorLine(err.Error())
		return nil, p.add(line, "", "invalid yaml: "+msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, p.add(extra.Line, "", "more than one yaml document")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, p.add(doc.Line, "", "empty policy file")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, p.add(root.Line, "", "top level must be a mapping")
	}
	p.mapping(root, "", func(key string, v *yaml.Node) bool {
		switch key {
		case "roles":
			f.roles = p.strings(v, "", key)
			f.rolesDeclared = true
			f.rolesLine = v.Line
		case "case_insensitive":
			f.caseInsensitive = p.boolean(v, "", key)
		case "cors":
			f.cors = p.cors(v, "cors")
		case "rules":
			for i, n := range p.seq(v, "", key) {
				f.rules = append(f.rules, p.rule(i+1, n))
			}
		case "tests":
			for i, n := range p.seq(v, "", key) {
				f.tests = append(f.tests, p.test(i+1, n))
			}
		default:
			return false
		}
		return true
	})
	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	return f, nil
}

type parser struct {
	file string
	errs []error
}

func (p *parser) add(line int, where, msg string) error {
	e := &Error{File: p.file, Line: line, Where: where, Msg: msg}
	p.errs = append(p.errs, e)
	return e
}

// mapping calls fn for each key of n; fn reports whether it knows the key.
func (p *parser) mapping(n *yaml.Node, where string, fn func(key string, v *yaml.Node) bool) {
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, where, "must be a mapping")
		return
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.add(k.Line, where, "keys must be strings")
			continue
		}
		if seen[k.Value] {
			// The last duplicate would silently win in a lenient decoder.
			p.add(k.Line, where, fmt.Sprintf("duplicate key %q", k.Value))
			continue
		}
		seen[k.Value] = true
		if !fn(k.Value, v) {
			// Strict decoding: "role:" for "roles:" must not become a rule
			// with no roles.
			p.add(k.Line, where, fmt.Sprintf("unknown key %q", k.Value))
		}
	}
}

func (p *parser) seq(n *yaml.Node, where, key string) []*yaml.Node {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, where, key+" must be a list")
		return nil
	}
	return n.Content
}

func (p *parser) str(n *yaml.Node, where, key string) string {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.add(n.Line, where, fmt.Sprintf("%s must be a string", key))
		return ""
	}
	return n.Value
}

func (p *parser) boolean(n *yaml.Node, where, key string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		// yaml.v3 reads "yes" as a string; only true and false are accepted.
		p.add(n.Line, where, key+" must be true or false")
		return false
	}
	return b
}

func (p *parser) strings(n *yaml.Node, where, key string) []string {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return []string{}
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, where, key+" must be a list of strings")
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode || c.ShortTag() != "!!str" {
			p.add(c.Line, where, key+" entries must be strings")
			continue
		}
		out = append(out, c.Value)
	}
	return out
}

// peek returns the scalar value of key in mapping n, for labels.
func peek(n *yaml.Node, key string) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

func peekList(n *yaml.Node, key string) []string {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.SequenceNode {
			var out []string
			for _, c := range n.Content[i+1].Content {
				out = append(out, c.Value)
			}
			return out
		}
	}
	return nil
}

func (p *parser) rule(index int, n *yaml.Node) ruleSpec {
	r := ruleSpec{index: index, line: n.Line, keyLines: map[string]int{}}
	r.path, r.methods = peek(n, "path"), peekList(n, "methods")
	where := r.label()
	r.methods = nil
	p.mapping(n, where, func(key string, v *yaml.Node) bool {
		r.keyLines[key] = v.Line
		switch key {
		case "id":
			r.id = p.str(v, where, key)
		case "path":
			r.path = p.str(v, where, key)
		case "methods":
			r.methods = p.strings(v, where, key)
		case "roles":
			r.roles = p.strings(v, where, key)
		case "all_roles":
			r.allRoles = p.strings(v, where, key)
		case "public":
			b := p.boolean(v, where, key)
			r.public = &b
		case "authenticated":
			b := p.boolean(v, where, key)
			r.authenticated = &b
		case "shadow":
			r.shadow = p.boolean(v, where, key)
		case "on_unauthenticated":
			r.onUnauth = p.str(v, where, key)
		case "deny":
			b := p.boolean(v, where, key)
			r.deny = &b
		case "issuers":
			r.issuers = p.strings(v, where, key)
		case "auth_methods":
			r.authMethods = p.strings(v, where, key)
		case "key_names":
			r.keyNames = p.strings(v, where, key)
		case "claims":
			for _, n := range p.seq(v, where, key) {
				r.claims = append(r.claims, p.claim(n, where))
			}
		case "scopes":
			if v.Kind == yaml.MappingNode {
				p.mapping(v, where+": scopes", func(k string, sv *yaml.Node) bool {
					switch k {
					case "any_of":
						r.anyScopes = p.strings(sv, where, "scopes.any_of")
					case "all_of":
						r.allScopes = p.strings(sv, where, "scopes.all_of")
					default:
						return false
					}
					return true
				})
			} else {
				r.anyScopes = p.strings(v, where, key)
			}
		case "email_domains":
			r.emailDomains = p.strings(v, where, key)
		case "source_cidrs":
			r.sourceCIDRs = p.strings(v, where, key)
		case "hosts":
			r.hosts = p.strings(v, where, key)
		case "when":
			w := p.str(v, where, key)
			r.when = &w
		case "rate_limit":
			r.rateLimit = p.rateLimit(v, where)
		case "cors":
			r.cors = p.cors(v, where+": cors")
		default:
			delete(r.keyLines, key)
			return false
		}
		return true
	})
	return r
}

// claim parses one claims entry: {path: P, equals: V | in: [V...] |
// contains: V}, values being strings, numbers or booleans.
func (p *parser) claim(n *yaml.Node, where string) claimSpec {
	c := claimSpec{line: n.Line}
	ops := 0
	p.mapping(n, where+": claims", func(key string, v *yaml.Node) bool {
		switch key {
		case "path":
			c.path = p.str(v, where, "claims.path")
		case "equals", "contains":
			ops++
			c.op = claimEquals
			if key == "contains" {
				c.op = claimContains
			}
			if val, ok := p.scalar(v, where, "claims."+key); ok {
				c.values = []any{val}
			}
		case "in":
			ops++
			c.op = claimIn
			for _, e := range p.seq(v, where, "claims.in") {
				if val, ok := p.scalar(e, where, "claims.in"); ok {
					c.values = append(c.values, val)
				}
			}
		default:
			return false
		}
		return true
	})
	if ops != 1 {
		p.add(n.Line, where, "claims: each entry needs a path and exactly one of equals, in, contains")
	}
	return c
}

// scalar decodes a string, number or boolean; numbers become float64.
func (p *parser) scalar(n *yaml.Node, where, key string) (any, bool) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str":
			return n.Value, true
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b, true
			}
		case "!!int", "!!float":
			var f float64
			if n.Decode(&f) == nil {
				return f, true
			}
		}
	}
	p.add(n.Line, where, key+" must be a string, a number or true/false")
	return nil, false
}

// value decodes any YAML value as JSON would: maps, lists and scalars.
func (p *parser) value(n *yaml.Node, where, key string) any {
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		p.mapping(n, where, func(k string, v *yaml.Node) bool {
			m[k] = p.value(v, where, key)
			return true
		})
		return m
	case yaml.SequenceNode:
		out := []any{}
		for _, c := range n.Content {
			out = append(out, p.value(c, where, key))
		}
		return out
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	v, _ := p.scalar(n, where, key)
	return v
}

func (p *parser) duration(n *yaml.Node, where, key string) time.Duration {
	s := p.str(n, where, key)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.add(n.Line, where, fmt.Sprintf("%s: %q is not a duration such as 1s or 5m", key, s))
	}
	return d
}

func (p *parser) rateLimit(n *yaml.Node, where string) *rateLimitSpec {
	rl := &rateLimitSpec{line: n.Line}
	seen := map[string]bool{}
	p.mapping(n, where+": rate_limit", func(key string, v *yaml.Node) bool {
		seen[key] = true
		switch key {
		case "per":
			rl.per = p.str(v, where, "rate_limit.per")
		case "every":
			rl.every = p.duration(v, where, "rate_limit.every")
		case "burst":
			var b int
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&b) != nil {
				p.add(v.Line, where, "rate_limit.burst must be a whole number")
			}
			rl.burst = b
		default:
			return false
		}
		return true
	})
	for _, k := range []string{"per", "every", "burst"} {
		if !seen[k] {
			// A limit with a missing field must not default to "off".
			p.add(n.Line, where, "rate_limit."+k+" is required")
		}
	}
	return rl
}

func (p *parser) cors(n *yaml.Node, where string) *corsSpec {
	cs := &corsSpec{line: n.Line}
	p.mapping(n, where, func(key string, v *yaml.Node) bool {
		switch key {
		case "origins":
			cs.c.Origins = p.strings(v, where, key)
		case "methods":
			cs.c.Methods = p.strings(v, where, key)
		case "headers":
			cs.c.Headers = p.strings(v, where, key)
		case "expose_headers":
			cs.c.ExposeHeaders = p.strings(v, where, key)
		case "credentials":
			cs.c.Credentials = p.boolean(v, where, key)
		case "max_age":
			cs.c.MaxAge = p.duration(v, where, key)
		case "forward_preflight":
			cs.c.ForwardPreflight = p.boolean(v, where, key)
		default:
			return false
		}
		return true
	})
	return cs
}

func (p *parser) test(index int, n *yaml.Node) testSpec {
	t := testSpec{index: index, line: n.Line, keyLines: map[string]int{}}
	t.name = peek(n, "name")
	where := t.label()
	p.mapping(n, where, func(key string, v *yaml.Node) bool {
		t.keyLines[key] = v.Line
		switch key {
		case "name":
			t.name = p.str(v, where, key)
		case "method":
			t.method = p.str(v, where, key)
		case "path":
			t.path = p.str(v, where, key)
		case "roles":
			t.roles = p.strings(v, where, key)
		case "anonymous":
			t.anonymous = p.boolean(v, where, key)
		case "expect":
			t.expect = p.str(v, where, key)
		case "rule":
			t.rule = p.str(v, where, key)
		case "subject":
			t.subject = p.str(v, where, key)
		case "issuer":
			t.issuer = p.str(v, where, key)
		case "auth_method":
			t.authMethod = p.str(v, where, key)
		case "key_name":
			t.keyName = p.str(v, where, key)
		case "claims":
			if m, ok := p.value(v, where, key).(map[string]any); ok {
				t.claims = m
			} else {
				p.add(v.Line, where, "claims must be a mapping")
			}
		case "scopes":
			t.scopes = p.strings(v, where, key)
		case "email":
			t.email = p.str(v, where, key)
		case "client_ip":
			t.clientIP = p.str(v, where, key)
		case "host":
			t.host = p.str(v, where, key)
		default:
			delete(t.keyLines, key)
			return false
		}
		return true
	})
	return t
}

// yamlErrorLine splits "yaml: line 3: msg" into 3 and "msg", so syntax
// errors are reported as file:line like every other error.
func yamlErrorLine(msg string) (int, string) {
	msg = strings.TrimPrefix(msg, "yaml: ")
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, msg
	}
	num, tail, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, msg
	}
	return n, tail
}
