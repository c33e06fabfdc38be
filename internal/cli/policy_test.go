package cli

import (
	"path/filepath"
	"testing"

	"github.com/authgate/authgate/internal/testkit/golden"
)

// policyCases are the policy diff and matrix command lines, kept in
// testdata/golden_policy/<golden>.txt.
var policyCases = []goldenCase{
	{
		// Odd role names load for one release, never granted, and check
		// says so; --strict fails on them.
		golden: "check_odd_roles", fixture: "oddroles",
		args: []string{"check", "--strict", "--config", "$DIR/config.yaml"},
		code: 1,
		mustContain: []string{
			`warning: $DIR/keys.yaml:2: key 1 (ci): field roles: policy: role "ops team": may only contain`,
			`warning: $DIR/keys.yaml:2: key 1 (ci): field roles: policy: role "a,b"`,
			"the role is not granted",
			"authgate check: 2 lint warnings (--strict)",
		},
	},
	{
		golden: "diff_text", fixture: "policydiff",
		args: []string{"policy", "diff", "$DIR/old.yaml", "$DIR/new.yaml"},
		code: 0,
		mustContain: []string{
			"widened  POST /reports/* as roles [reader]",
			"narrowed DELETE /api/** as authenticated (no roles)",
			"now deny (deny_rule) by rule no-api-delete (line 5)",
		},
	},
	{
		golden: "diff_fail_on_widen", fixture: "policydiff",
		args:        []string{"policy", "diff", "--fail-on-widen", "$DIR/old.yaml", "$DIR/new.yaml"},
		code:        3,
		mustContain: []string{"authgate policy diff: $DIR/new.yaml widens access (--fail-on-widen)"},
	},
	{
		golden: "diff_narrowing_only_passes", fixture: "policydiff",
		args:        []string{"policy", "diff", "$DIR/new.yaml", "$DIR/narrower.yaml", "--fail-on-widen", "-o", "json"},
		code:        0,
		mustContain: []string{`"widens": false`, `"kind": "narrowed"`},
	},
	{
		golden: "diff_stdin", fixture: "policydiff",
		args:        []string{"policy", "diff", "-", "$DIR/old.yaml", "-o", "json"},
		stdin:       "rules:\n  - {id: all, path: /**, public: true}\n",
		code:        0,
		mustContain: []string{`"widens": false`},
	},
	{
		golden: "diff_invalid", fixture: "policydiff",
		args:        []string{"policy", "diff", "-", "$DIR/missing.yaml"},
		stdin:       "rules:\n  - {path: /x, rolez: [a]}\n",
		code:        1,
		mustContain: []string{`<stdin>:2: rule 1 (/x): unknown key "rolez"`, "no such file"},
	},
	{
		golden: "diff_usage", fixture: "policydiff",
		args: []string{"policy", "diff", "$DIR/old.yaml"},
		code: 2,
	},
	{
		golden: "matrix_text", fixture: "policydiff",
		args:        []string{"policy", "matrix", "$DIR/new.yaml"},
		code:        0,
		mustContain: []string{"* /admin/** (rules admin)\n    allows: roles [admin] (issuer https://idp.example.com)"},
	},
	{
		golden: "matrix_json_from_config", fixture: "policydiff",
		args:        []string{"policy", "matrix", "--config", "$DIR/config.yaml", "-o", "json"},
		code:        0,
		mustContain: []string{`"pattern": "/status"`},
	},
	{
		golden: "matrix_bad_output", fixture: "policydiff",
		args: []string{"policy", "matrix", "$DIR/new.yaml", "-o", "yaml"},
		code: 2,
	},
	{
		golden: "policy_help", fixture: "policydiff",
		args:        []string{"policy", "diff", "-h"},
		code:        0,
		mustContain: []string{"--fail-on-widen"},
	},
	{
		golden: "explain_conditions", fixture: "policydiff",
		args:        []string{"explain", "--config", "$DIR/config.yaml", "--role", "admin", "--issuer", "https://other.example", "--auth-method", "external", "GET", "/admin/x"},
		code:        0,
		mustContain: []string{"decision: deny (deny_condition) by rule admin", "condition: issuers does not hold"},
	},
	{
		golden: "explain_deny_rule", fixture: "policydiff",
		args:        []string{"explain", "--config", "$DIR/config.yaml", "--exit-code", "DELETE", "/api/x"},
		code:        3,
		mustContain: []string{"decision: deny (deny_rule) by rule no-api-delete", "deny rule, decided"},
	},
	{
		golden: "explain_client_ip", fixture: "policydiff",
		args:        []string{"explain", "--config", "$DIR/config.yaml", "--anonymous", "--client-ip", "10.1.2.3", "--host", "Status.Example:8080", "GET", "/status"},
		code:        0,
		mustContain: []string{"decision: allow (allow_public) by rule status"},
	},
}

func TestPolicyCommands(t *testing.T) {
	for _, tc := range policyCases {
		t.Run(tc.golden, func(t *testing.T) {
			checkGoldenCase(t, tc, filepath.Join("testdata", "golden_policy", tc.golden+".txt"))
		})
	}
	if golden.Updating() {
		return
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "golden_policy", "*.txt"))
	if len(files) != len(policyCases) {
		t.Errorf("testdata/golden_policy holds %d files for %d cases", len(files), len(policyCases))
	}
}
