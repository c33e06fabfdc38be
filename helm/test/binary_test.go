package helmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/testkit"

	"golang.org/x/crypto/bcrypt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// mountRoot is where the chart mounts every authgate file inside the pod.
const mountRoot = "/etc/authgate/"

// repoRoot is the root module (the authgate binary), relative to this module.
const repoRoot = "../.."

// Stand-ins for objects the chart only names (existingSecret,
// existingPolicyConfigMap). They follow the binary's file formats, so a
// scenario using them still proves that the rest of the config is accepted.
const (
	standInPolicy = "rules:\n  - id: everything\n    path: /**\n    authenticated: true\n"
	// A bcrypt (cost 10) hash; the password does not matter to `check`.
	standInUsers = "users:\n  - username: stand-in\n    password_hash: \"$2a$10$BIfH2WPhKouo5m5j0Z8J4ez15VJVMpwEg65gGuFKdys01C77s6v4C\"\n    roles: [user]\n    disabled: false\n"
	standInKeys  = "keys:\n  - name: stand-in\n    sha256: 1976a98d24676c9f471334d09646bc43171ad9d548ac0347af0d280b9c15bb72\n    roles: [reader]\n"
	// 40 bytes: above the binary's 32-byte minimum for the signing secret.
	dummyJWTSecret = "dummy-signing-secret-for-check-000000000"
	dummyRedisPass = "dummy-redis-password"
)

// buildAuthgate builds the authgate binary from the repository root into a
// temporary directory and returns its path, as every suite of the module
// builds it (testkit.Build).
func buildAuthgate(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := testkit.Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// podFiles are the files the authgate container sees, keyed by their path
// below mountRoot (config/config.yaml, policy/policy.yaml, ...).
type podFiles struct {
	files     map[string]string
	jwtSecret string // the signing secret the pod would get
}

// collectPodFiles extracts config.yaml, the policy, the users and keys files
// and the JWT secret from the rendered objects, using stand-ins for the
// objects the chart references but does not create.
func collectPodFiles(t *testing.T, objs []object) podFiles {
	t.Helper()
	cm := one[corev1.ConfigMap](t, objs, fullname+"-config")
	cfg, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml", cm.Name)
	}
	pf := podFiles{files: map[string]string{"config/config.yaml": cfg}, jwtSecret: dummyJWTSecret}

	pf.files["policy/policy.yaml"] = standInPolicy
	if p := findNamed[corev1.ConfigMap](objs, fullname+"-policy"); p != nil {
		content, ok := p.Data["policy.yaml"]
		if !ok {
			t.Fatalf("ConfigMap %s has no policy.yaml", p.Name)
		}
		pf.files["policy/policy.yaml"] = content
	}
	var rendered renderedConfig
	if err := yaml.Unmarshal([]byte(cfg), &rendered); err != nil {
		t.Fatalf("config.yaml does not parse: %v\n%s", err, cfg)
	}
	optional := []struct {
		configured bool
		secret     string
		key        string
		path       string
		standIn    string
	}{
		{rendered.UsersFile != "", fullname + "-users", "users.yaml", "users/users.yaml", standInUsers},
		{rendered.APIKeysFile != "", fullname + "-api-keys", "keys.yaml", "keys/keys.yaml", standInKeys},
	}
	for _, o := range optional {
		if !o.configured {
			continue
		}
		pf.files[o.path] = o.standIn
		if s := findNamed[corev1.Secret](objs, o.secret); s != nil {
			pf.files[o.path] = secretValue(t, s, o.key)
		}
	}
	if s := findNamed[corev1.Secret](objs, fullname+"-jwt"); s != nil {
		pf.jwtSecret = secretValue(t, s, "jwt-secret")
	}
	return pf
}

// secretValue returns one key of a Secret from data (already base64-decoded
// by the typed decoding) or stringData.
func secretValue(t *testing.T, s *corev1.Secret, key string) string {
	t.Helper()
	if v, ok := s.StringData[key]; ok {
		return v
	}
	if v, ok := s.Data[key]; ok {
		return string(v)
	}
	t.Fatalf("Secret %s has no key %q", s.Name, key)
	return ""
}

// findNamed returns the object of kind T named name, or nil.
func findNamed[T any](objs []object, name string) *T {
	for _, o := range objs {
		if v, ok := o.Obj.(*T); ok && o.Name == name {
			return v
		}
	}
	return nil
}

