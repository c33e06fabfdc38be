package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/policy"
)

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
	if e.JWTSecret != "" || e.JWTSecretFile != "" || e.JWTSigningKeyFile != "" {
		if sec, err := e.ResolveSecrets(cfg.JWT.KeyID); err != nil {
			errs = append(errs, err)
		} else if err := cfg.CheckRedis(sec); err != nil {
			errs = append(errs, err)
		} else if _, err := sec.KeySet(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

func newCheckCmd(o *Options) *cobra.Command {
	var cfgFlag string
	var strict bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the config, policy, users and keys files",
		Long: `Validate the config file and the policy, users and keys files it names,
listing every error with file and line; run the policy's inline tests and
print lint warnings. The signing secret is checked when it is set, so check
runs in CI without it and in the pod with it.

Exits 1 when a file is invalid or a test fails, and with --strict when there
are warnings.`,
		Example: "  authgate check --config config.yaml --strict",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.OutOrStdout(), cfgFlag, strict, o.Environ)
		},
	}
	addConfigFlag(cmd, &cfgFlag)
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on lint warnings too")
	return cmd
}

func runCheck(stdout io.Writer, cfgFlag string, strict bool, environ []string) error {
	c, err := loadForCheck(cfgFlag, environ)
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
	issuers := []string{c.cfg.JWT.Issuer}
	for _, is := range c.cfg.Issuers {
		issuers = append(issuers, is.Issuer)
	}
	warnings := c.policy.LintWith(policy.LintOptions{KnownRoles: known, Issuers: issuers})
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %s:%s\n", c.cfg.PolicyFile, strings.TrimPrefix(w.String(), "line "))
	}
	// Odd role names of the users and keys files load for one release, so
	// an upgrade still starts, and are never granted; say so here.
	var loaded []string
	loaded = append(loaded, c.keys.Warnings()...)
	loaded = append(loaded, c.users.Warnings()...)
	for _, w := range loaded {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	warningCount := len(warnings) + len(loaded)
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
	if strict && warningCount > 0 {
		return fmt.Errorf("%d lint warnings (--strict)", warningCount)
	}
	return nil
}

// explainFlags are the flags of explain.
type explainFlags struct {
	config    string
	roles     []string
	anonymous bool
	exitCode  bool
	// The rest of the inline tests' vocabulary.
	issuer, authMethod, keyName, subject, email, clientIP, host, claims string
	scopes                                                              []string
}

func newExplainCmd(o *Options) *cobra.Command {
	var f explainFlags
	cmd := &cobra.Command{
		Use:   "explain METHOD PATH",
		Short: "Show how the policy decides a request",
		Long: `Show how the policy decides a request: the canonical path, the winning rule
with its line, the decision and its reason, and why every other rule lost.
The caller is authenticated with the --role roles (none by default), or
--anonymous.

With --exit-code, a denied request exits 3 (an allowed one 0), for scripts;
without it explain exits 0 whatever the decision.`,
		Example: `  authgate explain --config config.yaml --role admin GET /admin/users
  authgate explain GET /public/x --anonymous --exit-code`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("explain needs METHOD and PATH, got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExplain(cmd.OutOrStdout(), f, args[0], args[1], o.Environ)
		},
	}
	addConfigFlag(cmd, &f.config)
	cmd.Flags().StringArrayVar(&f.roles, "role", nil, "a `ROLE` of the caller (repeatable or comma-separated)")
	cmd.Flags().BoolVar(&f.anonymous, "anonymous", false, "explain for a caller with no credentials")
	cmd.Flags().BoolVar(&f.exitCode, "exit-code", false, "exit 3 when the request would be denied")
	cmd.Flags().StringVar(&f.issuer, "issuer", "", "the caller's token `ISSUER`")
	cmd.Flags().StringVar(&f.authMethod, "auth-method", "", "how the caller authenticated (`METHOD`): jwt, apikey, external or session")
	cmd.Flags().StringVar(&f.keyName, "key-name", "", "the caller's API key `NAME`")
	cmd.Flags().StringVar(&f.subject, "subject", "", "the caller's `SUBJECT`")
	cmd.Flags().StringArrayVar(&f.scopes, "scope", nil, "a `SCOPE` of the caller's token (repeatable)")
	cmd.Flags().StringVar(&f.email, "email", "", "the caller's verified `EMAIL`")
	cmd.Flags().StringVar(&f.clientIP, "client-ip", "", "the client `ADDRESS`")
	cmd.Flags().StringVar(&f.host, "host", "", "the request's `HOST`")
	cmd.Flags().StringVar(&f.claims, "claims", "", "the caller's token claims as a `JSON` object")
	return cmd
}

func runExplain(stdout io.Writer, f explainFlags, method, path string, environ []string) error {
	if f.anonymous && len(f.roles) > 0 {
		return usagef("--anonymous and --role exclude each other")
	}
	if f.anonymous && (f.issuer != "" || f.authMethod != "" || f.keyName != "" || f.subject != "" ||
		len(f.scopes) > 0 || f.email != "" || f.claims != "") {
		return usagef("--anonymous excludes the credential flags (--issuer, --auth-method, --key-name, --subject, --scope, --email, --claims)")
	}
	roles, err := roleArgs(f.roles)
	if err != nil {
		return err
	}
	c, err := loadForCheck(f.config, environ)
	if err != nil {
		return err
	}
	who := policy.Caller{Anonymous: f.anonymous, Roles: token.NormalizeRoles(roles), Issuer: f.issuer, AuthMethod: f.authMethod,
		KeyName: f.keyName, Subject: f.subject, Scopes: f.scopes, Email: f.email, ClientIP: f.clientIP, Host: f.host}
	if f.claims != "" {
		if err := json.Unmarshal([]byte(f.claims), &who.Claims); err != nil || who.Claims == nil {
			return usagef("--claims must be a JSON object: %v", err)
		}
	}
	req, err := who.Request(method, "/")
	if err != nil {
		return &usageError{err: err}
	}
	// The path is explained as given: Explain reports a rejected one.
	req.Path = path
	e := c.policy.Explain(req)
	fmt.Fprintf(stdout, "policy: %s (hash %s)\n", c.cfg.PolicyFile, c.policy.Hash())
	fmt.Fprint(stdout, e.String())
	if f.exitCode && !e.Decision.Allow {
		return errDenied
	}
	return nil
}

// roleArgs splits role values on commas (no role name contains one) and
// checks each name against the policy's role grammar: a role no rule can
// name would never match, so it is refused rather than silently useless.
func roleArgs(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, r := range strings.Split(v, ",") {
			if r = strings.TrimSpace(r); r == "" {
				continue
			}
			if err := policy.CheckRoleName(r); err != nil {
				return nil, &usageError{err: err}
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func allowWord(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}
