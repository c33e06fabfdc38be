// Command authgate is an authentication and authorization gateway that runs
// beside an unmodified app: it authenticates each request (a bearer JWT or
// an API key), authorizes it against a per-path role policy, and proxies it
// with identity headers to one upstream.
//
// Usage:
//
//	authgate [serve] [--config F] [--demo-upstream ADDR]
//	authgate check [--config F] [--strict]
//	authgate explain [--config F] [--role R]... [--anonymous] [--exit-code] METHOD PATH
//	authgate gen-key NAME ROLE...
//	authgate hash-password [--cost N] < password
//	authgate token [--config F] --subject NAME [--role R]... [--ttl D]
//	authgate completion bash|zsh|fish|powershell
//	authgate version | --version
//
// Every command takes -h/--help. Exit codes: 0 success, 1 failure, 2 usage
// error, 3 a denied request under explain --exit-code.
//
// main only starts the program: the signal context, the version, the exit
// code and the process-wide settings (GOMAXPROCS, go-redis's logger), which
// nothing else may change. Every command lives in internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/internal/cli"
)

// version and revision are stamped at build time with -ldflags
// "-X main.version=... -X main.revision=..."; an empty revision falls back
// to the one the Go toolchain records.
var (
	version  = "dev"
	revision = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Options{
		Version:  version,
		Revision: revision,
		Environ:  os.Environ(),
		Stdin:    os.Stdin,
		Stdout:   os.Stdout,
		Stderr:   os.Stderr,
		Process:  process{},
	})
	stop()
	os.Exit(code)
}

// process applies the settings that are global to the process, on behalf
// of the command that asks for them.
type process struct{}

func (process) MaxProcs() int                { return runtime.GOMAXPROCS(0) }
func (process) SetMaxProcs(n int)            { runtime.GOMAXPROCS(n) }
func (process) SetRedisLogger(l cli.Printer) { redis.SetLogger(l) }
