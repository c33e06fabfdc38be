package policy

import (
	"net/netip"
	"strings"
	"testing"
)

// condCase is one request against a one-rule policy: the rule's extra YAML
// (conditions) and the caller.
type condCase struct {
	name  string
	rule  string // YAML lines added to the rule, each "key: value"
	req   Request
	allow bool
}

// admin is an authenticated caller holding role admin on GET /x.
func admin(mod func(*Request)) Request {
	r := Request{Method: "GET", Path: "/x", Authenticated: true, Roles: []string{"admin"}}
	if mod != nil {
		mod(&r)
	}
	return r
}

func runCondCases(t *testing.T, level string, cases []condCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "rules:\n  - id: r\n    path: /x\n    " + level + "\n"
			for _, l := range strings.Split(tc.rule, "\n") {
				if l != "" {
					src += "    " + l + "\n"
				}
			}
			s := mustLoad(t, src)
			d := s.Decide(tc.req)
			if d.Allow != tc.allow {
				t.Fatalf("Decide(%+v) with\n%s= %+v, want allow=%v", tc.req, src, d, tc.allow)
			}
			if !tc.allow && tc.req.Authenticated && len(tc.req.Roles) > 0 && d.Reason != ReasonDenyCondition {
				t.Errorf("Decide() reason = %s, want deny_condition", d.Reason)
			}
		})
	}
}

