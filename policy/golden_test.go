package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	goldenfile "github.com/authgate/authgate/internal/testkit/golden"
)

func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Assert(t, filepath.Join("testdata", name), got)
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoldenCompileErrors(t *testing.T) {
	for _, name := range []string{"bad_unknown_keys", "bad_rules", "bad_tests"} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(name+".yaml", readTestdata(t, name+".yaml"))
			if err == nil {
				t.Fatalf("Load(%s.yaml) succeeded, want errors", name)
			}
			golden(t, name+".golden", err.Error()+"\n")
		})
	}
}

func TestGoldenExplain(t *testing.T) {
	s, err := Load("explain.yaml", readTestdata(t, "explain.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range []Request{
		{Method: "GET", Path: "/admin/users/42", Authenticated: true, Roles: []string{"admin"}},
		{Method: "DELETE", Path: "/admin/x", Authenticated: true, Roles: []string{"root"}},
		{Method: "GET", Path: "//api//v1/", Authenticated: false},
		{Method: "POST", Path: "/healthz", Authenticated: true},
		{Method: "GET", Path: "/admin/%2e%2e/healthz"},
	} {
		b.WriteString(s.Explain(r).String())
		b.WriteString("\n")
	}
	golden(t, "explain.golden", b.String())
}

func TestGoldenLint(t *testing.T) {
	s, err := Load("lint.yaml", readTestdata(t, "lint.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, w := range s.Lint([]string{"admin", "ops"}) {
		b.WriteString(w.String())
		b.WriteString("\n")
	}
	golden(t, "lint.golden", b.String())
	if got := len(s.Lint(nil)); got == 0 {
		t.Error("Lint(nil) returned no warnings")
	}
}

func TestGoldenLintConditions(t *testing.T) {
	s, err := Load("lint_conditions.yaml", readTestdata(t, "lint_conditions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, w := range s.LintWith(LintOptions{Issuers: []string{"authgate", "https://idp.example.com"}}) {
		b.WriteString(w.String())
		b.WriteString("\n")
	}
	golden(t, "lint_conditions.golden", b.String())
	for _, w := range s.LintWith(LintOptions{Issuers: []string{"authgate"}}) {
		if strings.Contains(w.Msg, "issuers") && strings.Contains(w.Msg, "pin") {
			t.Errorf("with one issuer: %s", w)
		}
	}
}

func TestGoldenDiffAndMatrix(t *testing.T) {
	old, err := Load("diff_old.yaml", readTestdata(t, "diff_old.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := Load("diff_new.yaml", readTestdata(t, "diff_new.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	changes := Diff(old, cur)
	golden(t, "diff.golden", FormatDiff(changes))
	var widened bool
	for _, c := range changes {
		widened = widened || c.Kind == ChangeWidened
	}
	if !widened {
		t.Error("Diff() found no widening; POST /reports/* for readers is one")
	}
	if back := Diff(cur, old); len(back) != len(changes) {
		t.Errorf("Diff(new, old) has %d changes, Diff(old, new) %d; want the same probes", len(back), len(changes))
	}
	if same := Diff(cur, cur); len(same) != 0 {
		t.Errorf("Diff(p, p) = %v, want none", same)
	}
	golden(t, "matrix.golden", FormatMatrix(Matrix(cur)))
}

func TestGoldenExplainConditions(t *testing.T) {
	s, err := Load("explain_conditions.yaml", readTestdata(t, "explain_conditions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range []struct {
		method, path string
		who          Caller
	}{
		{"GET", "/admin/users/1", Caller{Roles: []string{"admin"}, Issuer: "https://idp.example.com", AuthMethod: "external", ClientIP: "10.0.0.7"}},
		{"GET", "/admin/users/1", Caller{Roles: []string{"admin", "intern"}, Issuer: "https://idp.example.com", ClientIP: "10.0.0.7"}},
		{"DELETE", "/admin/x", Caller{Roles: []string{"admin"}, Issuer: "https://idp.example.com", ClientIP: "10.0.0.7"}},
		{"GET", "/admin/x", Caller{Roles: []string{"admin"}, Issuer: "https://other.example", ClientIP: "10.0.0.7"}},
		{"GET", "/admin/x", Caller{Roles: []string{"admin"}, Issuer: "https://idp.example.com", ClientIP: "192.0.2.1"}},
	} {
		r, err := c.who.Request(c.method, c.path)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(s.Explain(r).String())
		b.WriteString("\n")
	}
	golden(t, "explain_conditions.golden", b.String())
}
