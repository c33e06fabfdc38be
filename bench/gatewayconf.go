package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"
)

// baseConfig is the part of every gateway instance's config that no mode
// adds. Logging is at error level with no sampling of allowed requests, so
// log output does not dominate the figures. The harness is the trusted
// proxy, so it can give the login limiter distinct client addresses
// through X-Forwarded-For.
const baseConfig = `upstream:
  url: {{.Upstream}}
  host_header: upstream
listen:
  address: "{{.Addr}}"
  admin_address: "{{.AdminAddr}}"
  shutdown_delay: 0s
  shutdown_timeout: 5s
policy_file: {{.InstanceDir}}/policy.yaml
users_file: {{.Dir}}/users.yaml
trusted_proxies: [127.0.0.1/32]
jwt:
  issuer: ` + ownIssuer + `
  audience: ` + ownAudience + `
  key_id: ` + ownKeyID + `
logging:
  level: error
  format: json
  allowed_sample_rate: 0
`

// basePolicy is the policy every instance starts from: /public/** for
// everyone, /api/** for any authenticated caller.
const basePolicy = `roles: [` + benchRole + `]
rules:
  - id: public
    path: /public/**
    methods: [GET, HEAD]
    public: true
  - id: api
    path: /api/**
    methods: [GET, HEAD]
    authenticated: true
`

// configData is what the config and policy templates see.
type configData struct {
	Dir         string // the run's shared directory (users, keys files)
	InstanceDir string // this instance's directory (config, policy)
	Upstream    string // upstream URL
	Addr        string // proxy listener, host:port
	AdminAddr   string // admin listener, host:port
	Issuer      string // the external issuer (the JWKS server's URL)
	JWKSURI     string
	TokenCache  int    // jwks.token_cache_size
	RedisAddr   string // the harness's redis-server, host:port; empty when no mode needs it
}

// render executes the template text with d.
func render(name, text string, d configData) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// mergeYAML merges the YAML documents docs (name → text, applied in the
// order of names) into one: mappings merge key by key, sequences append,
// and two different scalars for one key are an error naming both
// sources, so two modes can never silently fight over a setting.
func mergeYAML(names []string, docs map[string][]byte) ([]byte, error) {
	merged := map[string]any{}
	from := map[string]string{} // dotted key → the source that set it
	for _, n := range names {
		var m map[string]any
		if err := yaml.Unmarshal(docs[n], &m); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", n, err)
		}
		if err := mergeInto(merged, m, "", n, from); err != nil {
			return nil, err
		}
	}
	out, err := yaml.Marshal(merged)
	if err != nil {
		return nil, fmt.Errorf("bench: merged config: %w", err)
	}
	return out, nil
}

func mergeInto(dst, src map[string]any, prefix, source string, from map[string]string) error {
	keys := make([]string, 0, len(src))
	for k := range src {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, path := src[k], prefix+k
		old, ok := dst[k]
		switch {
		case !ok:
			dst[k] = v
			from[path] = source
		default:
			om, oIsMap := old.(map[string]any)
			vm, vIsMap := v.(map[string]any)
			ol, oIsList := old.([]any)
			vl, vIsList := v.([]any)
			switch {
			case oIsMap && vIsMap:
				if err := mergeInto(om, vm, path+".", source, from); err != nil {
					return err
				}
			case oIsList && vIsList:
				dst[k] = appendNew(ol, vl)
			case fmt.Sprint(old) == fmt.Sprint(v) && !oIsMap && !oIsList:
			default:
				return fmt.Errorf("bench: %s sets %s, which %s already set to another value", source, path, sourceOf(from, path))
			}
		}
	}
	return nil
}

// sourceOf returns the source that set path or the nearest mapping above
// it.
func sourceOf(from map[string]string, path string) string {
	for {
		if s, ok := from[path]; ok {
			return s
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return "an earlier source"
		}
		path = path[:i]
	}
}

// appendNew appends the items of add to list, skipping a scalar that list
// already holds (two fragments may both need role "user"); mappings (such
// as policy rules) are always appended.
func appendNew(list, add []any) []any {
	for _, v := range add {
		switch v.(type) {
		case map[string]any, []any:
		default:
			if slices.Contains(list, v) {
				continue
			}
		}
		list = append(list, v)
	}
	return list
}

// instanceEnv renders the environment the fragments named add to the
// gateway's (key files, the Redis URL), as NAME=value entries.
func instanceEnv(d configData, fragmentNames []string) ([]string, error) {
	var env []string
	for _, n := range fragmentNames {
		f := fragmentTable[n]
		names := make([]string, 0, len(f.Env))
		for k := range f.Env {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			v, err := render("fragment "+n+" env "+k, f.Env[k], d)
			if err != nil {
				return nil, err
			}
			env = append(env, k+"="+string(v))
		}
	}
	return env, nil
}

// instanceFiles renders and writes one gateway instance's config and
// policy, from the base and the fragments named, into d.InstanceDir.
func instanceFiles(d configData, fragmentNames []string) (string, error) {
	if err := os.MkdirAll(d.InstanceDir, 0o700); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	cfgNames, polNames := []string{"base config"}, []string{"base policy"}
	cfgDocs, polDocs := map[string][]byte{}, map[string][]byte{}
	var err error
	if cfgDocs["base config"], err = render("base config", baseConfig, d); err != nil {
		return "", err
	}
	if polDocs["base policy"], err = render("base policy", basePolicy, d); err != nil {
		return "", err
	}
	for _, n := range fragmentNames {
		f, ok := fragmentTable[n]
		if !ok {
			return "", fmt.Errorf("bench: unknown config fragment %q", n)
		}
		name := "fragment " + n
		if f.Config != "" {
			if cfgDocs[name], err = render(name, f.Config, d); err != nil {
				return "", err
			}
			cfgNames = append(cfgNames, name)
		}
		if f.Policy != "" {
			if polDocs[name], err = render(name, f.Policy, d); err != nil {
				return "", err
			}
			polNames = append(polNames, name)
		}
	}
	cfg, err := mergeYAML(cfgNames, cfgDocs)
	if err != nil {
		return "", err
	}
	pol, err := mergeYAML(polNames, polDocs)
	if err != nil {
		return "", err
	}
	path := filepath.Join(d.InstanceDir, "config.yaml")
	for name, data := range map[string][]byte{path: cfg, filepath.Join(d.InstanceDir, "policy.yaml"): pol} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return "", fmt.Errorf("bench: %w", err)
		}
	}
	return path, nil
}