func TestEveryCondition(t *testing.T) {
	claims := ClaimMap{
		"groups": []any{"ops", "dev"},
		"org":    map[string]any{"tier": "gold", "seats": 12.0, "beta": true},
		"region": "eu",
		"a.b":    "dotted",
	}
	runCondCases(t, "roles: [admin]", []condCase{
		{"issuers match", "issuers: [https://idp.example]", admin(func(r *Request) { r.Issuer = "https://idp.example" }), true},
		{"issuers exact, no prefix", "issuers: [https://idp.example]", admin(func(r *Request) { r.Issuer = "https://idp.example.evil" }), false},
		{"issuers none", "issuers: [https://idp.example]", admin(nil), false},
		{"auth_methods match", "auth_methods: [apikey, jwt]", admin(func(r *Request) { r.AuthMethod = "jwt" }), true},
		{"auth_methods other", "auth_methods: [apikey]", admin(func(r *Request) { r.AuthMethod = "external" }), false},
		{"auth_methods unknown value", "auth_methods: [apikey]", admin(func(r *Request) { r.AuthMethod = "APIKEY" }), false},
		{"key_names match", "key_names: [ci]", admin(func(r *Request) { r.KeyName = "ci" }), true},
		{"key_names other", "key_names: [ci]", admin(func(r *Request) { r.KeyName = "cd" }), false},
		{"claims equals", "claims: [{path: region, equals: eu}]", admin(func(r *Request) { r.Claims = claims }), true},
		{"claims equals other", "claims: [{path: region, equals: us}]", admin(func(r *Request) { r.Claims = claims }), false},
		{"claims nested", "claims: [{path: org.tier, equals: gold}]", admin(func(r *Request) { r.Claims = claims }), true},
		{"claims number", "claims: [{path: org.seats, equals: 12}]", admin(func(r *Request) { r.Claims = claims }), true},
		{"claims number is not a string", `claims: [{path: org.seats, equals: "12"}]`, admin(func(r *Request) { r.Claims = claims }), false},
		{"claims bool", "claims: [{path: org.beta, equals: true}]", admin(func(r *Request) { r.Claims = claims }), true},
		{"claims escaped dot", `claims: [{path: 'a\.b', equals: dotted}]`, admin(func(r *Request) { r.Claims = claims }), true},
		{"claims in", "claims: [{path: region, in: [us, eu]}]", admin(func(r *Request) { r.Claims = claims }), true},
		{"claims in none", "claims: [{path: region, in: [us, ap]}]", admin(func(r *Request) { r.Claims = claims }), false},
		{"claims contains", "claims: [{path: groups, contains: ops}]", admin(func(r *Request) { r.Claims = claims }), true},
		{"claims contains not", "claims: [{path: groups, contains: admin}]", admin(func(r *Request) { r.Claims = claims }), false},
		{"claims contains needs an array", "claims: [{path: region, contains: e}]", admin(func(r *Request) { r.Claims = claims }), false},
		{"claims missing", "claims: [{path: org.missing, equals: x}]", admin(func(r *Request) { r.Claims = claims }), false},
		{"claims path through a scalar", "claims: [{path: region.x, equals: x}]", admin(func(r *Request) { r.Claims = claims }), false},
		{"claims without claims", "claims: [{path: region, equals: eu}]", admin(nil), false},
		{"scopes list is any-of", "scopes: [a, b]", admin(func(r *Request) { r.Scopes = []string{"b"} }), true},
		{"scopes any_of none", "scopes: {any_of: [a, b]}", admin(func(r *Request) { r.Scopes = []string{"c"} }), false},
		{"scopes all_of", "scopes: {all_of: [a, b]}", admin(func(r *Request) { r.Scopes = []string{"a", "b", "c"} }), true},
		{"scopes all_of missing one", "scopes: {all_of: [a, b]}", admin(func(r *Request) { r.Scopes = []string{"a"} }), false},
		{"scopes both", "scopes: {any_of: [x, y], all_of: [a]}", admin(func(r *Request) { r.Scopes = []string{"a", "y"} }), true},
		{"scopes both, any_of fails", "scopes: {any_of: [x, y], all_of: [a]}", admin(func(r *Request) { r.Scopes = []string{"a"} }), false},
		{"email_domains", "email_domains: [example.com]", admin(func(r *Request) { r.Email = "Ann@Example.COM" }), true},
		{"email_domains subdomain", "email_domains: [example.com]", admin(func(r *Request) { r.Email = "ann@sub.example.com" }), false},
		{"email_domains suffix trick", "email_domains: [example.com]", admin(func(r *Request) { r.Email = "ann@evilexample.com" }), false},
		{"email_domains last @", "email_domains: [example.com]", admin(func(r *Request) { r.Email = `"ann@example.com"@evil.test` }), false},
		{"email_domains no local part", "email_domains: [example.com]", admin(func(r *Request) { r.Email = "@example.com" }), false},
		{"source_cidrs v4", "source_cidrs: [10.0.0.0/8]", admin(func(r *Request) { r.ClientAddr = netip.MustParseAddr("10.1.2.3") }), true},
		{"source_cidrs mapped v4", "source_cidrs: [10.0.0.0/8]", admin(func(r *Request) { r.ClientAddr = netip.MustParseAddr("::ffff:10.1.2.3") }), true},
		{"source_cidrs outside", "source_cidrs: [10.0.0.0/8]", admin(func(r *Request) { r.ClientAddr = netip.MustParseAddr("192.0.2.1") }), false},
		{"source_cidrs bare address", "source_cidrs: [192.0.2.1, 2001:db8::/32]", admin(func(r *Request) { r.ClientAddr = netip.MustParseAddr("2001:db8::1") }), true},
		{"source_cidrs unknown address", "source_cidrs: [0.0.0.0/0]", admin(nil), false},
		{"hosts exact", "hosts: [api.example.com]", admin(func(r *Request) { r.Host = "api.example.com" }), true},
		{"hosts wildcard", `hosts: ["*.example.com"]`, admin(func(r *Request) { r.Host = "a.example.com" }), true},
		{"hosts wildcard is one label", `hosts: ["*.example.com"]`, admin(func(r *Request) { r.Host = "a.b.example.com" }), false},
		{"hosts wildcard not the apex", `hosts: ["*.example.com"]`, admin(func(r *Request) { r.Host = "example.com" }), false},
		{"hosts other", "hosts: [api.example.com]", admin(func(r *Request) { r.Host = "api.example.com.evil" }), false},
		{"hosts unreadable", "hosts: [api.example.com]", admin(nil), false},
		{"when true", `when: 'request.method == "GET" && "admin" in principal.roles'`, admin(nil), true},
		{"when false", `when: 'principal.issuer == "x"'`, admin(nil), false},
		{"when claims", `when: 'claims.org.tier == "gold"'`, admin(func(r *Request) { r.Claims = claims }), true},
		{"when error is false", `when: 'claims.nope == "x"'`, admin(func(r *Request) { r.Claims = claims }), false},
	})
}

