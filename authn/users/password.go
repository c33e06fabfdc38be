package users

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// ErrPasswordTooLong is a password longer than MaxPasswordBytes.
var ErrPasswordTooLong = errors.New("users: password too long")

// HashPassword returns the bcrypt hash of password at cost (0 means
// DefaultCost). Passwords longer than MaxPasswordBytes are refused rather
// than silently truncated by bcrypt, and empty passwords are refused.
func HashPassword(password []byte, cost int) (string, error) {
	if cost == 0 {
		cost = DefaultCost
	}
	if cost < MinCost || cost > MaxCost {
		return "", fmt.Errorf("users: cost %d out of range [%d, %d]", cost, MinCost, MaxCost)
	}
	if len(password) == 0 {
		return "", errors.New("users: empty password")
	}
	if len(password) > MaxPasswordBytes {
		return "", fmt.Errorf("%w: password is %d bytes; bcrypt uses at most %d", ErrPasswordTooLong, len(password), MaxPasswordBytes)
	}
	h, err := bcrypt.GenerateFromPassword(password, cost)
	if err != nil {
		return "", fmt.Errorf("users: hash password: %w", err)
	}
	return string(h), nil
}

// maxLineBytes bounds a password read from a pipe.
const maxLineBytes = 4096

// ReadPassword reads a password from in. When in is a terminal the password
// is read without echo after writing a prompt to out; otherwise one line is
// read (for scripts) and its line ending removed.
func ReadPassword(in io.Reader, out io.Writer) ([]byte, error) {
	return readPassword(in, out, "Password: ")
}

func readPassword(in io.Reader, out io.Writer, prompt string) ([]byte, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(out, prompt)
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(out)
		if err != nil {
			return nil, fmt.Errorf("users: read password: %w", err)
		}
		return pw, nil
	}
	return readLine(in)
}

// readLine reads one line without buffering past it more than needed.
func readLine(in io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(io.LimitReader(in, maxLineBytes+1), 64)
	var line []byte
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("users: read password: %w", err)
		}
		if b == '\n' {
			break
		}
		line = append(line, b)
		if len(line) > maxLineBytes {
			return nil, fmt.Errorf("users: read password: line longer than %d bytes", maxLineBytes)
		}
	}
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// RunHashPassword implements `authgate hash-password [--cost N]`: it reads a
// password from stdin (twice, without echo, on a terminal) and writes its
// bcrypt hash to stdout. The password is never accepted as an argument,
// where it would land in shell history and the process list.
func RunHashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", DefaultCost, fmt.Sprintf("bcrypt cost, %d to %d", MinCost, MaxCost))
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: authgate hash-password [--cost N] < password")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("users: hash-password: %w", err)
	}
	if fs.NArg() > 0 {
		return errors.New("users: hash-password: the password is read from stdin, not from arguments")
	}
	if *cost < MinCost || *cost > MaxCost {
		return fmt.Errorf("users: hash-password: cost %d out of range [%d, %d]", *cost, MinCost, MaxCost)
	}
	pw, err := ReadPassword(stdin, stderr)
	if err != nil {
		return err
	}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		again, err := readPassword(stdin, stderr, "Repeat password: ")
		if err != nil {
			return err
		}
		if !bytes.Equal(pw, again) {
			return errors.New("users: hash-password: passwords do not match")
		}
	}
	h, err := HashPassword(pw, *cost)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, h)
	return err
}
