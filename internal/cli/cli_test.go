package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authgate/authgate/internal/testkit/golden"
)

// testSecret is a signing secret long enough to be accepted.
const testSecret = "cli-test-secret-0123456789abcdefghijklmnop"

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// copyFixture copies testdata/cli/name into a new temporary directory and
// returns that directory.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("testdata", "cli", name)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, e.Name()), string(data))
	}
	return dir
}

// runCLI runs the command in-process and renders what a user would see:
// the command line, the exit code, stdout and stderr, with dir shown as
// $DIR so that the output does not depend on the temporary directory, and
// the usage text shown as <usage> so that adding a command does not change
// every golden file that prints it.
func runCLI(t *testing.T, dir string, args, environ []string) string {
	t.Helper()
	expanded := make([]string, len(args))
	for i, a := range args {
		expanded[i] = strings.ReplaceAll(a, "$DIR", dir)
	}
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), "test", expanded, environ, strings.NewReader(""), &stdout, &stderr)
	var b strings.Builder
	fmt.Fprintf(&b, "$ authgate %s\n", strings.Join(args, " "))
	fmt.Fprintf(&b, "exit: %d\n", code)
	fmt.Fprintf(&b, "--- stdout\n%s", stdout.String())
	fmt.Fprintf(&b, "--- stderr\n%s", stderr.String())
	out := strings.ReplaceAll(b.String(), usage, "<usage>\n")
	return strings.ReplaceAll(out, dir, "$DIR")
}

// assertGolden compares got with testdata/golden/name.txt, or rewrites the
// file when -update is set.
func assertGolden(t *testing.T, name, got string) {
	t.Helper()
	golden.Assert(t, filepath.Join("testdata", "golden", name+".txt"), got)
}