// TestCombination: every listed condition must hold (AND), a list holds
// when one entry does (OR), and conditions come on top of the access level.
func TestCombination(t *testing.T) {
	both := "issuers: [i1, i2]\nauth_methods: [external]"
	runCondCases(t, "roles: [admin]", []condCase{
		{"all hold", both, admin(func(r *Request) { r.Issuer, r.AuthMethod = "i2", "external" }), true},
		{"first fails", both, admin(func(r *Request) { r.Issuer, r.AuthMethod = "i3", "external" }), false},
		{"second fails", both, admin(func(r *Request) { r.Issuer, r.AuthMethod = "i1", "jwt" }), false},
		{"conditions hold, role missing", both, Request{Method: "GET", Path: "/x", Authenticated: true, Issuer: "i1", AuthMethod: "external"}, false},
		{"anonymous", both, Request{Method: "GET", Path: "/x"}, false},
	})
	runCondCases(t, "public: true", []condCase{
		{"public with request conditions", "source_cidrs: [10.0.0.0/8]\nhosts: [a.example]", Request{Method: "GET", Path: "/x", ClientAddr: netip.MustParseAddr("10.0.0.1"), Host: "a.example"}, true},
		{"public, cidr fails", "source_cidrs: [10.0.0.0/8]\nhosts: [a.example]", Request{Method: "GET", Path: "/x", ClientAddr: netip.MustParseAddr("11.0.0.1"), Host: "a.example"}, false},
	})
	runCondCases(t, "authenticated: true", []condCase{
		{"authenticated with key_names", "key_names: [ci]\nauth_methods: [apikey]", Request{Method: "GET", Path: "/x", Authenticated: true, AuthMethod: "apikey", KeyName: "ci"}, true},
		{"authenticated, other key", "key_names: [ci]\nauth_methods: [apikey]", Request{Method: "GET", Path: "/x", Authenticated: true, AuthMethod: "apikey", KeyName: "cd"}, false},
	})
}

// TestConditionsDoNotFallThrough: the most specific rule decides; when its
// conditions fail the request is denied, never handed to a broader rule.
func TestConditionsDoNotFallThrough(t *testing.T) {
	s := mustLoad(t, `rules:
  - {id: narrow, path: /admin/**, roles: [admin], issuers: [good]}
  - {id: broad, path: /**, authenticated: true}
`)
	d := s.Decide(admin(func(r *Request) { r.Path, r.Issuer = "/admin/x", "other" }))
	if d.Allow || d.RuleID != "narrow" || d.Reason != ReasonDenyCondition {
		t.Fatalf("Decide() = %+v, want deny_condition by narrow", d)
	}
}

// TestDenyPrecedence: a matching deny wins over any allow, whatever their
// specificity; among denies the most specific one is reported.
func TestDenyPrecedence(t *testing.T) {
	s := mustLoad(t, `rules:
  - {id: public-docs, path: /docs/**, public: true}
  - {id: all, path: /**, authenticated: true}
  - {id: admin, path: /admin/**, roles: [admin]}
  - {id: admin-users, path: /admin/users, methods: [GET], roles: [admin]}
  - {id: no-outside, path: /admin/**, deny: true, source_cidrs: [0.0.0.0/0], when: '!request.client_ip.startsWith("10.")'}
  - {id: no-delete, path: /**, methods: [DELETE], deny: true}
  - {id: no-interns, path: /admin/users, deny: true, roles: [intern]}
  - {id: never-old, path: /docs/old/*, deny: true}
  - {id: ext-only-read, path: /**, deny: true, auth_methods: [external], when: 'request.method != "GET"'}
`)
	inside, outside := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name   string
		req    Request
		allow  bool
		ruleID string
	}{
		{"allow most specific", admin(func(r *Request) { r.Path, r.ClientAddr = "/admin/users", inside }), true, "admin-users"},
		{"less specific deny beats a more specific allow", admin(func(r *Request) { r.Path, r.Method, r.ClientAddr = "/admin/users", "DELETE", inside }), false, "no-delete"},
		{"less specific deny beats public", Request{Method: "DELETE", Path: "/docs/x"}, false, "no-delete"},
		{"same level deny with conditions", admin(func(r *Request) { r.Path, r.ClientAddr = "/admin/users", outside }), false, "no-outside"},
		{"deny conditions fail: allow decides", admin(func(r *Request) { r.Path, r.ClientAddr = "/admin/x", inside }), true, "admin"},
		{"deny by role", Request{Method: "GET", Path: "/admin/users", Authenticated: true, Roles: []string{"admin", "intern"}, ClientAddr: inside}, false, "no-interns"},
		{"more specific deny inside public", Request{Method: "GET", Path: "/docs/old/a"}, false, "never-old"},
		{"deny under a public rule, not matching", Request{Method: "GET", Path: "/docs/old/a/b"}, true, "public-docs"},
		{"most specific of two matching denies", admin(func(r *Request) { r.Path, r.Method, r.ClientAddr = "/admin/x", "DELETE", outside }), false, "no-outside"},
		{"deny on auth method", Request{Method: "POST", Path: "/x", Authenticated: true, AuthMethod: "external"}, false, "ext-only-read"},
		{"deny on auth method, GET passes", Request{Method: "GET", Path: "/x", Authenticated: true, AuthMethod: "external"}, true, "all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := s.Decide(tt.req)
			if d.Allow != tt.allow || d.RuleID != tt.ruleID {
				t.Fatalf("Decide(%+v) = %+v, want allow=%v by %s", tt.req, d, tt.allow, tt.ruleID)
			}
			if !d.Allow && d.Reason != ReasonDenyRule {
				t.Errorf("reason = %s, want deny_rule", d.Reason)
			}
		})
	}
	// File order does not matter.
	rev := mustLoad(t, `rules:
  - {id: no-delete, path: /**, methods: [DELETE], deny: true}
  - {id: admin-users, path: /admin/users, methods: [GET], roles: [admin]}
`)
	if d := rev.Decide(admin(func(r *Request) { r.Path, r.Method = "/admin/users", "DELETE" })); d.Allow {
		t.Errorf("reversed file: Decide() = %+v, want deny", d)
	}
}

