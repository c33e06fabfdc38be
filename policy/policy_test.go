package policy

import (
	"errors"
	"strings"
	"testing"
)

func mustLoad(t testing.TB, src string) *Set {
	t.Helper()
	s, err := Load("policy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Load() error:\n%v", err)
	}
	return s
}

type caseT struct {
	method string
	path   string // raw escaped path, canonicalized before Decide
	who    string // "anon", "user" (authenticated, no roles) or comma-separated roles
	allow  bool
	rule   string
	reason Reason
}

func request(t *testing.T, c caseT) Request {
	t.Helper()
	p, err := Canonicalize(c.path)
	if err != nil {
		t.Fatalf("Canonicalize(%q): %v", c.path, err)
	}
	r := Request{Method: c.method, Path: p, Authenticated: c.who != "anon"}
	if c.who != "anon" && c.who != "user" {
		r.Roles = strings.Split(c.who, ",")
	}
	return r
}

func runCases(t *testing.T, s *Set, cases []caseT) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.method+" "+c.path+" as "+c.who, func(t *testing.T) {
			r := request(t, c)
			d := s.Decide(r)
			if d.Allow != c.allow || d.RuleID != c.rule || d.Reason != c.reason {
				t.Errorf("Decide(%+v) = %+v; want allow=%v rule=%q reason=%v", r, d, c.allow, c.rule, c.reason)
			}
		})
	}
}

const mainPolicy = `
roles: [admin, user, finance, auditor, beta]
rules:
  - id: admin-area
    path: /admin/**
    methods: [GET, POST]
    roles: [admin]
  - id: reports
    path: /reports/*
    all_roles: [finance, auditor]
  - id: reports-mixed
    path: /reports/*/x
    roles: [admin, finance]
    all_roles: [auditor]
  - id: api
    path: /api/**
    authenticated: true
  - id: health
    path: /healthz
    methods: [GET]
    public: true
  - id: exact
    path: /exact
    roles: [user]
  - id: root
    path: /
    public: true
  - id: beta
    path: /beta/**
    roles: [beta]
    shadow: true
`

func TestDecide(t *testing.T) {
	s := mustLoad(t, mainPolicy)
	runCases(t, s, []caseT{
		// exact
		{"GET", "/exact", "user,viewer", true, "exact", ReasonAllowRole},
		{"GET", "/exact/", "user,viewer", true, "exact", ReasonAllowRole},
		{"GET", "/exact/x", "user", false, "", ReasonDenyNoRule},
		{"GET", "/exactly", "user", false, "", ReasonDenyNoRule},
		{"GET", "/Exact", "user", false, "", ReasonDenyNoRule},
		{"GET", "/exact", "anon", false, "exact", ReasonDenyUnauthenticated},
		{"GET", "/exact", "admin", false, "exact", ReasonDenyMissingRole},
		// root
		{"GET", "/", "anon", true, "root", ReasonAllowPublic},
		{"GET", "//", "anon", true, "root", ReasonAllowPublic},
		// ** including zero segments
		{"GET", "/admin", "admin", true, "admin-area", ReasonAllowRole},
		{"GET", "/admin/", "admin", true, "admin-area", ReasonAllowRole},
		{"GET", "/admin/x", "admin", true, "admin-area", ReasonAllowRole},
		{"POST", "/admin/x/y/z", "admin", true, "admin-area", ReasonAllowRole},
		{"GET", "/%61dmin/users", "admin", true, "admin-area", ReasonAllowRole},
		{"GET", "//admin//users", "user", false, "admin-area", ReasonDenyMissingRole},
		{"GET", "/admin/users", "anon", false, "admin-area", ReasonDenyUnauthenticated},
		{"GET", "/administrator", "admin", false, "", ReasonDenyNoRule},
		// methods
		{"DELETE", "/admin/x", "admin", false, "", ReasonDenyNoRule},
		{"get", "/admin/x", "admin", false, "", ReasonDenyNoRule},
		{"GET", "/healthz", "anon", true, "health", ReasonAllowPublic},
		{"POST", "/healthz", "anon", false, "", ReasonDenyNoRule},
		// * is exactly one segment
		{"GET", "/reports/q1", "auditor,finance", true, "reports", ReasonAllowRole},
		{"GET", "/reports/q1/", "auditor,finance", true, "reports", ReasonAllowRole},
		{"GET", "/reports/q1", "finance", false, "reports", ReasonDenyMissingRole},
		{"GET", "/reports", "auditor,finance", false, "", ReasonDenyNoRule},
		{"GET", "/reports/q1/q2", "auditor,finance", false, "", ReasonDenyNoRule},
		// roles and all_roles combined
		{"GET", "/reports/q1/x", "auditor,finance", true, "reports-mixed", ReasonAllowRole},
		{"GET", "/reports/q1/x", "admin,auditor", true, "reports-mixed", ReasonAllowRole},
		{"GET", "/reports/q1/x", "admin", false, "reports-mixed", ReasonDenyMissingRole},
		{"GET", "/reports/q1/x", "auditor", false, "reports-mixed", ReasonDenyMissingRole},
		// authenticated
		{"GET", "/api", "user", true, "api", ReasonAllowAuthenticated},
		{"PATCH", "/api/v1/x", "user", true, "api", ReasonAllowAuthenticated},
		{"GET", "/api/v1/x", "anon", false, "api", ReasonDenyUnauthenticated},
		// shadow rules are not enforced
		{"GET", "/beta/x", "beta", false, "", ReasonDenyNoRule},
		// default deny
		{"GET", "/nothing", "admin", false, "", ReasonDenyNoRule},
	})
	if got := s.Len(); got != 7 {
		t.Errorf("Len() = %d, want 7", got)
	}
}

