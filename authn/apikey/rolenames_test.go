package apikey

import (
	"slices"
	"strings"
	"testing"
)

// TestOddRoleNamesLoadWithAWarningAndGrantNothing: a role outside the
// policy's role grammar still loads (so an upgrade starts), is never
// granted, and is reported with its file and line; a key left with no
// valid role is reported too.
func TestOddRoleNamesLoadWithAWarningAndGrantNothing(t *testing.T) {
	s := mustParse(t, `keys:
  - name: ci
    sha256: `+Digest(keyCI)+`
    roles: [deploy, "ops team"]
  - name: deploy
    sha256: `+Digest(keyDeploy)+`
    roles: ["a,b"]
`)
	a := NewAuthenticator(&Store{}, nil)
	a.store.Swap(s)
	k, err := a.Lookup(keyCI)
	if err != nil || !slices.Equal(k.Roles, []string{"deploy"}) {
		t.Fatalf("Lookup(ci) = %+v, %v; want roles [deploy]", k, err)
	}
	if k, _ := a.Lookup(keyDeploy); len(k.Roles) != 0 {
		t.Errorf("deploy roles = %q, want none", k.Roles)
	}
	w := s.Warnings()
	want := []string{
		`keys.yaml:2: key 1 (ci): field roles: policy: role "ops team"`,
		`keys.yaml:5: key 2 (deploy): field roles: policy: role "a,b"`,
		`keys.yaml:5: key 2 (deploy): field roles: the key grants no valid role`,
	}
	if len(w) != len(want) {
		t.Fatalf("Warnings() = %q, want %d", w, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(w[i], want[i]) {
			t.Errorf("Warnings()[%d] = %q, want prefix %q", i, w[i], want[i])
		}
	}
}