// writePodFiles lays the files out below dir as the pod mounts them below
// mountRoot, rewriting the absolute mount paths in config.yaml to dir.
func writePodFiles(t *testing.T, dir string, pf podFiles) {
	t.Helper()
	for rel, content := range pf.files {
		if rel == "config/config.yaml" {
			content = strings.ReplaceAll(content, mountRoot, dir+"/")
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// baseEnv is the test process environment without any AUTHGATE_ variable,
// so that the host cannot influence what `check` sees.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUTHGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

// checkArgs are the arguments of `authgate check` for the files below dir.
func checkArgs(dir string) []string {
	return []string{"check", "--strict", "--config", filepath.Join(dir, "config", "config.yaml")}
}

// execCheck runs `authgate check` on the files below dir and returns its
// combined output.
func execCheck(bin, dir string, env []string) (string, error) {
	return execCheckConfig(bin, filepath.Join(dir, "config", "config.yaml"), env)
}

// execCheckConfig runs `authgate check --strict --config cfg` and returns its
// combined output.
func execCheckConfig(bin, cfg string, env []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "check", "--strict", "--config", cfg)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// runCheck runs `authgate check --strict --config dir/config/config.yaml`
// and returns its output; it fails the test unless it exits 0.
func runCheck(t *testing.T, bin, dir string, env []string) string {
	t.Helper()
	out, err := execCheck(bin, dir, env)
	if err != nil {
		var names []string
		for _, kv := range env {
			if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AUTHGATE_") {
				names = append(names, k)
			}
		}
		t.Fatalf("authgate %s (env %v): %v\n%s", strings.Join(checkArgs(dir), " "), names, err, out)
	}
	t.Logf("authgate check: %s", strings.TrimSpace(out))
	return out
}

// modeConfig is the part of config.yaml that selects the binary's mode.
type modeConfig struct {
	Mode        string `json:"mode"`
	ForwardAuth struct {
		Path         string   `json:"path"`
		TrustedPeers []string `json:"trusted_peers"`
	} `json:"forward_auth"`
	Upstream struct {
		URL string `json:"url"`
	} `json:"upstream"`
}

// checkBinaryMode: the chart's forward-auth mode must run the binary's
// forward-auth decision endpoint, which the binary refuses to start without
// trusted peers (otherwise any client could choose the authorized path with
// X-Original-URI). The other chart modes proxy to the application.
func checkBinaryMode(t *testing.T, cfgYAML string, chartMode string) {
	t.Helper()
	var mc modeConfig
	if err := yaml.Unmarshal([]byte(cfgYAML), &mc); err != nil {
		t.Fatalf("config.yaml does not parse: %v", err)
	}
	switch chartMode {
	case "forward-auth":
		if mc.Mode != "forward-auth" && mc.Mode != "both" {
			t.Errorf("forward-auth chart mode renders config mode %q, want forward-auth (or both)", mc.Mode)
		}
		if len(mc.ForwardAuth.TrustedPeers) == 0 {
			t.Errorf("forward-auth chart mode renders no forward_auth.trusted_peers; the binary refuses to start without them")
		}
	default:
		if mc.Mode != "" && mc.Mode != "proxy" && mc.Mode != "both" {
			t.Errorf("%s chart mode renders config mode %q, which never proxies to the application", chartMode, mc.Mode)
		}
	}
}

func TestRenderedConfigAcceptedByBinary(t *testing.T) {
	bin := buildAuthgate(t)
	known := binaryEnvNames(t)
	// The harness must be able to fail: values the binary rejects are
	// rejected through the same extraction and layout.
	t.Run("rejected values fail the check", func(t *testing.T) {
		t.Parallel()
		rejected := []struct {
			name string
			args []string
			want string
		}{
			{"unknown config key", []string{"--set", "config.upstreem.url=http://x"}, "upstreem"},
			{"leeway above a minute", []string{"--set", "config.jwt.leeway=5m"}, "jwt.leeway"},
			{"users file in the wrong format", []string{"--set-string", "users.content=- alice", "--set", "jwt.secret=" + dummyJWTSecret}, "users.yaml"},
		}
		for _, tc := range rejected {
			t.Run(tc.name, func(t *testing.T) {
				pf := collectPodFiles(t, render(t, tc.args...))
				dir := t.TempDir()
				writePodFiles(t, dir, pf)
				out, err := execCheck(bin, dir, append(baseEnv(), "AUTHGATE_JWT_SECRET="+pf.jwtSecret))
				if err == nil {
					t.Fatalf("authgate check accepted values %v, want an error mentioning %q:\n%s", tc.args, tc.want, out)
				}
				if !strings.Contains(out, tc.want) {
					t.Errorf("authgate check output lacks %q:\n%s", tc.want, out)
				}
			})
		}
	})
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			objs := render(t, sc.args...)
			pf := collectPodFiles(t, objs)
			checkBinaryMode(t, pf.files["config/config.yaml"], sc.mode)

			t.Run("secret from AUTHGATE_JWT_SECRET", func(t *testing.T) {
				dir := t.TempDir()
				writePodFiles(t, dir, pf)
				out := runCheck(t, bin, dir, append(baseEnv(), "AUTHGATE_JWT_SECRET="+pf.jwtSecret))
				checkCheckOutput(t, out, pf)
			})

			// The pod's own environment, with the mount paths rewritten:
			// proves that the variable names and files the chart sets are
			// the ones the binary reads.
			dep := findNamed[appsv1.Deployment](objs, fullname)
			if dep == nil {
				return // sidecar-only: the user's chart renders the container
			}
			gw := container(t, &dep.Spec.Template.Spec, "authgate")
			t.Run("pod environment", func(t *testing.T) {
				dir := t.TempDir()
				files := podFiles{files: maps.Clone(pf.files), jwtSecret: pf.jwtSecret}
				env := baseEnv()
				for _, e := range gw.Env {
					if !strings.HasPrefix(e.Name, "AUTHGATE_") {
						continue
					}
					if !slices.Contains(known, e.Name) {
						t.Errorf("the chart sets %s, which the binary does not read (it reads %v)", e.Name, known)
					}
					if e.ValueFrom != nil {
						t.Errorf("%s comes from valueFrom; the chart mounts secrets as files", e.Name)
						continue
					}
					v := e.Value
					if rel, ok := strings.CutPrefix(v, mountRoot); ok {
						switch e.Name {
						case "AUTHGATE_JWT_SECRET_FILE":
							files.files[rel] = pf.jwtSecret
						case "AUTHGATE_REDIS_PASSWORD_FILE", "AUTHGATE_REDIS_SENTINEL_PASSWORD_FILE":
							files.files[rel] = dummyRedisPass
						}
						v = filepath.Join(dir, filepath.FromSlash(rel))
					}
					env = append(env, e.Name+"="+v)
				}
				writePodFiles(t, dir, files)
				if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "AUTHGATE_JWT_SECRET") }) {
					t.Skip("the chart passes no JWT secret (jwt.enabled false)")
				}
				out := runCheck(t, bin, dir, env)
				checkCheckOutput(t, out, pf)
			})
		})
	}
}