func TestDecideRejectsNonCanonicalInput(t *testing.T) {
	s := mustLoad(t, "rules:\n  - path: /**\n    public: true\n")
	for _, p := range []string{"", "admin", "*"} {
		t.Run(p, func(t *testing.T) {
			if d := s.Decide(Request{Method: "GET", Path: p}); d.Allow {
				t.Errorf("Decide(Path: %q) = %+v, want deny", p, d)
			}
		})
	}
	var nilSet *Set
	if d := nilSet.Decide(Request{Method: "GET", Path: "/"}); d.Allow || d.Reason != ReasonDenyNoRule {
		t.Errorf("nil Set Decide() = %+v, want deny_no_rule", d)
	}
}

func TestShadow(t *testing.T) {
	s := mustLoad(t, `
rules:
  - id: api
    path: /api/**
    authenticated: true
  - id: api-get
    path: /api/**
    methods: [GET]
    authenticated: true
  - id: api-get-strict
    path: /api/**
    methods: [GET]
    roles: [reader]
    shadow: true
  - id: beta
    path: /beta/**
    roles: [beta]
    shadow: true
`)
	sh := s.Shadow()
	if sh == nil {
		t.Fatal("Shadow() = nil, want a set")
	}
	if got, want := strings.Join(sh.RuleIDs(), ","), "api,api-get-strict,beta"; got != want {
		t.Errorf("Shadow().RuleIDs() = %s, want %s", got, want)
	}
	if got, want := strings.Join(s.RuleIDs(), ","), "api,api-get"; got != want {
		t.Errorf("RuleIDs() = %s, want %s", got, want)
	}
	runCases(t, sh, []caseT{
		{"GET", "/api/x", "user", false, "api-get-strict", ReasonDenyMissingRole},
		{"GET", "/api/x", "reader", true, "api-get-strict", ReasonAllowRole},
		{"POST", "/api/x", "user", true, "api", ReasonAllowAuthenticated},
		{"GET", "/beta/x", "beta", true, "beta", ReasonAllowRole},
	})
	runCases(t, s, []caseT{
		{"GET", "/api/x", "user", true, "api-get", ReasonAllowAuthenticated},
		{"GET", "/beta/x", "beta", false, "", ReasonDenyNoRule},
	})
	if got := mustLoad(t, "rules:\n  - path: /\n    public: true\n").Shadow(); got != nil {
		t.Errorf("Shadow() without shadow rules = %v, want nil", got)
	}
}

