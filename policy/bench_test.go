package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// genPolicy returns a policy of n rules spread over services, mixing literal,
// "*" and "**" patterns, method lists and role requirements, plus requests
// that hit each kind of rule and the default deny.
func genPolicy(n int) (string, []Request) {
	var b strings.Builder
	b.WriteString("roles: [admin, reader, writer, ops, finance]\nrules:\n")
	methods := []string{"", "[GET, HEAD]", "[POST]", "[PUT, PATCH, DELETE]"}
	access := []string{"roles: [reader, admin]", "authenticated: true", "all_roles: [writer, ops]", "public: true", "roles: [finance]"}
	var reqs []Request
	for i := 0; i < n-1; i++ {
		svc := fmt.Sprintf("svc%d", i%40)
		var path string
		switch i % 4 {
		case 0:
			path = fmt.Sprintf("/%s/v1/res%d/**", svc, i)
		case 1:
			path = fmt.Sprintf("/%s/v1/res%d/*/items", svc, i)
		case 2:
			path = fmt.Sprintf("/%s/*/res%d/detail", svc, i)
		default:
			path = fmt.Sprintf("/%s/v2/res%d", svc, i)
		}
		fmt.Fprintf(&b, "  - path: %s\n    %s\n", path, access[i%len(access)])
		if m := methods[i%len(methods)]; m != "" {
			fmt.Fprintf(&b, "    methods: %s\n", m)
		}
		if i%97 == 0 {
			concrete := strings.NewReplacer("/**", "/a/b/c", "*", "x42").Replace(path)
			reqs = append(reqs, Request{Method: "GET", Path: concrete, Authenticated: true, Roles: []string{"ops", "reader", "writer"}})
		}
	}
	b.WriteString("  - path: /**\n    authenticated: true\n")
	reqs = append(reqs,
		Request{Method: "GET", Path: "/svc3/v1/unknown/deep/path/here", Authenticated: true, Roles: []string{"reader"}},
		Request{Method: "DELETE", Path: "/nowhere", Authenticated: false})
	return b.String(), reqs
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			src, reqs := genPolicy(n)
			s := mustLoad(b, src)
			if s.Len() != n {
				b.Fatalf("Len() = %d, want %d", s.Len(), n)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Decide(reqs[i%len(reqs)])
				i++
			}
		})
	}
}

func TestGeneratedPolicyDecides(t *testing.T) {
	src, reqs := genPolicy(1000)
	s := mustLoad(t, src)
	for _, r := range reqs {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			if _, err := Canonicalize(r.Path); err != nil {
				t.Fatalf("Canonicalize(%q): %v", r.Path, err)
			}
			if d := s.Decide(r); d.RuleID == "" && r.Authenticated {
				t.Errorf("Decide(%+v) = %+v, want a rule (the catch-all at least)", r, d)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, r := range reqs {
			s.Decide(r)
		}
	}); n != 0 {
		t.Errorf("Decide() allocates %v times per batch, want 0", n)
	}
}

func BenchmarkLoad(b *testing.B) {
	src, _ := genPolicy(10000)
	b.Run("rules=10000", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Load("policy.yaml", []byte(src)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// genConditionPolicy is genPolicy with conditions and deny rules mixed in:
// every third rule that needs an identity pins issuers and auth_methods,
// every fifth a claim, hosts and source_cidrs, and each service has two
// deny rules.
func genConditionPolicy(n int) (string, []Request) {
	src, reqs := genPolicy(n - 80)
	var b strings.Builder
	rule := 0
	for _, l := range strings.Split(src, "\n") {
		b.WriteString(l)
		b.WriteByte('\n')
		if !strings.HasPrefix(l, "    roles:") && !strings.HasPrefix(l, "    authenticated:") && !strings.HasPrefix(l, "    all_roles:") {
			continue
		}
		rule++
		if rule%3 == 0 {
			b.WriteString("    issuers: [https://idp.example.com, authgate]\n    auth_methods: [jwt, external]\n")
		}
		if rule%5 == 0 {
			b.WriteString("    claims: [{path: org.tier, in: [gold, silver]}]\n    hosts: [\"*.example.com\"]\n    source_cidrs: [10.0.0.0/8]\n")
		}
	}
	out := strings.Replace(b.String(), "rules:\n", "rules:\n"+denyRules(), 1)
	claims := ClaimMap{"org": map[string]any{"tier": "gold"}}
	for i := range reqs {
		reqs[i].Issuer, reqs[i].AuthMethod, reqs[i].Claims = "authgate", "jwt", claims
		reqs[i].Host, reqs[i].ClientAddr = "a.example.com", netip.MustParseAddr("10.1.2.3")
	}
	return out, reqs
}

func denyRules() string {
	var b strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "  - {path: /svc%d/v1/internal/**, deny: true}\n  - {path: /svc%d/**, methods: [DELETE], deny: true, auth_methods: [apikey]}\n", i, i)
	}
	return b.String()
}

// BenchmarkDecideConditions is the decision at 10,000 rules with
// structured conditions and deny rules and no `when`: it must stay within
// 1 µs and allocation-free.
func BenchmarkDecideConditions(b *testing.B) {
	src, reqs := genConditionPolicy(10000)
	s := mustLoad(b, src)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Decide(reqs[i%len(reqs)])
		i++
	}
}

// BenchmarkDecideCEL is a decision whose winning rule has a `when`.
func BenchmarkDecideCEL(b *testing.B) {
	src, _ := genPolicy(10000)
	src = strings.Replace(src, "rules:\n", `rules:
  - path: /cel/**
    authenticated: true
    when: 'request.method == "GET" && ("ops" in principal.roles || claims.org.tier == "gold") && request.host.endsWith(".example.com")'
`, 1)
	s := mustLoad(b, src)
	r := Request{Method: "GET", Path: "/cel/x/y", Authenticated: true, Roles: []string{"ops", "reader"},
		Claims: ClaimMap{"org": map[string]any{"tier": "gold"}}, Host: "a.example.com"}
	if d := s.Decide(r); !d.Allow {
		b.Fatalf("Decide() = %+v, want allow", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Decide(r)
	}
}

func TestGeneratedConditionPolicyDoesNotAllocate(t *testing.T) {
	src, reqs := genConditionPolicy(2000)
	s := mustLoad(t, src)
	allowed := 0
	for _, r := range reqs {
		if s.Decide(r).Allow {
			allowed++
		}
	}
	if allowed == 0 {
		t.Fatal("no generated request is allowed; the benchmark would measure denials only")
	}
	if n := testing.AllocsPerRun(50, func() {
		for _, r := range reqs {
			s.Decide(r)
		}
	}); n != 0 {
		t.Errorf("Decide() allocates %v times per batch, want 0", n)
	}
}
