package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/authgate/authgate/internal/yamlx"
)

// Load reads and validates the config file. Relative file paths in it
// are resolved against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := Default()
	// Unknown keys and bad values are both reported: field errors do not
	// stop validation of the fields that decoded.
	fieldErrs, err := yamlx.DecodeAll(path, data, &c)
	if err != nil {
		return nil, err
	}
	c.Path, c.lines = path, yamlx.KeyLines(data)
	dir := filepath.Dir(path)
	for _, p := range []*string{&c.PolicyFile, &c.ShadowPolicy, &c.APIKeysFile, &c.UsersFile, &c.Listen.TLS.CertFile, &c.Listen.TLS.KeyFile, &c.Auth.StateFile, &c.TLS.CAFile, &c.Sessions.Page.TemplateFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.Issuers {
		if l := c.Issuers[i].Login; l != nil && l.PrivateKeyFile != "" && !filepath.IsAbs(l.PrivateKeyFile) {
			l.PrivateKeyFile = filepath.Join(dir, l.PrivateKeyFile)
		}
	}
	if err := errors.Join(append(fieldErrs, c.Validate())...); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadWithSecrets reads the environment, the config file it or the flag
// names, and the secrets.
func LoadWithSecrets(cfgFlag string, environ []string) (*Config, Secrets, error) {
	cfg, sec, err := LoadWithSigningSecrets(cfgFlag, environ)
	if err != nil {
		return nil, Secrets{}, err
	}
	if sec.ClientSecrets, err = ResolveClientSecrets(cfg, environ); err != nil {
		return nil, Secrets{}, err
	}
	if err := cfg.CheckRedis(sec); err != nil {
		return nil, Secrets{}, err
	}
	return cfg, sec, nil
}

// LoadWithSigningSecrets is LoadWithSecrets without the identity
// providers' client secrets and the state store's checks: what a command
// that only mints the gateway's own tokens needs, so that an operator
// minting one need not hold the IdP's client secret.
func LoadWithSigningSecrets(cfgFlag string, environ []string) (*Config, Secrets, error) {
	e, err := ReadEnv(environ)
	if err != nil {
		return nil, Secrets{}, err
	}
	path, err := ResolvePath(cfgFlag, e)
	if err != nil {
		return nil, Secrets{}, err
	}
	cfg, err := Load(path)
	if err != nil {
		return nil, Secrets{}, err
	}
	sec, err := e.ResolveSecrets(cfg.JWT.KeyID)
	if err != nil {
		return nil, Secrets{}, err
	}
	return cfg, sec, nil
}

// ErrNoConfig reports that neither --config nor AUTHGATE_CONFIG names a
// config file; commands treat it as a usage error.
var ErrNoConfig = errors.New("no config file: pass --config or set AUTHGATE_CONFIG")

// ResolvePath returns the config file named by the flag, else by
// AUTHGATE_CONFIG.
func ResolvePath(flagValue string, e Env) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if e.Config != "" {
		return e.Config, nil
	}
	return "", ErrNoConfig
}