func TestCaseInsensitive(t *testing.T) {
	src := `
case_insensitive: true
rules:
  - id: admin
    path: /Admin/**
    roles: [admin]
  - id: all
    path: /**
    public: true
`
	s := mustLoad(t, src)
	runCases(t, s, []caseT{
		{"GET", "/admin/x", "user", false, "admin", ReasonDenyMissingRole},
		{"GET", "/ADMIN/x", "user", false, "admin", ReasonDenyMissingRole},
		{"GET", "/aDmIn", "anon", false, "admin", ReasonDenyUnauthenticated},
		{"GET", "/%41dmin", "anon", false, "admin", ReasonDenyUnauthenticated},
		{"GET", "/admins", "anon", true, "all", ReasonAllowPublic},
	})
	sensitive := mustLoad(t, strings.Replace(src, "case_insensitive: true", "case_insensitive: false", 1))
	runCases(t, sensitive, []caseT{
		{"GET", "/Admin/x", "user", false, "admin", ReasonDenyMissingRole},
		{"GET", "/admin/x", "anon", true, "all", ReasonAllowPublic},
	})
}

func TestReservedCharacterFolding(t *testing.T) {
	s := mustLoad(t, `
rules:
  - id: secret
    path: /v1/items:secret/**
    roles: [admin]
  - id: all
    path: /**
    public: true
`)
	runCases(t, s, []caseT{
		{"GET", "/v1/items:secret", "anon", false, "secret", ReasonDenyUnauthenticated},
		{"GET", "/v1/items%3Asecret/x", "anon", false, "secret", ReasonDenyUnauthenticated},
		{"GET", "/v1/items%3asecret/x", "anon", false, "secret", ReasonDenyUnauthenticated},
	})
}

