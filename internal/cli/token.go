package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/config"
)

// tokenFlags are the flags of token.
type tokenFlags struct {
	config  string
	subject string
	roles   []string
	ttl     time.Duration
}

func newTokenCmd(o *Options) *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "token --subject NAME [--role R]... [--ttl D]",
		Short: "Mint an access token (admin tool)",
		Long: `Mint an access token with the configured signing key and print it; the
subject, roles and expiry go to stderr. It is an admin tool: whoever can run
it holds the signing secret anyway.

For a user of the users file the token carries the user's roles and dies
with a password change, a disable or a delete; --role is refused. Any other
subject is a service, which needs at least one --role.`,
		Example: "  authgate token --config config.yaml --subject billing --role reader --ttl 10m",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runToken(cmd, f, o.Environ)
		},
	}
	addConfigFlag(cmd, &f.config)
	cmd.Flags().StringVar(&f.subject, "subject", "", "the user (of the users file) or service `NAME` the token is for (required)")
	cmd.Flags().StringArrayVar(&f.roles, "role", nil, "a `ROLE` of a service token (repeatable or comma-separated); users take theirs from the users file")
	cmd.Flags().DurationVar(&f.ttl, "ttl", issuer.DefaultAdminTokenTTL, "token lifetime, at most "+issuer.MaxAdminTokenTTL.String())
	return cmd
}

func runToken(cmd *cobra.Command, f tokenFlags, environ []string) error {
	if f.subject == "" {
		return usagef("--subject is required")
	}
	if f.ttl <= 0 || f.ttl > issuer.MaxAdminTokenTTL {
		return usagef("--ttl must be positive and at most %s, got %s (use an API key for a long-lived credential)", issuer.MaxAdminTokenTTL, f.ttl)
	}
	roles, err := roleArgs(f.roles)
	if err != nil {
		return err
	}
	// Only the signing keys: minting needs neither the identity
	// providers' client secrets nor the state store.
	cfg, sec, err := usageOnNoConfig(config.LoadWithSigningSecrets(f.config, environ))
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
	raw, c, err := issuer.MintFor(signer, set, f.subject, roles, f.ttl)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "subject %s, roles [%s], expires %s\n", c.Subject, strings.Join(c.Roles, " "), c.ExpiresAt.Time.UTC().Format(time.RFC3339))
	_, err = fmt.Fprintln(cmd.OutOrStdout(), raw)
	return err
}
