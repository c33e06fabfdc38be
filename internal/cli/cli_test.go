package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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

// result is what one run of the command line showed.
type result struct {
	code           int
	stdout, stderr string
}

// run runs args in-process with environ and stdin, and no process-wide
// effects.
func run(t *testing.T, args, environ []string, stdin string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), args, Options{
		Version: "test", Environ: environ,
		Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr,
	})
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// Secrets and random values printed by the commands, replaced in golden
// files once the test has checked them.
var redactions = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\$2a\$\d\d\$[./A-Za-z0-9]{53}`), "<bcrypt hash>"},
	{regexp.MustCompile(`agk_[A-Za-z0-9_-]{43}`), "<api key>"},
	{regexp.MustCompile(`sha256: [0-9a-f]{64}`), "sha256: <digest>"},
	{regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`), "<token>"},
	{regexp.MustCompile(`expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "expires <time>"},
}

// render shows a run as a user would see it: the command line, the exit
// code, stdout and stderr, with dir shown as $DIR so that the output does
// not depend on the temporary directory, and random values redacted.
func render(args []string, r result, dir string) string {
	var b strings.Builder
	b.WriteString("$ authgate")
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"") {
			a = "'" + a + "'"
		}
		b.WriteString(" " + a)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "exit: %d\n", r.code)
	fmt.Fprintf(&b, "--- stdout\n%s", r.stdout)
	fmt.Fprintf(&b, "--- stderr\n%s", r.stderr)
	out := b.String()
	for _, x := range redactions {
		out = x.re.ReplaceAllString(out, x.with)
	}
	return strings.ReplaceAll(out, dir, "$DIR")
}

// expand replaces $DIR in each of list.
func expand(list []string, dir string) []string {
	if list == nil {
		return nil
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = strings.ReplaceAll(a, "$DIR", dir)
	}
	return out
}

// assertGolden compares got with testdata/golden/name.txt, or rewrites the
// file when -update is set.
func assertGolden(t *testing.T, name, got string) {
	t.Helper()
	golden.Assert(t, filepath.Join("testdata", "golden", name+".txt"), got)
}

// goldenCase is one command line whose whole output is kept in
// testdata/golden/<golden>.txt.
type goldenCase struct {
	golden  string
	fixture string // directory under testdata/cli
	args    []string
	environ []string
	stdin   string
	code    int
	// mustContain are checked besides the golden file, so that the point
	// of each case survives an -update.
	mustContain []string
}

var goldenCases = []goldenCase{
	{
		golden: "check_ok", fixture: "ok",
		args: []string{"check", "--config", "$DIR/config.yaml"},
		code: 0,
		mustContain: []string{
			`warning: $DIR/policy.yaml:4: rule public: public pattern /public/** overlaps protected rule public-admin`,
			`warning: $DIR/policy.yaml:16: rule audit: role "auditor" is held by no user or API key`,
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
			"$DIR/config.yaml:2: field upstream.url:",
			"$DIR/config.yaml:3: field upstream.host_header:",
			"$DIR/config.yaml:6: field logging.level:",
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
			"authgate check: no config file: pass --config or set AUTHGATE_CONFIG",
			"Run 'authgate check --help' for usage.",
		},
	},
	{
		// No command runs serve, which needs a config like any serve.
		golden: "serve_no_config", fixture: "ok",
		args: nil,
		code: 2,
		mustContain: []string{
			"authgate: no config file: pass --config or set AUTHGATE_CONFIG",
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
			"Run 'authgate explain --help' for usage.",
		},
	},
	{
		golden: "explain_flags_after_args", fixture: "ok",
		args: []string{"explain", "GET", "/admin/users", "--config", "$DIR/config.yaml", "--role", "admin"},
		code: 0,
		mustContain: []string{
			"request: GET /admin/users as roles [admin]",
			"decision: allow (allow_role) by rule admin (line 13)",
		},
	},
	{
		golden: "explain_comma_roles", fixture: "ok",
		args: []string{"explain", "--config", "$DIR/config.yaml", "--role", "reader,admin", "GET", "/admin/users"},
		code: 0,
		mustContain: []string{
			"as roles [admin,reader]",
		},
	},
	{
		golden: "explain_bad_role", fixture: "ok",
		args: []string{"explain", "--config", "$DIR/config.yaml", "--role", "ops team", "GET", "/admin/users"},
		code: 2,
		mustContain: []string{
			`role "ops team": may only contain`,
		},
	},
	{
		golden: "explain_exit_code_allow", fixture: "ok",
		args: []string{"explain", "--exit-code", "--config", "$DIR/config.yaml", "--role", "admin", "GET", "/admin/users"},
		code: 0,
		mustContain: []string{
			"decision: allow",
		},
	},
	{
		golden: "explain_exit_code_deny", fixture: "ok",
		args: []string{"explain", "--exit-code", "--config", "$DIR/config.yaml", "--anonymous", "POST", "/api/items"},
		code: 3,
		mustContain: []string{
			"decision: deny (deny_unauthenticated)",
		},
	},
	{
		golden: "explain_exit_code_rejected_path", fixture: "ok",
		args: []string{"explain", "--exit-code", "--config", "$DIR/config.yaml", "--role", "admin", "GET", "/admin/%2e%2e/public/x"},
		code: 3,
		mustContain: []string{
			"decision: deny (deny_no_rule)",
		},
	},
	{
		golden: "explain_wrong_arg_count", fixture: "ok",
		args: []string{"explain", "--config", "$DIR/config.yaml", "GET"},
		code: 2,
		mustContain: []string{
			`explain needs METHOD and PATH, got ["GET"]`,
		},
	},
	{
		golden: "unknown_flag", fixture: "ok",
		args: []string{"check", "--config", "$DIR/config.yaml", "--nope"},
		code: 2,
		mustContain: []string{
			"authgate check: unknown flag: --nope",
			"Run 'authgate check --help' for usage.",
		},
	},
	{
		golden: "single_dash_flag", fixture: "ok",
		args: []string{"check", "-config", "$DIR/config.yaml"},
		code: 2,
		mustContain: []string{
			"(long flags take two dashes: --config)",
		},
	},
	{
		golden: "unknown_command", fixture: "ok",
		args: []string{"chek", "--config", "$DIR/config.yaml"},
		code: 2,
		mustContain: []string{
			`authgate: unknown command "chek" (did you mean check?)`,
		},
	},
	{
		golden: "unknown_help_topic", fixture: "ok",
		args: []string{"help", "nope"},
		code: 2,
	},
	{
		golden: "version_flag", fixture: "ok",
		args:        []string{"--version"},
		code:        0,
		mustContain: []string{"authgate test\n"},
	},
	{
		golden: "version_command", fixture: "ok",
		args:        []string{"version"},
		code:        0,
		mustContain: []string{"authgate test\n"},
	},
	{
		golden: "help_root", fixture: "ok",
		args:        []string{"--help"},
		code:        0,
		mustContain: []string{"Exit codes:", "  2  usage:", "  3  explain --exit-code only"},
	},
	{golden: "help_serve", fixture: "ok", args: []string{"serve", "--help"}},
	{golden: "help_check", fixture: "ok", args: []string{"check", "-h"}},
	{golden: "help_explain", fixture: "ok", args: []string{"explain", "--help"}, mustContain: []string{"--exit-code"}},
	{
		// Help wins wherever it stands; no key is made.
		golden: "help_gen_key", fixture: "ok",
		args:        []string{"gen-key", "--help", "admin"},
		mustContain: []string{"Usage:\n  authgate gen-key NAME ROLE..."},
	},
	{golden: "help_hash_password", fixture: "ok", args: []string{"hash-password", "--help"}},
	{
		// Help needs neither a config nor the signing secret.
		golden: "help_token", fixture: "ok",
		args:        []string{"token", "--help"},
		mustContain: []string{"--subject NAME"},
	},
	{golden: "help_version", fixture: "ok", args: []string{"version", "--help"}},
	{golden: "help_completion", fixture: "ok", args: []string{"completion", "--help"}},
	{
		golden: "gen_key", fixture: "ok",
		args:        []string{"gen-key", "ci-bot", "deployer,reader", "admin"},
		mustContain: []string{"- name: ci-bot\n  sha256: <digest>\n  roles: [deployer, reader, admin]\n"},
	},
	{
		golden: "gen_key_missing_role", fixture: "ok",
		args: []string{"gen-key", "ci-bot"},
		code: 2,
	},
	{
		golden: "gen_key_bad_role", fixture: "ok",
		args:        []string{"gen-key", "ci-bot", "ops team"},
		code:        2,
		mustContain: []string{`policy: role "ops team": may only contain`},
	},
	{
		golden: "gen_key_bad_name", fixture: "ok",
		args:        []string{"gen-key", "ci bot", "admin"},
		code:        2,
		mustContain: []string{"the keys file would refuse this entry: ", "field name: must match"},
	},
	{
		// "--" ends the flags: "--help" is then a NAME, and refused.
		golden: "gen_key_double_dash", fixture: "ok",
		args:        []string{"gen-key", "--", "--help", "admin"},
		code:        2,
		mustContain: []string{"key 1 (--help): field name"},
	},
	{
		golden: "hash_password_stdin", fixture: "ok",
		args:        []string{"hash-password", "--cost", "10"},
		stdin:       "s3cret\n",
		mustContain: []string{"--- stdout\n<bcrypt hash>\n--- stderr\n"},
	},
	{
		golden: "hash_password_argument", fixture: "ok",
		args: []string{"hash-password", "s3cret"},
		code: 2,
	},
	{
		golden: "hash_password_too_long", fixture: "ok",
		args:        []string{"hash-password"},
		stdin:       strings.Repeat("a", 73) + "\n",
		code:        1,
		mustContain: []string{"password is 73 bytes; bcrypt uses at most 72"},
	},
	{
		golden: "token_service", fixture: "users",
		args:        []string{"token", "--subject", "billing", "--config", "$DIR/config.yaml", "--role", "reader,writer", "--ttl", "10m"},
		environ:     []string{"AUTHGATE_JWT_SECRET=" + testSecret},
		mustContain: []string{"--- stdout\n<token>\n", "subject billing, roles [reader writer], expires <time>"},
	},
	{
		golden: "token_no_config", fixture: "users",
		args:    []string{"token", "--subject", "billing", "--role", "reader"},
		environ: []string{"AUTHGATE_JWT_SECRET=" + testSecret},
		code:    2,
	},
	{
		golden: "token_user_role_not_held", fixture: "users",
		args:        []string{"token", "--config", "$DIR/config.yaml", "--subject", "alice", "--role", "reader"},
		environ:     []string{"AUTHGATE_JWT_SECRET=" + testSecret},
		code:        1,
		mustContain: []string{`user "alice" does not hold role "reader"`},
	},
}

func TestCLIGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.golden, func(t *testing.T) {
			checkGoldenCase(t, tc, filepath.Join("testdata", "golden", tc.golden+".txt"))
		})
	}
}

// checkGoldenCase runs tc and compares its whole output with the golden
// file at path.
func checkGoldenCase(t *testing.T, tc goldenCase, path string) {
	t.Helper()
	dir := copyFixture(t, tc.fixture)
	r := run(t, expand(tc.args, dir), expand(tc.environ, dir), tc.stdin)
	got := render(tc.args, r, dir)
	if r.code != tc.code {
		t.Errorf("run(%q) exit = %d, want %d\n%s", tc.args, r.code, tc.code, got)
	}
	for _, s := range tc.mustContain {
		if !strings.Contains(got, s) {
			t.Errorf("run(%q): want %q in\n%s", tc.args, s, got)
		}
	}
	golden.Assert(t, path, got)
}

// TestCLIGoldenFilesAreUsed keeps testdata/golden free of files no case
// writes any more.
func TestCLIGoldenFilesAreUsed(t *testing.T) {
	if golden.Updating() {
		t.Skip("-update rewrites the files")
	}
	used := map[string]bool{}
	for _, tc := range goldenCases {
		if used[tc.golden] {
			t.Errorf("golden file %s is used by two cases", tc.golden)
		}
		used[tc.golden] = true
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
