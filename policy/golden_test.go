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
