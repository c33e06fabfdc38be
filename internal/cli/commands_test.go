package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/config"
)

// commandPaths lists every command of the tree as its arguments, cobra's
// help and completion commands included.
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk(newRoot(&Options{Version: "test"}, nil), nil)
	if len(paths) < 12 {
		t.Fatalf("only %d commands in the tree: %q", len(paths), paths)
	}
	return paths
}

// TestCLIHelpEveryCommand runs -h and --help on every command with an empty
// environment, no config and no secret, with the flag before and after a
// positional argument: each prints its help and exits 0, and nothing else
// runs (gen-key --help admin makes no key).
func TestCLIHelpEveryCommand(t *testing.T) {
	for _, path := range commandPaths(t) {
		for _, args := range [][]string{
			append(slices.Clone(path), "-h"),
			append(slices.Clone(path), "--help"),
			append(append(slices.Clone(path), "--help"), "admin"),
			append(append(slices.Clone(path), "admin"), "-h"),
		} {
			r := run(t, args, nil, "")
			if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
				t.Errorf("authgate %s: exit %d, stdout %q, stderr %q; want exit 0 and help on stdout only",
					strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout, "agk_") {
				t.Errorf("authgate %s made a key", strings.Join(args, " "))
			}
		}
	}
}

// TestCLIUsageErrorsExit2 checks the usage class on every command: an
// unknown flag exits 2 wherever it stands, and names the command's help.
func TestCLIUsageErrorsExit2(t *testing.T) {
	for _, path := range commandPaths(t) {
		if len(path) > 0 && path[0] == "help" {
			continue // help takes topics, not flags
		}
		args := append(slices.Clone(path), "--no-such-flag")
		r := run(t, args, nil, "")
		want := fmt.Sprintf("Run '%s --help' for usage.\n", strings.Join(append([]string{"authgate"}, path...), " "))
		if r.code != 2 || !strings.Contains(r.stderr, "unknown flag: --no-such-flag") || !strings.HasSuffix(r.stderr, want) {
			t.Errorf("authgate %s: exit %d, stderr %q; want exit 2, the flag named and %q", strings.Join(args, " "), r.code, r.stderr, want)
		}
	}
}

func TestCLICompletion(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{
		{"bash", "# bash completion V2 for authgate"},
		{"zsh", "#compdef authgate"},
		{"fish", "complete -c authgate"},
		{"powershell", "Register-ArgumentCompleter"},
	} {
		r := run(t, []string{"completion", tc.shell}, nil, "")
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) || r.stderr != "" {
			t.Errorf("completion %s: exit %d, stderr %q, stdout lacks %q", tc.shell, r.code, r.stderr, tc.want)
		}
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed: the script is not loaded")
	}
	script := filepath.Join(t.TempDir(), "authgate.bash")
	writeFile(t, script, run(t, []string{"completion", "bash"}, nil, "").stdout)
	out, err := exec.Command(bash, "--norc", "--noprofile", "-c", "source "+script+" && complete -p authgate").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "__start_authgate") {
		t.Errorf("bash could not load the completion script: %v\n%s", err, out)
	}
}

// TestCLIGenKey checks what the golden file redacts: the printed key's
// digest is the one in the entry, and the entry loads as a keys file that
// authenticates that key with those roles.
func TestCLIGenKey(t *testing.T) {
	r := run(t, []string{"gen-key", "ci-bot", "deployer,reader", "admin"}, nil, "")
	if r.code != 0 {
		t.Fatalf("gen-key: exit %d, stderr %q", r.code, r.stderr)
	}
	key := regexp.MustCompile(`(?m)^# (agk_\S+)$`).FindStringSubmatch(r.stdout)
	if key == nil {
		t.Fatalf("gen-key printed no key:\n%s", r.stdout)
	}
	set, err := apikey.Parse("keys.yaml", []byte("keys:\n"+r.stdout))
	if err != nil {
		t.Fatalf("printed entry does not load: %v\n%s", err, r.stdout)
	}
	var store apikey.Store
	store.Swap(set)
	k, err := apikey.NewAuthenticator(&store, nil).Lookup(key[1])
	if err != nil || k.Name != "ci-bot" || !slices.Equal(k.Roles, []string{"admin", "deployer", "reader"}) {
		t.Errorf("key lookup = %+v, %v; want ci-bot with roles admin, deployer, reader", k, err)
	}
	d := sha256.Sum256([]byte(key[1]))
	if !strings.Contains(r.stdout, "sha256: "+hex.EncodeToString(d[:])) {
		t.Errorf("entry does not hold the key's digest:\n%s", r.stdout)
	}
}

