package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/authgate/authgate/authn/apikey"
)

func newGenKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gen-key NAME ROLE...",
		Short: "Print a new API key and its keys-file entry",
		Long: `Print a new random API key (256 bits) once, and the entry for the keys file,
which holds only the key's SHA-256 digest. NAME must be a valid key name and
each ROLE a role name the policy can list; roles may also be
comma-separated.`,
		Example: "  authgate gen-key ci-bot deployer >> keys.yaml",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("gen-key needs NAME and at least one ROLE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			roles, err := roleArgs(args[1:])
			if err != nil {
				return err
			}
			key := apikey.Generate()
			entry, err := keyEntry(args[0], apikey.Digest(key), roles)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "# Give this key to the client once; it is not stored anywhere:\n# %s\n%s", key, entry)
			return err
		},
	}
}

// keyEntry renders one keys-file entry and loads it back with the keys
// file's own parser, so the printed entry is one the gateway accepts: a
// NAME the keys file refuses is a usage error here, not a startup error
// later. YAML quoting is the encoder's, so no name or role can break out
// of its field.
func keyEntry(name, digest string, roles []string) (string, error) {
	type entry struct {
		Name   string   `yaml:"name"`
		SHA256 string   `yaml:"sha256"`
		Roles  []string `yaml:"roles,flow"`
	}
	out, err := yaml.Marshal([]entry{{Name: name, SHA256: digest, Roles: roles}})
	if err != nil {
		return "", fmt.Errorf("render entry: %w", err)
	}
	if _, err := apikey.Parse("entry", append([]byte("keys:\n"), out...)); err != nil {
		return "", usagef("the keys file would refuse this entry: %w", err)
	}
	return string(out), nil
}
