package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn/token"
)

// TestCLIGenSigningKey writes a key pair, checks the modes and that the
// printed kid is the thumbprint of the written key, then signs a token
// with it through `token` and verifies that token with the public file
// alone.
func TestCLIGenSigningKey(t *testing.T) {
	for _, alg := range []string{token.AlgEdDSA, token.AlgES256} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "signing.pem")
			r := run(t, []string{"gen-signing-key", "--algorithm", alg, "--out", out}, nil, "")
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			kid := strings.TrimSpace(r.stdout)
			if strings.Contains(r.stdout+r.stderr, "PRIVATE KEY") {
				t.Fatalf("the key was printed: %q %q", r.stdout, r.stderr)
			}
			st, err := os.Stat(out)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("private key file mode %v (%v), want 0600", st.Mode(), err)
			}
			pubPEM, err := os.ReadFile(filepath.Join(dir, "signing.pub.pem"))
			if err != nil {
				t.Fatal(err)
			}
			pubs, err := token.ParsePublicKeysPEM(pubPEM)
			if err != nil || len(pubs) != 1 {
				t.Fatalf("public file: %v", err)
			}
			if got, _ := token.Thumbprint(pubs[0]); got != kid {
				t.Fatalf("printed kid %q, public key's thumbprint %q", kid, got)
			}
			// Refused: an existing file without --force.
			if r := run(t, []string{"gen-signing-key", "--out", out}, nil, ""); r.code != 1 || !strings.Contains(r.stderr, "--force") {
				t.Errorf("second run: exit %d, stderr %q; want 1 naming --force", r.code, r.stderr)
			}

			writeFile(t, filepath.Join(dir, "policy.yaml"), "rules:\n  - path: /**\n    authenticated: true\n")
			writeFile(t, filepath.Join(dir, "config.yaml"), "upstream:\n  url: http://127.0.0.1:1\npolicy_file: policy.yaml\n")
			r = run(t, []string{"token", "--config", filepath.Join(dir, "config.yaml"), "--subject", "svc", "--role", "reader"},
				[]string{"AUTHGATE_JWT_SIGNING_KEY_FILE=" + out}, "")
			if r.code != 0 {
				t.Fatalf("token: exit %d, stderr %q", r.code, r.stderr)
			}
			tok, err := jwt.Parse(strings.TrimSpace(r.stdout), func(*jwt.Token) (any, error) { return pubs[0], nil },
				jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(time.Now))
			if err != nil || tok.Header["kid"] != kid {
				t.Fatalf("token signed with the key does not verify with its public file: %v (header %v)", err, tok.Header)
			}
			if r := run(t, []string{"check", "--config", filepath.Join(dir, "config.yaml")}, []string{"AUTHGATE_JWT_SIGNING_KEY_FILE=" + filepath.Join(dir, "signing.pub.pem")}, ""); r.code != 1 || !strings.Contains(r.stderr, "a public key") {
				t.Errorf("check with a public key as the signing key: exit %d, stderr %q; want 1", r.code, r.stderr)
			}
		})
	}
}

func TestCLIGenSigningKeyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"gen-signing-key"},
		{"gen-signing-key", "--out", "x.pem", "--algorithm", "RS256"},
		{"gen-signing-key", "--out", "x.pem", "--public", "x.pem"},
		{"gen-signing-key", "--out", "x.pem", "extra"},
	} {
		if r := run(t, args, nil, ""); r.code != 2 || r.stdout != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2", args, r.code, r.stdout)
		}
	}
}