// TestCLIGenKeyRefusesBadNames: a name or role the keys file or the policy
// would refuse, or one that would change the YAML it is written into, is a
// usage error and no key is printed.
func TestCLIGenKeyRefusesBadNames(t *testing.T) {
	for _, args := range [][]string{
		{"ci bot", "admin"},
		{"ci-bot\n  roles: [admin]", "reader"},
		{"ci-bot", "ops team"},
		{"ci-bot", "admin]\n  - name: x"},
		{"ci-bot", "\"admin\""},
		{"ci-bot", ""},
		{"ci-bot", ","},
		{"", "admin"},
	} {
		r := run(t, append([]string{"gen-key", "--"}, args...), nil, "")
		if r.code != 2 || r.stdout != "" {
			t.Errorf("gen-key %q: exit %d, stdout %q; want exit 2 and nothing printed", args, r.code, r.stdout)
		}
	}
	// Role names the policy accepts but YAML would read otherwise are
	// quoted by the encoder and load back as written.
	r := run(t, []string{"gen-key", "ci-bot", "@ops", "~", "true", "a:b"}, nil, "")
	set, err := apikey.Parse("keys.yaml", []byte("keys:\n"+r.stdout))
	if r.code != 0 || err != nil {
		t.Fatalf("gen-key with YAML-special roles: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if got := set.Roles(); !slices.Equal(got, []string{"@ops", "a:b", "true", "~"}) {
		t.Errorf("roles loaded back = %q", got)
	}
}

func TestCLIHashPassword(t *testing.T) {
	r := run(t, []string{"hash-password", "--cost", "10"}, nil, "s3cret\r\nnext line")
	h := strings.TrimSuffix(r.stdout, "\n")
	if r.code != 0 || bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")) != nil {
		t.Fatalf("hash-password: exit %d, stdout %q, stderr %q; want a hash of the first line", r.code, r.stdout, r.stderr)
	}
	if c, _ := bcrypt.Cost([]byte(h)); c != 10 {
		t.Errorf("cost = %d, want 10", c)
	}
	if _, err := users.Parse("users.yaml", []byte("users:\n  - username: a\n    password_hash: \""+h+"\"\n")); err != nil {
		t.Errorf("printed hash is not accepted by the users file: %v", err)
	}
	for _, tc := range []struct {
		args  []string
		stdin string
		code  int
	}{
		{[]string{"s3cret"}, "pw-on-stdin\n", 2},
		{[]string{"--cost", "4"}, "pw-on-stdin\n", 2},
		{[]string{"--cost", "17"}, "pw-on-stdin\n", 2},
		{[]string{"--cost", "ten"}, "pw-on-stdin\n", 2},
		{nil, "\n", 1},                           // empty password
		{nil, strings.Repeat("a", 73) + "\n", 1}, // would be truncated by bcrypt
		{nil, strings.Repeat("a", 5000), 1},      // line too long
	} {
		r := run(t, append([]string{"hash-password"}, tc.args...), nil, tc.stdin)
		if r.code != tc.code || r.stdout != "" {
			t.Errorf("hash-password %q: exit %d, stdout %q; want exit %d and no hash", tc.args, r.code, r.stdout, tc.code)
		}
		if strings.Contains(r.stderr, strings.TrimSpace(tc.stdin)) && strings.TrimSpace(tc.stdin) != "" {
			t.Errorf("hash-password %q: stderr repeats the password: %q", tc.args, r.stderr)
		}
	}
}

func TestReadLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"pw one\nrest", "pw one"},
		{"pw\r\n", "pw"},
		{"pw", "pw"},
		{"", ""},
	} {
		got, err := readLine(strings.NewReader(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("readLine(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
		}
	}
	if _, err := readLine(strings.NewReader(strings.Repeat("a", maxLineBytes+1))); err == nil {
		t.Errorf("readLine(%d bytes) error = nil, want line too long", maxLineBytes+1)
	}
}

// TestCLIToken mints through the command and verifies what it printed with
// the gateway's verifier and the same secret.
func TestCLIToken(t *testing.T) {
	dir := copyFixture(t, "users")
	cfg := filepath.Join(dir, "config.yaml")
	environ := []string{"AUTHGATE_JWT_SECRET=" + testSecret}
	keys, err := token.NewKeySet(token.Key{ID: "k1", Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	v := token.NewVerifier(keys, token.Settings{Issuer: "authgate", Audience: "authgate", Leeway: 30 * time.Second}, token.Options{})
	for _, tc := range []struct {
		name      string
		args      []string
		wantSub   string
		wantRoles []string
		wantTTL   time.Duration
		wantVer   bool
	}{
		{"service, roles repeated and comma-separated", []string{"--subject", "billing", "--role", "writer, reader", "--role", "reader"}, "billing", []string{"reader", "writer"}, time.Hour, false},
		{"flags after --config, ttl", []string{"--config", cfg, "--ttl", "10m", "--subject", "billing", "--role", "reader"}, "billing", []string{"reader"}, 10 * time.Minute, false},
		{"user takes the file's roles", []string{"--subject", "Alice"}, "alice", []string{"admin"}, time.Hour, true},
		{"user, a subset of the file's roles", []string{"--subject", "alice", "--role", "admin", "--ttl", "24h"}, "alice", []string{"admin"}, 24 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"token", "--config", cfg}, tc.args...)
			before := time.Now()
			r := run(t, args, environ, "")
			if r.code != 0 {
				t.Fatalf("token %q: exit %d, stderr %q", tc.args, r.code, r.stderr)
			}
			c, err := v.Parse(context.Background(), strings.TrimSpace(r.stdout), token.TypeAccess)
			if err != nil {
				t.Fatalf("printed token does not verify: %v", err)
			}
			if c.Subject != tc.wantSub || !slices.Equal(c.Roles, tc.wantRoles) || (c.Ver != "") != tc.wantVer {
				t.Errorf("claims = sub %q roles %q ver %q; want %q %q ver set %v", c.Subject, c.Roles, c.Ver, tc.wantSub, tc.wantRoles, tc.wantVer)
			}
			if ttl := c.ExpiresAt.Sub(before); ttl < tc.wantTTL-time.Minute || ttl > tc.wantTTL+time.Minute {
				t.Errorf("token lives %s, want about %s", ttl, tc.wantTTL)
			}
			if strings.Contains(r.stderr, strings.TrimSpace(r.stdout)) {
				t.Error("the token is repeated on stderr")
			}
		})
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		code int
	}{
		{"no subject", []string{"--role", "r"}, environ, 2},
		{"extra argument", []string{"--subject", "x", "--role", "r", "extra"}, environ, 2},
		{"non-positive ttl", []string{"--subject", "x", "--role", "r", "--ttl", "-1s"}, environ, 2},
		{"bad ttl", []string{"--subject", "x", "--role", "r", "--ttl", "soon"}, environ, 2},
		{"role the policy cannot name", []string{"--subject", "x", "--role", "ops team"}, environ, 2},
		{"no secret", []string{"--subject", "x", "--role", "r"}, nil, 1},
		{"user given a role the file does not grant", []string{"--subject", "alice", "--role", "reader"}, environ, 1},
		{"ttl over the maximum", []string{"--subject", "x", "--role", "r", "--ttl", "24h1s"}, environ, 2},
		{"disabled user", []string{"--subject", "bob"}, environ, 1},
		{"service without roles", []string{"--subject", "billing"}, environ, 1},
	} {
		r := run(t, append([]string{"token", "--config", cfg}, tc.args...), tc.env, "")
		if r.code != tc.code || r.stdout != "" {
			t.Errorf("%s: token %q: exit %d, stdout %q; want exit %d and no token", tc.name, tc.args, r.code, r.stdout, tc.code)
		}
		if strings.Contains(r.stderr, testSecret) {
			t.Errorf("%s: stderr holds the signing secret", tc.name)
		}
	}
}

