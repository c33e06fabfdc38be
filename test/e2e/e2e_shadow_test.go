package e2e

import (
	"path/filepath"
	"testing"

	"github.com/authgate/authgate/internal/config"
)

func TestE2EShadowCandidatePolicyIsLoggedNotEnforced(t *testing.T) {
	e := newEnv(t, "", nil, func(c *config.Config) {
		// The candidate closes /public to anonymous callers.
		c.ShadowPolicy = filepath.Join(filepath.Dir(c.PolicyFile), "candidate.yaml")
		writeFile(t, c.ShadowPolicy, "rules:\n  - path: /public/**\n    authenticated: true\n")
	})
	resp, _ := e.do("GET", "/public/x")
	if resp.StatusCode != 200 {
		t.Fatalf("enforced policy allows /public: got %d", resp.StatusCode)
	}
	if v := e.metricValue(`authgate_policy_shadow_disagreements_total{enforced="allow",shadow="deny"}`); v != "1" {
		t.Errorf("shadow disagreements = %q, want 1", v)
	}
	if e.logs.FilterMessage("shadow policy disagrees").Len() != 1 {
		t.Error("no log line for the disagreement")
	}
	// Agreement is not counted.
	e.do("GET", "/admin/x")
	if v := e.metricValue(`authgate_policy_shadow_disagreements_total{enforced="allow",shadow="deny"}`); v != "1" {
		t.Errorf("after an agreeing request disagreements = %q, want 1", v)
	}
}

func TestE2EShadowRules(t *testing.T) {
	e := newEnv(t, testPolicy+`  - id: beta
    path: /public/beta/**
    roles: [admin]
    shadow: true
`, nil)
	resp, _ := e.do("GET", "/public/beta/x")
	if resp.StatusCode != 200 {
		t.Fatalf("a shadow rule was enforced: %d", resp.StatusCode)
	}
	if v := e.metricValue(`authgate_policy_shadow_disagreements_total{enforced="allow",shadow="deny"}`); v != "1" {
		t.Errorf("shadow disagreements = %q, want 1", v)
	}
}