// checkCheckOutput: `check` reports the files it loaded.
func checkCheckOutput(t *testing.T, out string, pf podFiles) {
	t.Helper()
	if !strings.Contains(out, "ok: ") {
		t.Errorf("authgate check output lacks the ok line:\n%s", out)
	}
	if _, ok := pf.files["users/users.yaml"]; ok && !strings.Contains(out, " users") {
		t.Errorf("authgate check did not load the users file:\n%s", out)
	}
	if _, ok := pf.files["keys/keys.yaml"]; ok && !strings.Contains(out, " api keys") {
		t.Errorf("authgate check did not load the API keys file:\n%s", out)
	}
}

// envSourceFile returns the Go file of the root module that declares the Env
// struct: config.go, or a file of internal/config once the configuration
// moves there.
func envSourceFile(t *testing.T) (string, []byte) {
	t.Helper()
	candidates := []string{filepath.Join(repoRoot, "config.go")}
	more, err := filepath.Glob(filepath.Join(repoRoot, "internal", "config", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	candidates = append(candidates, more...)
	for _, path := range candidates {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if strings.Contains(string(src), "type Env struct") {
			return path, src
		}
	}
	t.Fatalf("no file of %v declares type Env struct; update this test", candidates)
	return "", nil
}

// binaryEnvNames returns the AUTHGATE_* variables the binary reads: the env
// tags of the Env struct in the root module, with the prefix ReadEnv passes
// to the env parser.
func binaryEnvNames(t *testing.T) []string {
	t.Helper()
	path, src := envSourceFile(t)
	const prefix = "AUTHGATE_"
	if !strings.Contains(string(src), `Prefix: "`+prefix+`"`) {
		t.Fatalf("%s: ReadEnv no longer uses the prefix %q; update this test", path, prefix)
	}
	f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Env" {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, field := range st.Fields.List {
			if field.Tag == nil {
				continue
			}
			tag, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				t.Fatalf("%s: tag %s: %v", path, field.Tag.Value, err)
			}
			name, _, _ := strings.Cut(reflect.StructTag(tag).Get("env"), ",")
			if name != "" {
				names = append(names, prefix+name)
			}
		}
		return false
	})
	for _, want := range []string{"AUTHGATE_JWT_SECRET_FILE", "AUTHGATE_REDIS_URL", "AUTHGATE_REDIS_PASSWORD_FILE"} {
		if !slices.Contains(names, want) {
			t.Fatalf("%s: Env struct has no %s (found %v); the chart sets it", path, want, names)
		}
	}
	return names
}

