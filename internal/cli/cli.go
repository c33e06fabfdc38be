// Package cli is every authgate subcommand. It builds the command tree on
// cobra, so every command takes -h/--help without a config, flags may come
// before or after the positional arguments ("--" ends them), and
// `completion bash|zsh|fish|powershell` prints a shell completion script.
// Run maps each outcome to one of the documented exit codes.
//
// The package changes no process-wide state: what serve needs of the
// process (more Go processors for bcrypt, go-redis's logger) it asks of the
// Process that main supplies.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/authgate/authgate/internal/config"
)

// The exit codes, documented in `authgate --help` and the README.
const (
	exitOK      = 0 // the command did what it was asked
	exitFailure = 1 // it ran and failed: invalid files, a failed check, a startup error
	exitUsage   = 2 // the command line was wrong; nothing was run
	exitDenied  = 3 // explain --exit-code: the request would be denied; policy diff --fail-on-widen: access widens
)

// Printer is the logger go-redis accepts (its internal.Logging).
type Printer interface {
	Printf(ctx context.Context, format string, v ...any)
}

// Process is what a command may change about the whole process. main
// supplies the only real implementation, so every process-wide side effect
// lives there; tests record the calls instead.
type Process interface {
	// MaxProcs returns the current GOMAXPROCS.
	MaxProcs() int
	// SetMaxProcs sets GOMAXPROCS to n.
	SetMaxProcs(n int)
	// SetRedisLogger routes go-redis's process-wide log output to l.
	SetRedisLogger(l Printer)
}

// Options is what the commands get from the process they run in. Stdin,
// Stdout and Stderr must be set. A nil Process leaves every process-wide
// setting alone (bcrypt then shares the processors proxied traffic uses).
type Options struct {
	// Version is the build version printed by `version` and --version.
	Version string
	// Revision is the source revision of the build, for build_info.
	Revision string
	// Environ is the environment, as os.Environ returns it; commands read
	// AUTHGATE_* variables from it and from nowhere else.
	Environ []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Process Process
}

// Run runs the command line args (without the program name) and returns the
// process exit code: 0 success, 1 failure, 2 usage error, 3 a denied
// request under `explain --exit-code`. Errors go to o.Stderr, prefixed with
// the command; a usage error adds where to find the command's help.
func Run(ctx context.Context, args []string, o Options) int {
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root := newRoot(&o, args)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errDenied) {
		return exitDenied // explain already printed the decision
	}
	name := root.Name()
	if cmd != nil {
		name = cmd.CommandPath()
	}
	fmt.Fprintf(o.Stderr, "%s: %v\n", name, err)
	var u *usageError
	if errors.As(err, &u) {
		fmt.Fprintf(o.Stderr, "Run '%s --help' for usage.\n", name)
		return exitUsage
	}
	return exitFailure
}

const rootLong = `authgate is an authentication and authorization gateway. It authenticates
each request (a bearer JWT or an API key), authorizes it against a per-path
role policy and proxies it with identity headers to one upstream.

Without a command it serves, as "authgate serve" does.

The config file is --config, else $AUTHGATE_CONFIG. Keys and secrets come
from the environment: AUTHGATE_JWT_SIGNING_KEY_FILE, a private key PEM
(gen-signing-key writes one), or for HS256 AUTHGATE_JWT_SECRET (or
AUTHGATE_JWT_SECRET_FILE), at least 32 bytes.

Exit codes:
  0  success
  1  failure: an invalid config, policy, users or keys file, a failed check,
     a startup error
  2  usage: an unknown command or flag, wrong arguments, conflicting flags,
     no config file named
  3  explain --exit-code only: the request would be denied;
     policy diff --fail-on-widen only: the new policy widens access`

