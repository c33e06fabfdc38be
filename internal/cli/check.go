package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/policy"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// checked holds what `check` and `explain` load: the config and the files
// it names, with every error found.
type checked struct {
	cfg    *config.Config
	policy *policy.Set
	keys   *apikey.Set
	users  *users.Set
	roles  []string // roles held by some key or user
}

func loadForCheck(cfgFlag string, environ []string) (*checked, error) {
	e, err := config.ReadEnv(environ)
	if err != nil {
		return nil, err
	}
	path, err := configPath(cfgFlag, e)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	c := &checked{cfg: cfg}
	var errs []error
	if data, err := os.ReadFile(cfg.PolicyFile); err != nil {
		errs = append(errs, fmt.Errorf("policy: %w", err))
	} else if c.policy, err = policy.Load(cfg.PolicyFile, data); err != nil {
		errs = append(errs, err)
	}
	if cfg.APIKeysFile != "" {
		if data, err := os.ReadFile(cfg.APIKeysFile); err != nil {
			errs = append(errs, fmt.Errorf("api keys: %w", err))
		} else if c.keys, err = apikey.Parse(cfg.APIKeysFile, data); err != nil {
			errs = append(errs, err)
		} else {
			c.roles = append(c.roles, c.keys.Roles()...)
		}
	}
	if cfg.UsersFile != "" {
		if data, err := os.ReadFile(cfg.UsersFile); err != nil {
			errs = append(errs, fmt.Errorf("users: %w", err))
		} else if set, err := users.Parse(cfg.UsersFile, data); err != nil {
			errs = append(errs, err)
		} else {
			c.users = set
			c.roles = append(c.roles, set.Roles()...)
		}
	}
	// Secrets are checked when present, so `check` can run in CI without
	// them and in the pod with them.
	if e.JWTSecret != "" || e.JWTSecretFile != "" {
		if _, err := e.ResolveSecrets(cfg.JWT.KeyID); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

func cmdCheck(args, environ []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stdout)
	cfgFlag := fs.String("config", "", "config file (default $AUTHGATE_CONFIG)")
	strict := fs.Bool("strict", false, "fail on lint warnings too")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := loadForCheck(*cfgFlag, environ)
	if err != nil {
		return err
	}
	var known []string
	if c.cfg.APIKeysFile != "" || c.cfg.UsersFile != "" {
		known = c.roles
		if known == nil {
			known = []string{}
		}
	}
	warnings := c.policy.Lint(known)
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %s:%s\n", c.cfg.PolicyFile, strings.TrimPrefix(w.String(), "line "))
	}
	for _, t := range c.policy.RunTests() {
		fmt.Fprintf(stdout, "test: %s:%d: %s: pass (%s, rule %q)\n", c.cfg.PolicyFile, t.Line, t.Name, allowWord(t.Got.Allow), t.Got.RuleID)
	}
	fmt.Fprintf(stdout, "ok: %s: policy %s (%d rules, hash %s)", c.cfg.Path, c.cfg.PolicyFile, c.policy.Len(), c.policy.Hash())
	if c.keys != nil {
		fmt.Fprintf(stdout, ", %d api keys", c.keys.Len())
	}
	if c.users != nil {
		fmt.Fprintf(stdout, ", %d users", c.users.Len())
	}
	fmt.Fprintln(stdout)
	if *strict && len(warnings) > 0 {
		return fmt.Errorf("%d lint warnings (--strict)", len(warnings))
	}
	return nil
}

func cmdExplain(args, environ []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stdout)
	cfgFlag := fs.String("config", "", "config file (default $AUTHGATE_CONFIG)")
	var roles stringList
	fs.Var(&roles, "role", "a role of the caller (repeatable)")
	anon := fs.Bool("anonymous", false, "explain for a caller with no credentials")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w: explain needs METHOD PATH", errUsage)
	}
	if *anon && len(roles) > 0 {
		return fmt.Errorf("%w: --anonymous and --role exclude each other", errUsage)
	}
	c, err := loadForCheck(*cfgFlag, environ)
	if err != nil {
		return err
	}
	req := policy.Request{Method: fs.Arg(0), Path: fs.Arg(1), Authenticated: !*anon, Roles: normalizeRoles(roles)}
	fmt.Fprintf(stdout, "policy: %s (hash %s)\n", c.cfg.PolicyFile, c.policy.Hash())
	fmt.Fprint(stdout, c.policy.Explain(req).String())
	return nil
}

func cmdGenKey(args []string, stdout io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("%w: gen-key needs NAME and at least one ROLE", errUsage)
	}
	key := apikey.Generate()
	fmt.Fprintf(stdout, "# Give this key to the client once; it is not stored anywhere:\n# %s\n", key)
	fmt.Fprintf(stdout, "- name: %s\n  sha256: %s\n  roles: [%s]\n", args[0], apikey.Digest(key), strings.Join(args[1:], ", "))
	return nil
}

func normalizeRoles(r []string) []string { return token.NormalizeRoles(r) }

func allowWord(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// splitConfigFlag removes --config F (or --config=F) from args, for
// subcommands whose other flags are parsed elsewhere.
func splitConfigFlag(args []string) (cfg string, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config" || a == "-config":
			if i+1 < len(args) {
				cfg = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--config="), strings.HasPrefix(a, "-config="):
			cfg = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	return cfg, rest
}

// cmdToken mints an access token with the configured signing key. It is an
// admin tool: whoever can run it holds the signing secret anyway.
func cmdToken(args, environ []string, stdout, stderr io.Writer) error {
	cfgFlag, rest := splitConfigFlag(args)
	cfg, sec, err := loadConfigAndSecrets(cfgFlag, environ)
	if err != nil {
		return err
	}
	keys, err := sec.KeySet(cfg)
	if err != nil {
		return err
	}
	var set *users.Set
	if cfg.UsersFile != "" {
		data, err := os.ReadFile(cfg.UsersFile)
		if err != nil {
			return err
		}
		if set, err = users.Parse(cfg.UsersFile, data); err != nil {
			return err
		}
	}
	signer := token.NewSigner(keys, token.Settings{Issuer: cfg.JWT.Issuer, Audience: cfg.JWT.Audience, Leeway: cfg.JWT.Leeway}, token.Options{})
	return issuer.RunToken(rest, signer, set, stdout, stderr)
}