// Minting a token needs the signing keys only: a config with a browser
// sign-in provider mints without that provider's client secret, which
// serve still requires.
func TestCLITokenNeedsNoClientSecret(t *testing.T) {
	dir := copyFixture(t, "users")
	cfg := filepath.Join(dir, "config.yaml")
	extra := `
sessions:
  enabled: true
  external_url: https://app.example.com
issuers:
  - issuer: https://idp.example.com
    discovery: true
    audiences: [authgate]
    login:
      id: idp
      client_id: authgate
`
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	environ := []string{"AUTHGATE_JWT_SECRET=" + testSecret}
	r := run(t, []string{"token", "--config", cfg, "--subject", "billing", "--role", "reader"}, environ, "")
	if r.code != 0 || strings.Count(strings.TrimSpace(r.stdout), ".") != 2 {
		t.Fatalf("token: exit %d, stdout %q, stderr %q; want a token", r.code, r.stdout, r.stderr)
	}
	if _, _, err := config.LoadWithSecrets(cfg, environ); err == nil || !strings.Contains(err.Error(), config.ClientSecretVar("idp")) {
		t.Errorf("LoadWithSecrets without the client secret: %v, want an error naming %s", err, config.ClientSecretVar("idp"))
	}
}

// fakeProcess records what serve asks of the process.
type fakeProcess struct {
	procs int
	mu    sync.Mutex
	set   []int
	redis []Printer
}

func (p *fakeProcess) MaxProcs() int { return p.procs }

func (p *fakeProcess) SetMaxProcs(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set = append(p.set, n)
}

func (p *fakeProcess) SetRedisLogger(l Printer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redis = append(p.redis, l)
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestCLIServeProcess checks that serve changes process-wide settings only
// through the Process it is given: bcrypt gets processors of its own when
// there is a users file, and go-redis's logger is routed into the gateway's
// when there is Redis.
func TestCLIServeProcess(t *testing.T) {
	secret := "AUTHGATE_JWT_SECRET=" + testSecret
	tests := []struct {
		name      string
		fixture   string
		extra     string // appended to config.yaml
		noCommand bool   // run `authgate --config F`, which serves
		environ   []string
		code      int
		wantProcs []int
		wantRedis bool
	}{
		{name: "users file, default concurrency", fixture: "users", environ: []string{secret}, wantProcs: []int{6}},
		{name: "no command serves", fixture: "users", noCommand: true, environ: []string{secret}, wantProcs: []int{6}},
		{name: "users file, configured concurrency", fixture: "users", extra: "auth:\n  bcrypt_concurrency: 3\n", environ: []string{secret}, wantProcs: []int{7}},
		{name: "no users file", fixture: "ok", extra: "listen:\n  address: 127.0.0.1:0\n  admin_address: 127.0.0.1:0\n  shutdown_delay: 0s\n", environ: []string{secret}},
		{name: "redis", fixture: "users", environ: []string{secret, "AUTHGATE_REDIS_URL=redis://" + closedPort(t) + "/0"}, code: 1, wantProcs: []int{6}, wantRedis: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyFixture(t, tc.fixture)
			cfg := filepath.Join(dir, "config.yaml")
			if tc.extra != "" {
				data, err := os.ReadFile(cfg)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, cfg, string(data)+tc.extra)
			}
			// An ended context: serve starts and stops at once.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			p := &fakeProcess{procs: 4}
			var stdout, stderr strings.Builder
			args := []string{"serve", "--config", cfg}
			if tc.noCommand {
				args = args[1:]
			}
			code := Run(ctx, args, Options{
				Version: "test", Environ: tc.environ, Stdin: strings.NewReader(""),
				Stdout: &stdout, Stderr: &stderr, Process: p,
			})
			if code != tc.code {
				t.Fatalf("serve: exit %d, want %d\n%s", code, tc.code, stderr.String())
			}
			if !slices.Equal(p.set, tc.wantProcs) {
				t.Errorf("SetMaxProcs calls = %v, want %v", p.set, tc.wantProcs)
			}
			if (len(p.redis) == 1) != tc.wantRedis || len(p.redis) > 1 {
				t.Fatalf("SetRedisLogger calls = %d, want redis %v", len(p.redis), tc.wantRedis)
			}
			if tc.wantRedis {
				p.redis[0].Printf(context.Background(), "pool: %s", "redis-says-hi")
				if !strings.Contains(stderr.String(), `"component":"redis"`) || !strings.Contains(stderr.String(), "pool: redis-says-hi") {
					t.Errorf("go-redis lines do not reach the gateway's log:\n%s", stderr.String())
				}
			}
		})
	}
}
