package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/authgate/authgate/authn/token"
	"github.com/caarlos0/env/v11"
)

// Env are the process settings and secrets read from AUTHGATE_*
// variables. Every secret has a _FILE variant for a mounted Secret.
type Env struct {
	Config                 string `env:"CONFIG"`
	JWTSecret              string `env:"JWT_SECRET,unset"`
	JWTSecretFile          string `env:"JWT_SECRET_FILE"`
	JWTPreviousSecrets     string `env:"JWT_PREVIOUS_SECRETS,unset"`
	JWTPreviousSecretsFile string `env:"JWT_PREVIOUS_SECRETS_FILE"`
	RedisURL               string `env:"REDIS_URL"`
	RedisPassword          string `env:"REDIS_PASSWORD,unset"`
	RedisPasswordFile      string `env:"REDIS_PASSWORD_FILE"`
	// The PEM files of the signing keys (see keys.go); private keys
	// come only from files.
	JWTSigningKeyFile   string `env:"JWT_SIGNING_KEY_FILE"`
	JWTNextKeyFile      string `env:"JWT_NEXT_KEY_FILE"`
	JWTPreviousKeysFile string `env:"JWT_PREVIOUS_KEYS_FILE"`
	// The sentinels' own password (redis.sentinel).
	RedisSentinelPassword     string `env:"REDIS_SENTINEL_PASSWORD,unset"`
	RedisSentinelPasswordFile string `env:"REDIS_SENTINEL_PASSWORD_FILE"`
}

// Secrets are the resolved secrets. They are never logged.
type Secrets struct {
	JWT         []byte
	PreviousJWT []token.Key
	RedisPass   string
	RedisURL    string
	// RedisSentinelPass authenticates to the sentinels.
	RedisSentinelPass string
	// KeyFiles are the signing key files; they are read, and reloaded,
	// by whoever builds the key set.
	KeyFiles KeyFiles
	// ClientSecrets are the identity providers' client secrets by login id.
	ClientSecrets map[string]string
}

// ReadEnv reads the AUTHGATE_* variables.
func ReadEnv(environ []string) (Env, error) {
	var e Env
	m := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	err := env.ParseWithOptions(&e, env.Options{Prefix: "AUTHGATE_", Environment: m})
	return e, err
}

// ResolveSecrets reads the secrets from their variables or _FILE variants
// and checks them. A missing or short signing secret stops startup:
// golang-jwt verifies HMAC tokens even with an empty key.
func (e Env) ResolveSecrets(keyID string) (Secrets, error) {
	var s Secrets
	var errs []error
	jwtSecret, err := secret("AUTHGATE_JWT_SECRET", e.JWTSecret, e.JWTSecretFile)
	switch {
	case err != nil:
		errs = append(errs, err)
	case jwtSecret == "" && e.JWTSigningKeyFile == "":
		errs = append(errs, errNoSigningKey)
	case jwtSecret == "":
	case len(jwtSecret) < token.MinSecretBytes:
		errs = append(errs, fmt.Errorf("env: AUTHGATE_JWT_SECRET is %d bytes, need at least %d", len(jwtSecret), token.MinSecretBytes))
	}
	if jwtSecret != "" {
		s.JWT = []byte(jwtSecret)
	}
	s.KeyFiles = KeyFiles{Signing: e.JWTSigningKeyFile, Next: e.JWTNextKeyFile, Previous: e.JWTPreviousKeysFile}
	prev, err := secret("AUTHGATE_JWT_PREVIOUS_SECRETS", e.JWTPreviousSecrets, e.JWTPreviousSecretsFile)
	if err != nil {
		errs = append(errs, err)
	}
	for i, item := range strings.FieldsFunc(prev, func(r rune) bool { return r == ',' || r == '\n' }) {
		kid, sec, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || kid == "" || sec == "" {
			errs = append(errs, fmt.Errorf("env: AUTHGATE_JWT_PREVIOUS_SECRETS item %d: want kid=secret", i+1))
			continue
		}
		if kid == keyID {
			errs = append(errs, fmt.Errorf("env: AUTHGATE_JWT_PREVIOUS_SECRETS item %d: kid %q is the current jwt.key_id", i+1, kid))
		}
		s.PreviousJWT = append(s.PreviousJWT, token.Key{ID: kid, Secret: []byte(sec)})
	}
	s.RedisURL = e.RedisURL
	s.RedisPass, err = secret("AUTHGATE_REDIS_PASSWORD", e.RedisPassword, e.RedisPasswordFile)
	if err != nil {
		errs = append(errs, err)
	}
	s.RedisSentinelPass, err = secret("AUTHGATE_REDIS_SENTINEL_PASSWORD", e.RedisSentinelPassword, e.RedisSentinelPasswordFile)
	if err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// secret returns the value of a secret given directly or through a file.
// Setting both is an error rather than a silent preference.
func secret(name, direct, file string) (string, error) {
	if direct != "" && file != "" {
		return "", fmt.Errorf("env: set %s or %s_FILE, not both", name, name)
	}
	if file == "" {
		return direct, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The path is not secret; the content never appears in errors.
		return "", fmt.Errorf("env: %s_FILE: %w", name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