// TestDenyWhenErrorIsFailClosed: a `when` that cannot be evaluated counts
// as true in a deny rule, so an error never opens access.
func TestDenyWhenErrorIsFailClosed(t *testing.T) {
	s := mustLoad(t, `rules:
  - {id: all, path: /**, authenticated: true}
  - {id: not-acme, path: /**, deny: true, when: 'claims.org != "acme"'}
`)
	d := s.Decide(Request{Method: "GET", Path: "/x", Authenticated: true, Claims: ClaimMap{}})
	if d.Allow || d.RuleID != "not-acme" {
		t.Fatalf("Decide() without the claim = %+v, want deny by not-acme", d)
	}
	d = s.Decide(Request{Method: "GET", Path: "/x", Authenticated: true, Claims: ClaimMap{"org": "acme"}})
	if !d.Allow {
		t.Fatalf("Decide() with org acme = %+v, want allow", d)
	}
}

func TestConditionCompileErrors(t *testing.T) {
	for _, tt := range []struct {
		rule, want string
	}{
		{"roles: [admin]\n    auth_methods: [password]", `"password" must be one of jwt, apikey, external, session`},
		{"roles: [admin]\n    issuers: []", "issuers: empty list"},
		{"roles: [admin]\n    issuers: [a, a]", `duplicate "a"`},
		{"public: true\n    issuers: [a]", "public: true with an identity condition"},
		{"roles: [admin]\n    claims: [{path: a}]", "exactly one of equals, in, contains"},
		{"roles: [admin]\n    claims: [{path: a, equals: x, in: [y]}]", "exactly one of equals, in, contains"},
		{"roles: [admin]\n    claims: [{path: 'a..b', equals: x}]", "empty path segment"},
		{"roles: [admin]\n    claims: [{path: a, equals: [x]}]", "must be a string, a number or true/false"},
		{"roles: [admin]\n    email_domains: [Example.com]", "lower-case domain"},
		{"roles: [admin]\n    source_cidrs: [10.0.0.0/33]", "not an address or CIDR"},
		{"roles: [admin]\n    hosts: [API.example.com]", "lower-case"},
		{"roles: [admin]\n    hosts: [\"*.com\"]", "at least two labels"},
		{"roles: [admin]\n    hosts: [\"a.example.com:8080\"]", "without port"},
		{"roles: [admin]\n    scopes: {one_of: [a]}", `unknown key "one_of"`},
		{"roles: [admin]\n    when: 'request.method'", "must be a bool"},
		{"roles: [admin]\n    when: 'nope == 1'", "undeclared reference"},
		{"roles: [admin]\n    when: '['", "when:"},
		{"roles: [admin]\n    when: 'principal.roles.all(a, principal.roles.all(b, principal.roles.all(c, a + b + c != \"\")))'", "above the limit"},
		{"deny: true\n    public: true", "takes no access level"},
		{"deny: false\n    public: true", "deny: false is not a rule"},
		{"deny: true\n    rate_limit: {per: rule, every: 1s, burst: 1}", "rate_limit on a deny rule"},
		{"roles: [admin]\n    rate_limit: {per: rule, every: 0s, burst: 1}", "every must be a positive duration"},
		{"roles: [admin]\n    rate_limit: {per: rule, every: 1s, burst: 0}", "burst must be at least 1"},
		{"roles: [admin]\n    rate_limit: {per: rule, every: 1s}", "rate_limit.burst is required"},
		{"roles: [admin]\n    rate_limit: {per: ip, every: 1s, burst: 1}", "must be subject, key, client_ip or rule"},
		{"roles: [admin]\n    rate_limit: {per: rule, every: soon, burst: 1}", "not a duration"},
		{"roles: [admin]\n    rate_limit: {per: rule, every: 8760h, burst: 2}", "refills in more than"},
		{"public: true\n    rate_limit: {per: subject, every: 1s, burst: 1}", "per: subject on a public rule"},
		{"roles: [admin]\n    rate_limit: {per: key, every: 1s, burst: 1}", "per: key needs auth_methods: [apikey]"},
		{"roles: [admin]\n    cors: {origins: [\"*\"], credentials: true}", `"*" cannot be used with credentials`},
		{"roles: [admin]\n    cors: {origins: [null]}", "entries must be strings"},
		{"roles: [admin]\n    cors: {origins: [\"null\"]}", "null origin"},
		{"roles: [admin]\n    cors: {origins: [\"https://App.example\"]}", "lower-case"},
		{"roles: [admin]\n    cors: {origins: [\"https://app.example/path\"]}", "is not an origin"},
		{"roles: [admin]\n    cors: {}", "at least one origin"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			_, err := Load("p.yaml", []byte("rules:\n  - path: /x\n    "+tt.rule+"\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load(%q) = %v, want an error containing %q", tt.rule, err, tt.want)
			}
		})
	}
}

