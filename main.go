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
//
// main only starts the program: the signal context, the version and the
// exit code. Every command lives in internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/authgate/authgate/internal/cli"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, version, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
