package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/authgate/authgate/authn/users"
)

func newHashPasswordCmd() *cobra.Command {
	var cost int
	cmd := &cobra.Command{
		Use:   "hash-password < password",
		Short: "Print a bcrypt hash for the users file",
		Long: fmt.Sprintf(`Read a password from stdin and print its bcrypt hash for the users file.
On a terminal the password is asked for twice, without echo; from a pipe one
line is read. The password is never taken as an argument, where it would
land in shell history and the process list. Passwords over %d bytes are
refused rather than truncated by bcrypt.`, users.MaxPasswordBytes),
		Example: "  authgate hash-password --cost 12 < password.txt",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("the password is read from stdin, not from arguments")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cost < users.MinCost || cost > users.MaxCost {
				return usagef("--cost %d out of range [%d, %d]", cost, users.MinCost, users.MaxCost)
			}
			pw, err := readNewPassword(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			h, err := users.HashPassword(pw, cost)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), h)
			return err
		},
	}
	cmd.Flags().IntVar(&cost, "cost", users.DefaultCost, fmt.Sprintf("bcrypt `COST`, %d to %d", users.MinCost, users.MaxCost))
	return cmd
}

// readNewPassword reads a password from in: on a terminal twice, without
// echo, after prompts on out; otherwise one line.
func readNewPassword(in io.Reader, out io.Writer) ([]byte, error) {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return readLine(in)
	}
	pw, err := promptPassword(f, out, "Password: ")
	if err != nil {
		return nil, err
	}
	again, err := promptPassword(f, out, "Repeat password: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("passwords do not match")
	}
	return pw, nil
}

func promptPassword(f *os.File, out io.Writer, prompt string) ([]byte, error) {
	fmt.Fprint(out, prompt)
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(out)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	return pw, nil
}

// maxLineBytes bounds a password read from a pipe.
const maxLineBytes = 4096

// readLine reads one line, without its line ending; a line longer than
// maxLineBytes is an error.
func readLine(in io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(io.LimitReader(in, maxLineBytes+1), 64)
	var line []byte
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if b == '\n' {
			break
		}
		line = append(line, b)
		if len(line) > maxLineBytes {
			return nil, fmt.Errorf("read password: line longer than %d bytes", maxLineBytes)
		}
	}
	return bytes.TrimSuffix(line, []byte("\r")), nil
}
