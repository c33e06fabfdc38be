// Command authgate is an authentication and authorization gateway that runs
// beside an unmodified app: it authenticates each request (a bearer JWT or
// an API key), authorizes it against a per-path role policy, and proxies it
// with identity headers to one upstream.
//
// Usage:
//
//	authgate [serve] [--config F] [--demo-upstream ADDR]
//	authgate check [--config F] [--strict]
//	authgate explain [--config F] [--role R ...] [--anonymous] METHOD PATH
//	authgate gen-key NAME ROLE...
//	authgate version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/authgate/authgate/authn/users"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks command-line mistakes; run prints usage for them.
var errUsage = errors.New("usage")

// run dispatches a subcommand and returns the process exit code.
func run(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, args, environ, stderr)
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

// configPath returns --config, else AUTHGATE_CONFIG.
func configPath(flagValue string, e Env) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if e.Config != "" {
		return e.Config, nil
	}
	return "", fmt.Errorf("%w: no config file: pass --config or set AUTHGATE_CONFIG", errUsage)
}