func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"api.example.com":      "api.example.com",
		"API.Example.COM:8443": "api.example.com",
		"api.example.com.":     "api.example.com",
		"api.example.com.:80":  "api.example.com",
		"10.0.0.1:80":          "10.0.0.1",
		"[::1]:8080":           "::1",
		"[2001:DB8::1]":        "2001:db8::1",
		"":                     "",
		"::1":                  "",
		"a..b":                 "",
		".a":                   "",
		"a.example.com:":       "",
		"a.example.com:80x":    "",
		"exämple.com":          "",
		"a%2eexample.com":      "",
		"a b":                  "",
		"[::1":                 "",
		"[fe80::1%eth0]":       "",
	} {
		if got := CanonicalHost(in); got != want {
			t.Errorf("CanonicalHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDecideWithConditionsDoesNotAllocate: structured conditions keep the
// decision free of allocations; only `when` pays.
func TestDecideWithConditionsDoesNotAllocate(t *testing.T) {
	s := mustLoad(t, `rules:
  - id: r
    path: /api/**
    roles: [admin]
    issuers: [i]
    auth_methods: [external]
    claims: [{path: org.tier, equals: gold}, {path: groups, contains: ops}]
    scopes: {any_of: [a], all_of: [b]}
    email_domains: [example.com]
    source_cidrs: [10.0.0.0/8]
    hosts: ["*.example.com"]
  - {id: d, path: /api/x/**, deny: true, key_names: [bad]}
`)
	r := Request{Method: "GET", Path: "/api/y", Authenticated: true, Roles: []string{"admin"}, Issuer: "i",
		AuthMethod: "external", Claims: ClaimMap{"org": map[string]any{"tier": "gold"}, "groups": []any{"ops"}},
		Scopes: []string{"a", "b"}, Email: "a@example.com", ClientAddr: netip.MustParseAddr("10.0.0.1"), Host: "a.example.com"}
	if d := s.Decide(r); !d.Allow {
		t.Fatalf("Decide() = %+v, want allow", d)
	}
	if n := testing.AllocsPerRun(100, func() { s.Decide(r) }); n != 0 {
		t.Errorf("Decide() allocates %v times, want 0", n)
	}
}
