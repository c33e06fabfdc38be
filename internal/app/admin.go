package app

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/policy"
)

func (a *App) stateHealthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Auth.StateTimeout)
	defer cancel()
	return a.state.Ping(ctx) == nil
}

// AdminHandler serves /healthz, /readyz, /metrics and /explain.
func (a *App) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !a.ready.Load() || a.draining.Load() || a.policy.Load() == nil || (a.external != nil && !a.external.Ready()) {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"not ready"}`+"\n")
			return
		}
		if a.upHealth != nil {
			if err := a.upHealth(r.Context()); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"status":"upstream not ready"}`+"\n")
				return
			}
		}
		// A store outage fails login, refresh and logout closed but leaves
		// proxied traffic with valid access tokens flowing, so it is
		// reported here without taking the pod out of rotation.
		a.writeReady(w, a.stateHealthy(r.Context()))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	// /explain?method=GET&path=/admin/x&role=admin[&anonymous=true] shows
	// how the active policy decides a request, like `authgate explain`.
	// It is on the admin listener only, which must stay off the ingress.
	mux.HandleFunc("GET /explain", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		method, path := q.Get("method"), q.Get("path")
		anon := q.Get("anonymous") == "true"
		if method == "" || path == "" || (anon && len(q["role"]) > 0) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"bad_request","message":"want method and path, and role or anonymous=true (not both)"}`+"\n")
			return
		}
		set := a.policy.Load()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "policy: %s (hash %s)\n", a.cfg.PolicyFile, set.Hash())
		_, _ = io.WriteString(w, set.Explain(policy.Request{Method: method, Path: path, Authenticated: !anon, Roles: token.NormalizeRoles(q["role"])}).String())
	})
	return mux
}