// TestChartEnvNamesReadByBinary renders every AUTHGATE_* variable the chart
// can set (JWT secret file, Redis URL and password file) and checks that the
// binary reads each one: a renamed variable would otherwise be silently
// ignored and, for the signing secret, stop the pods at startup.
func TestChartEnvNamesReadByBinary(t *testing.T) {
	known := binaryEnvNames(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"one node", []string{"--set", "redis.url=rediss://redis.data.svc:6380/0", "--set", "redis.existingSecret=redis-auth"},
			[]string{"AUTHGATE_JWT_SECRET_FILE", "AUTHGATE_REDIS_URL", "AUTHGATE_REDIS_PASSWORD_FILE"}},
		{"sentinel", []string{"--set", "redis.sentinel.masterName=mymaster", "--set", "redis.sentinel.addresses={s0:26379}",
			"--set", "redis.existingSecret=redis-auth", "--set", "redis.sentinel.existingSecret=sentinel-auth"},
			[]string{"AUTHGATE_JWT_SECRET_FILE", "AUTHGATE_REDIS_PASSWORD_FILE", "AUTHGATE_REDIS_SENTINEL_PASSWORD_FILE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, append([]string{"--set", "jwt.secret=" + dummyJWTSecret}, tc.args...)...)
			dep := one[appsv1.Deployment](t, objs, fullname)
			gw := container(t, &dep.Spec.Template.Spec, "authgate")
			var set []string
			for _, e := range gw.Env {
				if strings.HasPrefix(e.Name, "AUTHGATE_") {
					set = append(set, e.Name)
					if !slices.Contains(known, e.Name) {
						t.Errorf("the chart sets %s, which the binary does not read (it reads %v)", e.Name, known)
					}
				}
			}
			for _, want := range tc.want {
				if !slices.Contains(set, want) {
					t.Errorf("the authgate container does not set %s (sets %v)", want, set)
				}
			}
			// The secrets themselves are never put in plain env values.
			for _, e := range gw.Env {
				switch e.Name {
				case "AUTHGATE_JWT_SECRET", "AUTHGATE_REDIS_PASSWORD", "AUTHGATE_REDIS_SENTINEL_PASSWORD", "AUTHGATE_JWT_PREVIOUS_SECRETS":
					t.Errorf("the chart sets %s directly; mount it and use %s_FILE", e.Name, e.Name)
				}
			}
		})
	}
}

// TestEchoServerDemoCredentials: the credentials the echo-server example
// documents in its header (and the chart README's quick start) are the ones
// its users and keys files accept.
func TestEchoServerDemoCredentials(t *testing.T) {
	const (
		password = "correct horse battery staple"
		apiKey   = "agk_demo_3f9c1e7a5b2d4c6e8f0a1b2c3d4e5f60"
		minCost  = 10 // the binary rejects lower bcrypt costs
	)
	example := filepath.Join(chartDir, "examples", "echo-server.yaml")
	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{password, apiKey} {
		if !strings.Contains(string(raw), doc) {
			t.Fatalf("%s no longer documents %q; update this test", example, doc)
		}
	}
	objs := render(t, "-f", example)
	pf := collectPodFiles(t, objs)
	var users struct {
		Users []struct {
			Username     string   `json:"username"`
			PasswordHash string   `json:"password_hash"`
			Roles        []string `json:"roles"`
			Disabled     bool     `json:"disabled"`
		} `json:"users"`
	}
	if err := yaml.UnmarshalStrict([]byte(pf.files["users/users.yaml"]), &users); err != nil {
		t.Fatalf("users.yaml: %v", err)
	}
	if len(users.Users) == 0 {
		t.Fatal("users.yaml holds no users")
	}
	for _, u := range users.Users {
		t.Run("user "+u.Username, func(t *testing.T) {
			cost, err := bcrypt.Cost([]byte(u.PasswordHash))
			if err != nil {
				t.Fatalf("bcrypt.Cost(%q): %v", u.PasswordHash, err)
			}
			if cost < minCost {
				t.Errorf("bcrypt cost = %d, want at least %d", cost, minCost)
			}
			if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)); err != nil {
				t.Errorf("bcrypt.CompareHashAndPassword(hash, %q) = %v; the documented password does not log in", password, err)
			}
		})
	}
	type key struct {
		Name    string   `json:"name"`
		SHA256  string   `json:"sha256"`
		Roles   []string `json:"roles"`
		Expires string   `json:"expires"`
	}
	var keys struct {
		Keys []key `json:"keys"`
	}
	if err := yaml.UnmarshalStrict([]byte(pf.files["keys/keys.yaml"]), &keys); err != nil {
		t.Fatalf("keys.yaml: %v", err)
	}
	sum := sha256.Sum256([]byte(apiKey))
	want := hex.EncodeToString(sum[:])
	if !slices.ContainsFunc(keys.Keys, func(k key) bool { return k.SHA256 == want }) {
		t.Errorf("keys.yaml has no key with sha256 %s (the digest of the documented key)", want)
	}
}
