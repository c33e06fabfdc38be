package app

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/discovery"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/internal/filewatch"
	"github.com/authgate/authgate/proxy"
)

// signingKeys loads the signing key files and rebuilds the key set when
// any of them changes. Every file is parsed on its own (a bad file is
// rejected and names itself); the set is rebuilt from the last good
// content of all three and swapped in only when it is whole, so a request
// sees one complete key set, never a mix.
//
// The files are registered previous, current, next: loaded in that
// order, a rotation written in one update (a Kubernetes Secret) or file
// by file in that order passes only through states that keep every key it
// still needs (see token.NewKeySetFrom on keys listed twice).
type signingKeys struct {
	a     *App
	sec   config.Secrets
	store *token.KeyStore
	count *prometheus.GaugeVec
	now   func() time.Time

	mu        sync.Mutex
	armed     bool // all files loaded once: each change rebuilds
	parsed    config.ParsedKeys
	published map[string]time.Time // kid -> when this process first published it
}

// loadSigningKeys builds the key set from the secrets and the key files,
// and watches the files.
func (a *App) loadSigningKeys(sec config.Secrets, now func() time.Time) (*token.KeyStore, error) {
	sk := &signingKeys{a: a, sec: sec, store: &token.KeyStore{}, now: now, published: map[string]time.Time{}}
	sk.count = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authgate_signing_keys", Help: "Keys of the gateway's own tokens in force, by role (current, next, previous).",
	}, []string{"role"})
	a.reg.MustRegister(sk.count)
	f := sec.KeyFiles
	var errs []error
	watch := func(path string, load func([]byte) error, opts ...filewatch.AddOption) {
		if path != "" {
			if err := a.watcher.Add(path, load, opts...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// The previous and next key files are empty between rotations: an
	// empty list of keys that only verify can only refuse tokens, never
	// admit one. The signing key file must never be empty.
	watch(f.Previous, func(b []byte) error {
		return sk.set(func(p *config.ParsedKeys) error {
			k, err := config.ParsePublicKeys(config.EnvPreviousKeysFile, f.Previous, b)
			p.Previous = k
			return err
		})
	}, filewatch.EmptyIsValid)
	watch(f.Signing, func(b []byte) error {
		return sk.set(func(p *config.ParsedKeys) error {
			k, err := config.ParseSigningKey(f.Signing, b)
			p.Signing = k
			return err
		})
	})
	watch(f.Next, func(b []byte) error {
		return sk.set(func(p *config.ParsedKeys) error {
			k, err := config.ParsePublicKeys(config.EnvNextKeyFile, f.Next, b)
			p.Next = k
			return err
		})
	}, filewatch.EmptyIsValid)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	sk.armed = true
	if err := sk.rebuild(now(), true); err != nil {
		return nil, err
	}
	return sk.store, nil
}

// set applies one file's parsed content and rebuilds the set.
func (sk *signingKeys) set(apply func(*config.ParsedKeys) error) error {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	next := sk.parsed
	if err := apply(&next); err != nil {
		sk.a.fileReloads.WithLabelValues("signing_keys", "failure").Inc()
		return err
	}
	// Kept even if the set cannot be built yet: a rotation changes
	// several files, and the next one may complete it.
	sk.parsed = next
	if !sk.armed {
		return nil
	}
	return sk.rebuild(sk.now(), false)
}

// rebuild builds the set from the parsed files and swaps it in. Key ids
// are public (RFC 7638 thumbprints); key material is never logged.
func (sk *signingKeys) rebuild(now time.Time, startup bool) error {
	ks, err := sk.sec.BuildKeySet(sk.a.cfg, sk.parsed)
	if err != nil {
		if !startup {
			sk.a.fileReloads.WithLabelValues("signing_keys", "failure").Inc()
		}
		return err
	}
	prev := sk.store.Keys()
	sk.store.Swap(ks)
	for _, role := range []token.KeyRole{token.RoleCurrent, token.RoleNext, token.RolePrevious} {
		sk.count.WithLabelValues(string(role)).Set(float64(len(ks.KeyIDs(role))))
	}
	cur := ks.SigningKeyID()
	if prev != nil && cur != prev.SigningKeyID() && ks.Algorithm() != token.AlgHS256 {
		// A key should be published as next for jwt.jwks_max_age (plus
		// the verifiers' own refresh) before it signs; authgate and the
		// assertion verifiers refetch on an unknown kid, other
		// verifiers may refuse its tokens until their cache expires.
		if first, ok := sk.published[cur]; !ok || now.Sub(first) < sk.a.cfg.JWT.JWKSMaxAge {
			sk.a.log.Warn("signing with a key that was not published for jwt.jwks_max_age first: verifiers that cached the key set may refuse its tokens until they fetch it again",
				zap.String("kid", cur), zap.Duration("jwks_max_age", sk.a.cfg.JWT.JWKSMaxAge))
		}
	}
	for _, k := range ks.PublicKeys() {
		if _, ok := sk.published[k.Kid]; !ok {
			sk.published[k.Kid] = now
		}
	}
	if !startup {
		sk.a.fileReloads.WithLabelValues("signing_keys", "success").Inc()
	}
	sk.a.log.Info("signing keys loaded", zap.String("algorithm", ks.Algorithm()), zap.String("kid", cur),
		zap.Strings("next", ks.KeyIDs(token.RoleNext)), zap.Strings("previous", ks.KeyIDs(token.RolePrevious)))
	return nil
}

// wellKnown returns the handlers of the published keys and the issuer
// metadata, by path.
func (a *App) wellKnown(store token.KeySource) map[string]http.Handler {
	tokenPath := ""
	if a.cfg.UsersFile != "" {
		tokenPath = strings.TrimSuffix(a.cfg.Auth.Prefix, "/") + "/login"
	}
	return discovery.Handlers(discovery.Options{
		Keys: store, Issuer: a.cfg.JWT.Issuer, BaseURL: a.cfg.MetadataBaseURL(), TokenPath: tokenPath, MaxAge: a.cfg.JWT.JWKSMaxAge,
		Error: func(w http.ResponseWriter, r *http.Request, code int, msg string) {
			proxy.WriteError(w, proxy.RequestID(r.Header.Get("X-Request-Id")), &proxy.Error{Code: code, Msg: msg})
		},
	})
}

// newAsserter returns the signer of the identity assertion, or nil when
// none is sent (see config.AssertionWanted).
func (a *App) newAsserter(keys *token.KeyStore, now func() time.Time) (proxy.Asserter, error) {
	want, err := a.cfg.AssertionWanted(keys.Keys().Algorithm())
	if err != nil || !want {
		if err == nil && a.cfg.Mode != config.ModeForwardAuth {
			a.log.Info("no identity assertion is sent upstream", zap.Bool("configured_off", a.cfg.Assertion.Enabled != nil))
		}
		return nil, err
	}
	as, err := token.NewAsserter(keys, token.AssertionSettings{Issuer: a.cfg.JWT.Issuer, Audience: a.cfg.AssertionAudience(),
		TTL: a.cfg.Assertion.TTL, CacheSize: a.cfg.Assertion.CacheSize, Now: now})
	if err != nil {
		return nil, err
	}
	return as, nil
}
