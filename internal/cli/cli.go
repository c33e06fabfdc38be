// Package cli is every authgate subcommand: it parses the command line,
// runs the command and maps its outcome to an exit code.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/config"
)

// errUsage marks command-line mistakes; Run prints usage for them.
var errUsage = errors.New("usage")

// Run dispatches a subcommand and returns the process exit code.
func Run(ctx context.Context, version string, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, version, args, environ, stderr)
	case "check":
		err = cmdCheck(args, environ, stdout)
	case "explain":
		err = cmdExplain(args, environ, stdout)
	case "gen-key":
		err = cmdGenKey(args, stdout)
	case "hash-password":
		err = users.RunHashPassword(args, stdin, stdout, stderr)
	case "token":
		err = cmdToken(args, environ, stdout, stderr)
	case "version":
		_, err = fmt.Fprintf(stdout, "authgate %s\n", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "authgate %s: %v\n", cmd, err)
	if errors.Is(err, errUsage) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	return 1
}

const usage = `usage:
  authgate [serve] [--config FILE] [--demo-upstream ADDR]   run the gateway
  authgate check [--config FILE] [--strict]                  validate config, policy, users and keys
  authgate explain [--config FILE] [--role R]... [--anonymous] METHOD PATH
                                                             show how the policy decides a request
  authgate gen-key NAME ROLE...                              print a new API key and its keys-file entry
  authgate hash-password [--cost N] < password               print a bcrypt hash for the users file
  authgate token [--config FILE] --subject NAME [--role R]... [--ttl D]
                                                             mint an access token (admin tool)
  authgate version                                           print the version

The config file is --config, else $AUTHGATE_CONFIG. Secrets come from the
environment: AUTHGATE_JWT_SECRET (or AUTHGATE_JWT_SECRET_FILE), at least 32 bytes.
`

// configPath returns --config, else AUTHGATE_CONFIG; naming neither is a
// usage error.
func configPath(flagValue string, e config.Env) (string, error) {
	p, err := config.ResolvePath(flagValue, e)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errUsage, err)
	}
	return p, nil
}

// loadConfigAndSecrets is config.LoadWithSecrets with a missing config
// reported as a usage error.
func loadConfigAndSecrets(cfgFlag string, environ []string) (*config.Config, config.Secrets, error) {
	cfg, sec, err := config.LoadWithSecrets(cfgFlag, environ)
	if errors.Is(err, config.ErrNoConfig) {
		err = fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, sec, err
}