func TestCLIGolden(t *testing.T) {
	tests := []struct {
		golden  string
		fixture string // directory under testdata/cli
		args    []string
		environ []string
		code    int
		// mustContain are checked besides the golden file, so that the
		// point of each case survives an -update.
		mustContain []string
	}{
		{
			golden: "check_ok", fixture: "ok",
			args: []string{"check", "--config", "$DIR/config.yaml"},
			code: 0,
			mustContain: []string{
				`warning: $DIR/policy.yaml:4: rule public: public pattern /public/** overlaps protected rule public-admin`,
				`warning: $DIR/policy.yaml:16: rule audit: role "auditor" is not a known role`,
				`test: $DIR/policy.yaml:26: readers do not administer: pass (deny, rule "admin")`,
				"ok: $DIR/config.yaml: policy $DIR/policy.yaml (5 rules, hash ",
				", 2 api keys\n",
			},
		},
		{
			golden: "check_ok_env_secret", fixture: "ok",
			args:    []string{"check", "--config", "$DIR/config.yaml"},
			environ: []string{"AUTHGATE_JWT_SECRET=" + testSecret},
			code:    0,
		},
		{
			golden: "check_strict", fixture: "ok",
			args: []string{"check", "--strict", "--config", "$DIR/config.yaml"},
			code: 1,
			mustContain: []string{
				"authgate check: 3 lint warnings (--strict)",
			},
		},
		{
			golden: "check_config_from_env", fixture: "ok",
			args:    []string{"check"},
			environ: []string{"AUTHGATE_CONFIG=$DIR/config.yaml"},
			code:    0,
		},
		{
			golden: "check_errors", fixture: "errors",
			args: []string{"check", "--config", "$DIR/config.yaml"},
			code: 1,
			mustContain: []string{
				`$DIR/policy.yaml:5: rule 1 (/admin/**): unknown role "amdin"`,
				`$DIR/policy.yaml:6: rule 2 (/api/**): duplicate id "admin"`,
				`$DIR/policy.yaml:13: rule 4 (GET,HEAD /reports/*): conflicts with rule 3 (line 9)`,
				`$DIR/policy.yaml:17: rule 5 (/files/*.txt): invalid path`,
				`$DIR/keys.yaml:5: key 2 (broken-bot): field sha256`,
			},
		},
		{
			golden: "check_failing_test", fixture: "failing-test",
			args: []string{"check", "--config", "$DIR/config.yaml"},
			code: 1,
			mustContain: []string{
				`$DIR/policy.yaml:14: test "readers administer too": failed`,
			},
		},
		{
			golden: "check_bad_config", fixture: "bad-config",
			args: []string{"check", "--config", "$DIR/config.yaml"},
			code: 1,
			mustContain: []string{
				"$DIR/config.yaml: field upstream.url:",
				"$DIR/config.yaml: field upstream.host_header:",
				"$DIR/config.yaml: field logging.level:",
			},
		},
		{
			golden: "check_short_secret", fixture: "ok",
			args:    []string{"check", "--config", "$DIR/config.yaml"},
			environ: []string{"AUTHGATE_JWT_SECRET=too-short"},
			code:    1,
			mustContain: []string{
				"AUTHGATE_JWT_SECRET is 9 bytes, need at least 32",
			},
		},
		{
			golden: "check_no_config", fixture: "ok",
			args: []string{"check"},
			code: 2,
			mustContain: []string{
				"no config file: pass --config or set AUTHGATE_CONFIG",
				"<usage>",
			},
		},
		{
			golden: "explain_role_allowed", fixture: "ok",
			args: []string{"explain", "--config", "$DIR/config.yaml", "--role", "admin", "GET", "/admin/users"},
			code: 0,
			mustContain: []string{
				"decision: allow (allow_role) by rule admin (line 13)",
			},
		},
		{
			golden: "explain_role_missing", fixture: "ok",
			args: []string{"explain", "--config", "$DIR/config.yaml", "--role", "reader", "DELETE", "/public/admin/x"},
			code: 0,
			mustContain: []string{
				"decision: deny (deny_missing_role) by rule public-admin (line 7)",
			},
		},
		{
			golden: "explain_anonymous", fixture: "ok",
			args: []string{"explain", "--config", "$DIR/config.yaml", "--anonymous", "POST", "/api/items"},
			code: 0,
			mustContain: []string{
				"as anonymous",
				"decision: deny (deny_unauthenticated) by rule api (line 10)",
			},
		},
		{
			golden: "explain_rejected_path", fixture: "ok",
			args: []string{"explain", "--config", "$DIR/config.yaml", "--anonymous", "GET", "/public/../admin/users"},
			code: 0,
			mustContain: []string{
				"path: policy: bad path: dot segment",
				"decision: deny (deny_no_rule)",
			},
		},
		{
			golden: "explain_conflicting_flags", fixture: "ok",
			args: []string{"explain", "--config", "$DIR/config.yaml", "--anonymous", "--role", "admin", "GET", "/admin"},
			code: 2,
			mustContain: []string{
				"--anonymous and --role exclude each other",
				"<usage>",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			dir := copyFixture(t, tc.fixture)
			environ := make([]string, len(tc.environ))
			for i, kv := range tc.environ {
				environ[i] = strings.ReplaceAll(kv, "$DIR", dir)
			}
			got := runCLI(t, dir, tc.args, environ)
			if want := fmt.Sprintf("exit: %d\n", tc.code); !strings.Contains(got, want) {
				t.Errorf("run(%q): want %q in\n%s", tc.args, want, got)
			}
			for _, s := range tc.mustContain {
				if !strings.Contains(got, s) {
					t.Errorf("run(%q): want %q in\n%s", tc.args, s, got)
				}
			}
			assertGolden(t, tc.golden, got)
		})
	}
}

// TestCLIGoldenFilesAreUsed keeps testdata/golden free of files no case
// writes any more.
func TestCLIGoldenFilesAreUsed(t *testing.T) {
	if golden.Updating() {
		t.Skip("-update rewrites the files")
	}
	used := map[string]bool{
		"check_ok": true, "check_ok_env_secret": true, "check_strict": true, "check_config_from_env": true,
		"check_errors": true, "check_failing_test": true, "check_bad_config": true, "check_short_secret": true,
		"check_no_config": true, "explain_role_allowed": true, "explain_role_missing": true,
		"explain_anonymous": true, "explain_rejected_path": true, "explain_conflicting_flags": true,
	}
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".txt"); !used[name] {
			t.Errorf("%s is not compared by any test case", f)
		}
	}
}
