package app

import (
	"crypto/tls"
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/apikey"
	"github.com/authgate/authgate/authn/users"
	"github.com/authgate/authgate/internal/filewatch"
	"github.com/authgate/authgate/policy"
)

// loadCert loads the TLS key pair and swaps it in; a bad pair keeps the
// last good one.
func (a *App) loadCert() error {
	c, err := tls.LoadX509KeyPair(a.cfg.Listen.TLS.CertFile, a.cfg.Listen.TLS.KeyFile)
	if err != nil {
		// The error names the files, never key material.
		return fmt.Errorf("tls: %w", err)
	}
	a.cert.Store(&c)
	return nil
}

func (a *App) registerMetrics() {
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_policy_reload_total", Help: "Policy reload attempts by result.",
	}, []string{"result"})
	a.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "authgate_policy_last_reload_success", Help: "1 if the last policy reload succeeded, 0 if it was rejected.",
	})
	a.policyInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authgate_policy_info", Help: "The active policy, by its content hash; the value is always 1.",
	}, []string{"hash"})
	a.policyRules = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "authgate_policy_rules", Help: "Rules in the active policy.",
	})
	a.fileReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_file_reload_total", Help: "Reloads of the API keys, users, shadow policy and signing key files by file and result.",
	}, []string{"file", "result"})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authgate_build_info", Help: "Build information; the value is always 1.",
	}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(a.version, a.revision, runtime.Version()).Set(1)
	for _, r := range []string{"success", "failure"} {
		a.reloads.WithLabelValues(r)
		for _, f := range []string{"api_keys", "users", "shadow_policy", "signing_keys"} {
			a.fileReloads.WithLabelValues(f, r)
		}
	}
	a.reg.MustRegister(a.reloads, a.lastReload, a.policyInfo, a.policyRules, a.fileReloads, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// loadPolicy parses, validates and compiles a policy and swaps it in only
// when every step succeeded: a bad edit never opens access, and requests in
// flight keep the snapshot they started with.
func (a *App) loadPolicy(data []byte) error {
	set, err := policy.Load(a.cfg.PolicyFile, data)
	if err != nil {
		a.reloads.WithLabelValues("failure").Inc()
		a.lastReload.Set(0)
		return err
	}
	a.policy.Swap(set)
	a.reloads.WithLabelValues("success").Inc()
	a.lastReload.Set(1)
	a.policyInfo.Reset()
	a.policyInfo.WithLabelValues(set.Hash()).Set(1)
	a.policyRules.Set(float64(set.Len()))
	a.log.Info("policy loaded", zap.String("file", a.cfg.PolicyFile), zap.String("policy_hash", set.Hash()), zap.Int("policy_rules", set.Len()))
	a.lint()
	return nil
}

// loadShadow loads the candidate policy that is decided beside the
// enforced one without affecting traffic.
func (a *App) loadShadow(data []byte) error {
	set, err := policy.Load(a.cfg.ShadowPolicy, data)
	if err != nil {
		a.fileReloads.WithLabelValues("shadow_policy", "failure").Inc()
		return err
	}
	a.shadow.Swap(set)
	a.fileReloads.WithLabelValues("shadow_policy", "success").Inc()
	a.log.Info("shadow policy loaded", zap.String("file", a.cfg.ShadowPolicy), zap.String("policy_hash", set.Hash()), zap.Int("policy_rules", set.Len()))
	return nil
}

func (a *App) loadKeys(data []byte) error {
	set, err := apikey.Parse(a.cfg.APIKeysFile, data)
	if err != nil {
		a.fileReloads.WithLabelValues("api_keys", "failure").Inc()
		return err
	}
	a.keys.Swap(set)
	a.fileReloads.WithLabelValues("api_keys", "success").Inc()
	a.log.Info("api keys loaded", zap.String("file", a.cfg.APIKeysFile), zap.Int("keys", set.Len()))
	a.warnLoaded(set.Warnings())
	a.lint()
	return nil
}

func (a *App) loadUsers(data []byte) error {
	set, err := users.Parse(a.cfg.UsersFile, data)
	if err != nil {
		a.fileReloads.WithLabelValues("users", "failure").Inc()
		return err
	}
	a.users.Swap(set)
	a.fileReloads.WithLabelValues("users", "success").Inc()
	a.log.Info("users loaded", zap.String("file", a.cfg.UsersFile), zap.Int("users", set.Len()))
	a.warnLoaded(set.Warnings())
	a.lint()
	return nil
}

// warnLoaded logs what a file loader accepted for now but will refuse in a
// later release (a role outside the role grammar, which grants nothing), so
// nothing a file says is dropped unannounced.
func (a *App) warnLoaded(warnings []string) {
	for _, w := range warnings {
		a.log.Warn("file accepted with a warning", zap.String("warning", w))
	}
}

func (a *App) onReload(r filewatch.Result) {
	if r.Err != nil {
		// The last good state stays in force; the error names file and line.
		a.log.Error("reload rejected, keeping the last good version", zap.String("file", r.Path), zap.Error(r.Err))
		if !r.Changed && r.Path == a.cfg.PolicyFile {
			a.reloads.WithLabelValues("failure").Inc()
			a.lastReload.Set(0)
		}
	}
}

// lint logs what `authgate check` warns about for the policy in force:
// a role typo in a policy without a roles list would otherwise start (or
// reload) silently and deny everyone. It runs after every load of the
// policy, users or keys file; roles are known from the users and keys
// files when either is configured, as in check.
func (a *App) lint() {
	set := a.policy.Load()
	if set == nil {
		return
	}
	var known []string
	if a.cfg.APIKeysFile != "" || a.cfg.UsersFile != "" {
		known = []string{}
		if ks := a.keys.Load(); ks != nil {
			known = append(known, ks.Roles()...)
		}
		if us := a.users.Load(); us != nil {
			known = append(known, us.Roles()...)
		}
		if (a.cfg.APIKeysFile != "" && a.keys.Load() == nil) || (a.cfg.UsersFile != "" && a.users.Load() == nil) {
			return // not every file is loaded yet: New lints again once they are
		}
	}
	for _, w := range set.Lint(known) {
		a.log.Warn("policy lint", zap.String("file", a.cfg.PolicyFile), zap.Int("line", w.Line), zap.String("rule_id", w.RuleID), zap.String("warning", w.Msg))
	}
}