// newRoot builds the command tree. args is the command line, used only to
// explain a Go-style single-dash long flag.
func newRoot(o *Options, args []string) *cobra.Command {
	var sf serveFlags
	root := &cobra.Command{
		Use:     "authgate",
		Short:   "Authentication and authorization gateway",
		Long:    rootLong,
		Version: o.Version,
		Args:    commandArgs,
		// Run prints errors itself, so that each maps to one exit code
		// and one format; cobra would print usage for runtime errors too.
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.serve(cmd.Context(), sf)
		},
	}
	// Before the completion command is added: it binds its output then.
	root.SetIn(o.Stdin)
	root.SetOut(o.Stdout)
	root.SetErr(o.Stderr)
	root.SetVersionTemplate("authgate {{.Version}}\n")
	// Declared here so that cobra does not take -v for it.
	root.Flags().Bool("version", false, "print the version")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: withDashHint(cmd.Flags(), args, err)}
	})
	sf.register(root)
	root.AddCommand(
		newServeCmd(o),
		newCheckCmd(o),
		newExplainCmd(o),
		newGenKeyCmd(),
		newGenSigningKeyCmd(),
		newHashPasswordCmd(),
		newTokenCmd(o),
		newVersionCmd(o),
		newPolicyCmd(o),
	)
	// cobra adds help and completion when the tree runs; adding them now
	// lets usageArgs reach them too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	usageArgs(root)
	return root
}

// usageArgs makes every argument error in the tree under c a usage error,
// including those of cobra's own commands: cobra's help prints the root
// help for an unknown topic, and `completion tcsh` printed the completion
// help, both exiting 0.
func usageArgs(c *cobra.Command) {
	c.SuggestionsMinimumDistance = 2 // "chek": did you mean check?
	switch {
	case c.Name() == "help" && c.HasParent():
		c.Args = helpArgs
	case !c.Runnable() && c.HasSubCommands():
		// A group such as completion: help without arguments, an unknown
		// subcommand is a usage error.
		c.Args = commandArgs
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	case c.Args != nil:
		args := c.Args
		c.Args = func(cmd *cobra.Command, a []string) error {
			err := args(cmd, a)
			var u *usageError
			if err != nil && !errors.As(err, &u) {
				err = &usageError{err: err}
			}
			return err
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

func newVersionCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "authgate %s\n", o.Version)
			return err
		},
	}
}

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...)}
}

// errDenied is explain --exit-code's answer for a denied request.
var errDenied = errors.New("denied")

// commandArgs refuses positional arguments to a command that has
// subcommands: there they can only be a misspelled command.
func commandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		return usagef("unknown command %q (did you mean %s?)", args[0], strings.Join(s, " or "))
	}
	return usagef("unknown command %q", args[0])
}

// helpArgs refuses a help topic that names no command.
func helpArgs(cmd *cobra.Command, args []string) error {
	if _, rest, err := cmd.Root().Find(args); err != nil || len(rest) > 0 {
		return usagef("unknown help topic %q", strings.Join(args, " "))
	}
	return nil
}

// noArgs refuses positional arguments.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// withDashHint explains a flag error caused by a Go-style single-dash long
// flag (-config), which pflag reads as a run of one-letter flags.
func withDashHint(fs *pflag.FlagSet, args []string, err error) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if fs.Lookup(name) != nil {
			return fmt.Errorf("%w (long flags take two dashes: --%s)", err, name)
		}
	}
	return err
}

// addConfigFlag adds --config to fs.
func addConfigFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "config", "", "the config `FILE` (default $AUTHGATE_CONFIG)")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
}

// configPath returns --config, else AUTHGATE_CONFIG; naming neither is a
// usage error.
func configPath(flagValue string, e config.Env) (string, error) {
	p, err := config.ResolvePath(flagValue, e)
	if err != nil {
		return "", &usageError{err: err}
	}
	return p, nil
}

// loadConfigAndSecrets is config.LoadWithSecrets with a missing config
// reported as a usage error.
func loadConfigAndSecrets(cfgFlag string, environ []string) (*config.Config, config.Secrets, error) {
	return usageOnNoConfig(config.LoadWithSecrets(cfgFlag, environ))
}

// usageOnNoConfig turns a missing config into a usage error.
func usageOnNoConfig(cfg *config.Config, sec config.Secrets, err error) (*config.Config, config.Secrets, error) {
	if errors.Is(err, config.ErrNoConfig) {
		err = &usageError{err: err}
	}
	return cfg, sec, err
}
