package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/authgate/authgate/authn/token"
)

type signingKeyFlags struct {
	algorithm string
	out       string
	public    string
	force     bool
}

func newGenSigningKeyCmd() *cobra.Command {
	var f signingKeyFlags
	cmd := &cobra.Command{
		Use:   "gen-signing-key --out FILE [--algorithm EdDSA|ES256] [--public FILE]",
		Short: "Write a new key pair for signing the gateway's tokens",
		Long: `Write a new private signing key (PKCS #8 PEM, mode 0600) and its public key
(PEM), and print the key's id: its RFC 7638 JWK thumbprint, the "kid" of the
tokens it signs and of its entry in /.well-known/jwks.json.

Point AUTHGATE_JWT_SIGNING_KEY_FILE at the private key to sign with it, or,
to rotate, AUTHGATE_JWT_NEXT_KEY_FILE first (README "Rotating the signing
key"). Existing files are never overwritten without --force. The key never
appears on the terminal.`,
		Example: "  authgate gen-signing-key --out /run/secrets/authgate/next.pem",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGenSigningKey(cmd, f)
		},
	}
	cmd.Flags().StringVar(&f.algorithm, "algorithm", token.AlgEdDSA, "`ALG` of the key: EdDSA (Ed25519) or ES256 (ECDSA P-256)")
	cmd.Flags().StringVar(&f.out, "out", "", "the private key `FILE` to write (required)")
	cmd.Flags().StringVar(&f.public, "public", "", "the public key `FILE` to write (default: FILE with .pub.pem for .pem)")
	cmd.Flags().BoolVar(&f.force, "force", false, "overwrite existing files")
	_ = cmd.MarkFlagFilename("out", "pem")
	return cmd
}

func runGenSigningKey(cmd *cobra.Command, f signingKeyFlags) error {
	if f.out == "" {
		return usagef("--out is required")
	}
	if f.algorithm != token.AlgEdDSA && f.algorithm != token.AlgES256 {
		return usagef("--algorithm must be %s or %s, got %q", token.AlgEdDSA, token.AlgES256, f.algorithm)
	}
	pub := f.public
	if pub == "" {
		pub = strings.TrimSuffix(f.out, ".pem") + ".pub.pem"
	}
	if pub == f.out {
		return usagef("--public must differ from --out")
	}
	key, err := token.GenerateKey(f.algorithm)
	if err != nil {
		return err
	}
	privPEM, err := token.MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	pubPEM, err := token.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return err
	}
	kid, err := token.Thumbprint(key.Public())
	if err != nil {
		return err
	}
	if err := writeNew(f.out, privPEM, 0o600, f.force); err != nil {
		return err
	}
	if err := writeNew(pub, pubPEM, 0o644, f.force); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s key written: private %s (mode 0600), public %s; kid:\n", f.algorithm, f.out, pub)
	_, err = fmt.Fprintln(cmd.OutOrStdout(), kid)
	return err
}

// writeNew writes data to path with perm, refusing an existing file
// unless force. The private key is created with its mode from the start,
// never readable by others for a moment.
func writeNew(path string, data []byte, perm fs.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	fh, err := os.OpenFile(path, flags, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; pass --force to overwrite it", path)
	}
	if err != nil {
		return err
	}
	if force {
		// An existing file keeps its mode: tighten it.
		if err := fh.Chmod(perm); err != nil {
			fh.Close()
			return err
		}
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}
