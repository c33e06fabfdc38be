package app

import (
	"crypto/tls"
	"fmt"

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
		Name: "authgate_policy_info", Help: "The active policy: its content hash as a label, its rule count as the value.",
	}, []string{"hash"})
	a.fileReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_file_reload_total", Help: "Reloads of the API keys and users files by file and result.",
	}, []string{"file", "result"})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authgate_build_info", Help: "Build information.",
	}, []string{"version"})
	buildInfo.WithLabelValues(a.version).Set(1)
	for _, r := range []string{"success", "failure"} {
		a.reloads.WithLabelValues(r)
		for _, f := range []string{"api_keys", "users", "shadow_policy"} {
			a.fileReloads.WithLabelValues(f, r)
		}
	}
	a.reg.MustRegister(a.reloads, a.lastReload, a.policyInfo, a.fileReloads, buildInfo,
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
	a.policyInfo.WithLabelValues(set.Hash()).Set(float64(set.Len()))
	a.log.Info("policy loaded", zap.String("file", a.cfg.PolicyFile), zap.String("policy_hash", set.Hash()), zap.Int("policy_rules", set.Len()))
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
