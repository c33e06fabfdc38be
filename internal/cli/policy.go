package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/policy"
)

// errWidened is `policy diff --fail-on-widen`'s answer when the new policy
// admits a request the old one refused: exit 3, like a denied explain,
// after the changes were printed.
var errWidened = fmt.Errorf("access widens: %w", errDenied)

func newPolicyCmd(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Compare policies and show who can do what",
		Long: `Tools for reviewing a policy change: diff shows which decisions two policy
files make differently, matrix shows who each path admits. Both speak the
inline tests' vocabulary: callers are anonymous, authenticated without
roles, each role, and a caller that satisfies each rule's roles and
conditions (issuer, auth method, key name, claims, scopes, email domain,
client address, host).`,
	}
	cmd.AddCommand(newPolicyDiffCmd(), newPolicyMatrixCmd(o))
	return cmd
}

// outputFlag is -o/--output: text or json.
type outputFlag struct{ format string }

func (f *outputFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.format, "output", "o", "text", "the output `FORMAT`: text or json")
}

func (f *outputFlag) check() error {
	if f.format != "text" && f.format != "json" {
		return usagef("--output must be text or json, not %q", f.format)
	}
	return nil
}

func newPolicyDiffCmd() *cobra.Command {
	var (
		out       outputFlag
		failWiden bool
	)
	cmd := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Show the decisions that change between two policy files",
		Long: `Decide every path pattern of both policies, for every method and every
caller of the inline tests' vocabulary, under OLD and under NEW, and print
each (caller, methods, pattern) whose decision changes: "widened" when NEW
allows what OLD denied, "narrowed" the other way, each with the rule that
decided before and after. A change of the deciding rule alone is not shown.
Either file may be "-" for standard input.

With --fail-on-widen, any widening exits 3 (after printing), for a CI gate
that asks for a second review when a change opens access.`,
		Example: `  git show origin/main:policy.yaml | authgate policy diff - policy.yaml --fail-on-widen
  authgate policy diff old.yaml new.yaml -o json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("diff needs OLD and NEW, got %q", args)
			}
			if args[0] == "-" && args[1] == "-" {
				return usagef("only one of OLD and NEW can be -")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			old, errOld := loadPolicyArg(cmd.InOrStdin(), args[0])
			cur, errNew := loadPolicyArg(cmd.InOrStdin(), args[1])
			if err := errors.Join(errOld, errNew); err != nil {
				return err
			}
			changes := policy.Diff(old, cur)
			if err := writeDiff(cmd.OutOrStdout(), out.format, changes); err != nil {
				return err
			}
			if failWiden && policy.Widens(changes) {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s widens access (--fail-on-widen)\n", cmd.CommandPath(), args[1])
				return errWidened
			}
			return nil
		},
	}
	out.register(cmd)
	cmd.Flags().BoolVar(&failWiden, "fail-on-widen", false, "exit 3 when NEW allows a request OLD denied")
	return cmd
}

func writeDiff(w io.Writer, format string, changes []policy.Change) error {
	if format == "json" {
		if changes == nil {
			changes = []policy.Change{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Widens  bool            `json:"widens"`
			Changes []policy.Change `json:"changes"`
		}{policy.Widens(changes), changes})
	}
	_, err := io.WriteString(w, policy.FormatDiff(changes))
	return err
}

func newPolicyMatrixCmd(o *Options) *cobra.Command {
	var (
		out     outputFlag
		cfgFlag string
	)
	cmd := &cobra.Command{
		Use:   "matrix [FILE]",
		Short: "Show who each path of a policy admits",
		Long: `Print, for every path pattern of the policy and every group of methods
decided alike, the callers of the inline tests' vocabulary it admits and
the rules that decided. FILE is a policy file ("-" for standard input);
without it, the policy_file of the config (--config or $AUTHGATE_CONFIG).`,
		Example: `  authgate policy matrix policy.yaml
  authgate policy matrix --config config.yaml -o json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("matrix takes at most one FILE, got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			var file string
			switch {
			case len(args) == 1:
				file = args[0]
				if cfgFlag != "" {
					return usagef("give FILE or --config, not both")
				}
			default:
				e, err := config.ReadEnv(o.Environ)
				if err != nil {
					return err
				}
				path, err := configPath(cfgFlag, e)
				if err != nil {
					return err
				}
				cfg, err := config.Load(path)
				if err != nil {
					return err
				}
				file = cfg.PolicyFile
			}
			set, err := loadPolicyArg(cmd.InOrStdin(), file)
			if err != nil {
				return err
			}
			rows := policy.Matrix(set)
			if out.format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), policy.FormatMatrix(rows))
			return err
		},
	}
	out.register(cmd)
	addConfigFlag(cmd, &cfgFlag)
	return cmd
}

// loadPolicyArg loads the policy file name, or standard input for "-".
func loadPolicyArg(stdin io.Reader, name string) (*policy.Set, error) {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, 64<<20))
		name = "<stdin>"
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return policy.Load(name, data)
}