// Each table is loaded in the given order and in reverse: precedence must not
// depend on file order.
func TestPrecedence(t *testing.T) {
	tables := []struct {
		name  string
		rules []string
		cases []caseT
	}{
		{
			name: "literal beats star beats double star",
			rules: []string{
				"- {id: lit, path: /a/b, roles: [lit]}",
				"- {id: star, path: /a/*, roles: [star]}",
				"- {id: dstar, path: /a/**, roles: [dstar]}",
			},
			cases: []caseT{
				{"GET", "/a/b", "x", false, "lit", ReasonDenyMissingRole},
				{"GET", "/a/b/", "x", false, "lit", ReasonDenyMissingRole},
				{"GET", "/a/c", "x", false, "star", ReasonDenyMissingRole},
				{"GET", "/a", "x", false, "dstar", ReasonDenyMissingRole},
				{"GET", "/a/b/c", "x", false, "dstar", ReasonDenyMissingRole},
			},
		},
		{
			name: "leftmost segment decides",
			rules: []string{
				"- {id: star-lit, path: /*/b, roles: [r1]}",
				"- {id: lit-star, path: /a/*, roles: [r2]}",
				"- {id: all, path: /**, public: true}",
			},
			cases: []caseT{
				{"GET", "/a/b", "anon", false, "lit-star", ReasonDenyUnauthenticated},
				{"GET", "/z/b", "anon", false, "star-lit", ReasonDenyUnauthenticated},
				{"GET", "/z/c", "anon", true, "all", ReasonAllowPublic},
			},
		},
		{
			name: "backtracks when the literal branch has no rule",
			rules: []string{
				"- {id: deep, path: /a/b/c, public: true}",
				"- {id: star, path: /a/*/d, roles: [r]}",
				"- {id: a-all, path: /a/**, authenticated: true}",
			},
			cases: []caseT{
				{"GET", "/a/b/c", "anon", true, "deep", ReasonAllowPublic},
				{"GET", "/a/b/d", "anon", false, "star", ReasonDenyUnauthenticated},
				{"GET", "/a/b/e", "user", true, "a-all", ReasonAllowAuthenticated},
			},
		},
		{
			name: "methods beat no methods at the same pattern",
			rules: []string{
				"- {id: any, path: /x, roles: [admin]}",
				"- {id: get, path: /x, methods: [GET, HEAD], public: true}",
				"- {id: post, path: /x, methods: [POST], authenticated: true}",
			},
			cases: []caseT{
				{"GET", "/x", "anon", true, "get", ReasonAllowPublic},
				{"HEAD", "/x", "anon", true, "get", ReasonAllowPublic},
				{"POST", "/x", "user", true, "post", ReasonAllowAuthenticated},
				{"DELETE", "/x", "user", false, "any", ReasonDenyMissingRole},
			},
		},
		{
			name: "pattern specificity beats methods",
			rules: []string{
				"- {id: get-any, path: /x/**, methods: [GET], public: true}",
				"- {id: lit, path: /x/secret, roles: [admin]}",
			},
			cases: []caseT{
				{"GET", "/x/secret", "anon", false, "lit", ReasonDenyUnauthenticated},
				{"GET", "/x/other", "anon", true, "get-any", ReasonAllowPublic},
			},
		},
		{
			name: "a method miss falls back to a less specific pattern",
			rules: []string{
				"- {id: lit-post, path: /x/y, methods: [POST], roles: [admin]}",
				"- {id: all, path: /**, authenticated: true}",
			},
			cases: []caseT{
				{"POST", "/x/y", "user", false, "lit-post", ReasonDenyMissingRole},
				{"GET", "/x/y", "user", true, "all", ReasonAllowAuthenticated},
			},
		},
	}
	for _, tb := range tables {
		for _, order := range []string{"file order", "reversed"} {
			t.Run(tb.name+"/"+order, func(t *testing.T) {
				rules := append([]string(nil), tb.rules...)
				if order == "reversed" {
					for i, j := 0, len(rules)-1; i < j; i, j = i+1, j-1 {
						rules[i], rules[j] = rules[j], rules[i]
					}
				}
				s := mustLoad(t, "rules:\n  "+strings.Join(rules, "\n  ")+"\n")
				runCases(t, s, tb.cases)
			})
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings of the joined error
	}{
		{"empty file", "", []string{"policy.yaml: empty policy file"}},
		{"comments only", "# nothing\n", []string{"empty policy file"}},
		{"no rules", "rules: []\n", []string{"no rules"}},
		{"unknown top key", "rule:\n  - path: /\n", []string{`policy.yaml:1: unknown key "rule"`}},
		{"unknown rule key", "rules:\n  - path: /admin/**\n    methods: [GET]\n    role: [admin]\n",
			[]string{`policy.yaml:4: rule 1 (GET /admin/**): unknown key "role"`}},
		{"duplicate key", "rules:\n  - path: /a\n    path: /b\n    public: true\n", []string{`policy.yaml:3: rule 1 (/a): duplicate key "path"`}},
		{"wrong type", "rules:\n  - path: /a\n    public: yes\n", []string{"policy.yaml:3: rule 1 (/a): public must be true or false"}},
		{"roles not a list", "rules:\n  - path: /a\n    roles: admin\n", []string{"must be a list of strings"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"more than one yaml document"}},
		{"missing path", "rules:\n  - public: true\n", []string{"path is required"}},
		{"no access level", "rules:\n  - path: /a\n", []string{"no access level"}},
		{"public false", "rules:\n  - path: /a\n    public: false\n", []string{"public: false is not an access level"}},
		{"authenticated false", "rules:\n  - path: /a\n    authenticated: false\n", []string{"authenticated: false is not an access level"}},
		{"several levels", "rules:\n  - path: /a\n    public: true\n    roles: [x]\n", []string{"several access levels"}},
		{"empty roles", "rules:\n  - path: /a\n    roles: []\n", []string{"no access level"}},
		{"lower-case method", "rules:\n  - path: /a\n    methods: [get]\n    public: true\n", []string{`method "get" must be upper-case`}},
		{"duplicate method", "rules:\n  - path: /a\n    methods: [GET, GET]\n    public: true\n", []string{`duplicate method "GET"`}},
		{"duplicate id", "rules:\n  - {id: x, path: /a, public: true}\n  - {id: x, path: /b, public: true}\n",
			[]string{`policy.yaml:3: rule 2 (/b): duplicate id "x": also used by rule 1 (line 2)`}},
		{"id collides with default", "rules:\n  - {path: /a, public: true}\n  - {id: rule-1, path: /b, public: true}\n", []string{`duplicate id "rule-1"`}},
		{"conflict method-less", "rules:\n  - {path: /a/**, public: true}\n  - {path: /a/**/, roles: [x]}\n",
			[]string{"policy.yaml:3: rule 2 (/a/**): conflicts with rule 1 (line 2)"}},
		{"conflict shared method", "rules:\n  - {path: /a, methods: [GET, POST], public: true}\n  - {path: /a, methods: [POST], roles: [x]}\n",
			[]string{"rule 2 (POST /a): conflicts with rule 1 (line 2)"}},
		{"conflict after unreserved decoding", "rules:\n  - {path: /admin, public: true}\n  - {path: /%61dmin, roles: [x]}\n", []string{"conflicts with rule 1"}},
		{"conflict after case folding", "case_insensitive: true\nrules:\n  - {path: /Admin, public: true}\n  - {path: /admin, roles: [x]}\n", []string{"conflicts with rule 1"}},
		{"shadow conflict", "rules:\n  - {path: /a, methods: [GET, POST], public: true}\n  - {path: /a, methods: [GET], roles: [x], shadow: true}\n",
			[]string{"shadow set: conflicts with rule 1"}},
		{"unknown role", "roles: [admin]\nrules:\n  - {path: /a, roles: [admin, amdin]}\n", []string{`policy.yaml:3: rule 1 (/a): unknown role "amdin"`}},
		{"unknown all_roles role", "roles: [admin]\nrules:\n  - {path: /a, all_roles: [root]}\n", []string{`unknown role "root"`}},
		{"unknown role in test", "roles: [admin]\nrules:\n  - {path: /a, roles: [admin]}\ntests:\n  - {path: /a, roles: [root], expect: deny}\n", []string{`unknown role "root"`}},
		{"test fails", "rules:\n  - {id: a, path: /a, roles: [admin]}\ntests:\n  - {name: user denied, path: /a, roles: [user], expect: allow}\n",
			[]string{`policy.yaml:4: test "user denied": failed: GET /a as roles [user]: got deny (deny_missing_role) by rule a (line 2), want allow`}},
		{"test wrong rule", "rules:\n  - {id: a, path: /a/**, public: true}\n  - {id: b, path: /a/b, public: true}\ntests:\n  - {path: /a/b, expect: allow, rule: a, anonymous: true}\n",
			[]string{"want allow by rule a"}},
		{"test unknown rule", "rules:\n  - {id: a, path: /a, public: true}\ntests:\n  - {path: /a, expect: allow, rule: zz}\n", []string{`unknown rule id "zz"`}},
		{"test bad expect", "rules:\n  - {path: /a, public: true}\ntests:\n  - {path: /a, expect: yes}\n", []string{`expect must be allow or deny`}},
		{"test bad path", "rules:\n  - {path: /a, public: true}\ntests:\n  - {path: /a/../b, expect: deny}\n", []string{"invalid path: policy: bad path: dot segment"}},
		{"test anonymous with roles", "rules:\n  - {path: /a, public: true}\ntests:\n  - {path: /a, expect: allow, anonymous: true, roles: [x]}\n", []string{"anonymous: true with roles"}},
		{"several errors at once", "rules:\n  - {path: /a}\n  - {path: b, public: true}\n  - {path: /c, methods: [get], public: true}\n",
			[]string{"rule 1 (/a): no access level", "rule 2 (b): invalid path", "rule 3 (get /c)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load("policy.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Load() = %v, nil; want error containing %q", s, tt.want)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("Load() error %v does not wrap ErrInvalidPolicy", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load() error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestBadPatterns(t *testing.T) {
	for _, p := range []string{
		"admin", "/a//b", "//", "/a/**/b", "/**/a", "/a*", "/a*b", "/*a", "/***",
		"/a/./b", "/a/..", "/a/%2e%2e", "/a;b", "/a%3bb", `/a\b`, "/a%5cb", "/a?b", "/a#b",
		"/a%2fb", "/a%zz", "/a%00", "/caf\u00e9",
	} {
		t.Run(p, func(t *testing.T) {
			src := "rules:\n  - path: '" + p + "'\n    public: true\n"
			_, err := Load("policy.yaml", []byte(src))
			if err == nil || !strings.Contains(err.Error(), "invalid path") {
				t.Errorf("Load(path %q) error = %v, want invalid path", p, err)
			}
		})
	}
}

func TestInlineTestsPass(t *testing.T) {
	s := mustLoad(t, mainPolicy+`
tests:
  - name: admin can list
    method: GET
    path: /admin/users
    roles: [admin]
    expect: allow
    rule: admin-area
  - name: anonymous health
    path: /healthz
    anonymous: true
    expect: allow
  - name: no roles on admin
    path: /admin
    expect: deny
`)
	res := s.RunTests()
	if len(res) != 3 {
		t.Fatalf("RunTests() returned %d results, want 3", len(res))
	}
	for _, r := range res {
		if !r.Pass || r.Msg != "" {
			t.Errorf("RunTests() result %+v, want pass", r)
		}
	}
}

func TestAccessors(t *testing.T) {
	s := mustLoad(t, mainPolicy)
	if h := s.Hash(); len(h) != 64 {
		t.Errorf("Hash() = %q, want 64 hex chars", h)
	}
	rules := s.Rules()
	if len(rules) != s.Len() {
		t.Fatalf("len(Rules()) = %d, Len() = %d", len(rules), s.Len())
	}
	r := rules[0]
	if r.ID != "admin-area" || r.Line != 4 || r.Pattern != "/admin/**" || strings.Join(r.Methods, ",") != "GET,POST" || strings.Join(r.Roles, ",") != "admin" {
		t.Errorf("Rules()[0] = %+v", r)
	}
	rules[0].Methods[0] = "X"
	if s.Rules()[0].Methods[0] != "GET" {
		t.Error("Rules() returned shared slices")
	}
	var names []string
	for _, r := range AllReasons() {
		names = append(names, r.String())
	}
	if got, want := strings.Join(names, ","), "deny_no_rule,deny_unauthenticated,deny_missing_role,allow_public,allow_authenticated,allow_role,deny_rule,deny_condition"; got != want {
		t.Errorf("AllReasons() names = %s, want %s", got, want)
	}
	if got := Reason(200).String(); got != "unknown" {
		t.Errorf("Reason(200).String() = %q", got)
	}
}

func TestStore(t *testing.T) {
	a := mustLoad(t, "rules:\n  - {path: /**, public: true}\n")
	b := mustLoad(t, "rules:\n  - {path: /**, authenticated: true}\n")
	st := NewStore(a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			d := st.Load().Decide(Request{Method: "GET", Path: "/x"})
			if d.RuleID != "rule-1" {
				t.Errorf("Decide() during swaps = %+v", d)
				return
			}
		}
	}()
	for i := range 1000 {
		if i%2 == 0 {
			st.Swap(b)
		} else {
			st.Swap(a)
		}
	}
	<-done
	st.Swap(b)
	if st.Load() != b {
		t.Error("Load() after Swap(b) did not return b")
	}
	var zero Store
	if d := zero.Load().Decide(Request{Method: "GET", Path: "/"}); d.Allow {
		t.Errorf("zero Store decides %+v, want deny", d)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	s := mustLoad(t, mainPolicy)
	r := Request{Method: "GET", Path: "/reports/q1/x", Authenticated: true, Roles: []string{"admin", "auditor"}}
	if n := testing.AllocsPerRun(100, func() { s.Decide(r) }); n != 0 {
		t.Errorf("Decide() allocates %v times, want 0", n)
	}
}

func TestCompileNil(t *testing.T) {
	if _, err := Compile(nil); err == nil || err.Error() != "policy: no policy file" {
		t.Errorf("Compile(nil) error = %v, want policy: no policy file", err)
	}
}
