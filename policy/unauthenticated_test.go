package policy

import (
	"strings"
	"testing"
)

func TestOnUnauthenticated(t *testing.T) {
	const src = `rules:
  - id: ui
    path: /ui/**
    authenticated: true
    on_unauthenticated: redirect
  - id: api
    path: /api/**
    authenticated: true
    on_unauthenticated: deny
  - id: other
    path: /other/**
    authenticated: true
`
	set, err := Load("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want OnUnauthenticated
	}{
		{"/ui/x", UnauthenticatedRedirect},
		{"/api/x", UnauthenticatedDeny},
		{"/other/x", UnauthenticatedDefault},
		{"/nothing", UnauthenticatedDefault},
	} {
		d := set.Decide(Request{Method: "GET", Path: tc.path})
		if d.Allow || d.OnUnauthenticated != tc.want {
			t.Errorf("Decide(GET %s) = allow %v, on_unauthenticated %d; want deny, %d", tc.path, d.Allow, d.OnUnauthenticated, tc.want)
		}
	}
	_, err = Load("p.yaml", []byte("rules:\n  - path: /x\n    authenticated: true\n    on_unauthenticated: login\n"))
	if err == nil || !strings.Contains(err.Error(), `p.yaml:4: rule 1 (/x): on_unauthenticated: want redirect or deny, got "login"`) {
		t.Fatalf("Load with a bad on_unauthenticated = %v, want a line-numbered error", err)
	}
}
