package policy

import (
	"strings"
	"testing"
)

// FuzzPolicyLoad feeds arbitrary policy files to Load. Whatever the input,
// Load must not panic, and a policy that compiles must be deterministic and
// must deny what no rule can match: a lower-case method and a path that
// was never written in the file.
func FuzzPolicyLoad(f *testing.F) {
	for _, seed := range []string{
		"rules:\n  - path: /a/**\n    public: true\n",
		"roles: [a]\nrules:\n  - path: /x/*\n    methods: [GET]\n    roles: [a]\n",
		"rules:\n  - path: /**\n    authenticated: true\n  - path: /admin/**\n    all_roles: [a, b]\n",
		"case_insensitive: true\nrules:\n  - path: /A\n    public: true\n",
		"rules:\n  - path: /p\n    public: true\ntests:\n  - name: t\n    method: GET\n    path: /p\n    anonymous: true\n    expect: allow\n",
		"rules: [{path: /a, public: true}, {path: /a, public: true}]",
		"", "rules:", "- a", "rules:\n  - path: /a/**/b\n    public: true\n",
		"rules:\n  - {path: /**, public: true}\n  - {path: /admin/**, deny: true, methods: [GET]}\n",
		"rules:\n  - path: /x\n    authenticated: true\n    issuers: [i]\n    claims: [{path: a.b, in: [1, x, true]}]\n    rate_limit: {per: subject, every: 1s, burst: 2}\n",
		"cors: {origins: [\"https://a.example\"]}\nrules:\n  - {path: /a, public: true, hosts: [\"*.example.com\"], source_cidrs: [10.0.0.0/8]}\n",
		"rules:\n  - {path: /a, authenticated: true, when: 'principal.roles.exists(r, r == \"a\")'}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s1, err := Load("policy.yaml", []byte(text))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		s2, err := Load("policy.yaml", []byte(text))
		if err != nil || s1.Hash() != s2.Hash() || s1.Len() != s2.Len() {
			t.Fatalf("loading the same policy twice differs: %v", err)
		}
		for _, p := range []string{"/", "/a", "/admin/x", "/x/y/z", "/zz-never-written-zz"} {
			for _, roles := range [][]string{nil, {"a"}, {"a", "b"}} {
				r := Request{Method: "GET", Path: p, Authenticated: roles != nil, Roles: roles}
				if d1, d2 := s1.Decide(r), s2.Decide(r); d1.Allow != d2.Allow || d1.RuleID != d2.RuleID || d1.Reason != d2.Reason {
					t.Fatalf("Decide(%+v) = %+v then %+v", r, d1, d2)
				}
				r.Method = "get"
				if d := s1.Decide(r); d.Allow {
					t.Fatalf("lower-case method allowed: %+v", d)
				}
			}
		}
		never := Request{Method: "GET", Path: "/zz-never-written-zz/q", Authenticated: true, Roles: []string{"a", "b"}}
		if d := s1.Decide(never); d.Allow && !strings.Contains(text, "**") && !strings.Contains(text, "*") && !strings.Contains(text, "zz-never") {
			t.Fatalf("a path no rule names was allowed: %+v", d)
		}
	})
}
