package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/httperr"
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
		// reported here without taking the pod out of rotation. With the
		// access-token revocation check failing closed, though, every
		// request with a token gets 503: the pod is then not ready, so
		// that traffic goes to replicas that can serve it.
		up := a.stateHealthy(r.Context())
		if rc := a.cfg.Auth.AccessRevocation; !up && rc.Enabled && !rc.FailOpen {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"not ready","state_store":"down"}`+"\n")
			return
		}
		a.writeReady(w, up)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	if !a.cfg.Listen.AdminExplain {
		// /explain reveals the whole policy and where its file is to
		// anyone who reaches the admin port; it is an opt-in.
		return mux
	}
	// /explain?method=GET&path=/admin/x&role=admin[&anonymous=true] shows
	// how the active policy decides a request, like `authgate explain`.
	// It is on the admin listener only, which must stay off the ingress.
	mux.HandleFunc("GET /explain", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		method, path := q.Get("method"), q.Get("path")
		anon := q.Get("anonymous") == "true"
		if method == "" || path == "" || (anon && len(q["role"]) > 0) {
			httperr.Write(w, "", &httperr.Error{Code: http.StatusBadRequest, Msg: "want method and path, and role or anonymous=true (not both)"})
			return
		}
		// The caller in the inline tests' vocabulary, as `authgate explain`.
		who := policy.Caller{Anonymous: anon, Roles: token.NormalizeRoles(q["role"]), Issuer: q.Get("issuer"),
			AuthMethod: q.Get("auth_method"), KeyName: q.Get("key_name"), Subject: q.Get("subject"), Scopes: q["scope"],
			Email: q.Get("email"), ClientIP: q.Get("client_ip"), Host: q.Get("host")}
		req, err := who.Request(method, "/")
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"bad_request","message":"invalid caller: see authgate explain --help"}`+"\n")
			return
		}
		req.Path = path // explained as given: Explain reports a rejected path
		set := a.policy.Load()
		if set == nil {
			httperr.Write(w, "", &httperr.Error{Code: http.StatusServiceUnavailable, Msg: "policy not loaded", RetryAfter: time.Second})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "policy: %s (hash %s)\n", a.cfg.PolicyFile, set.Hash())
		_, _ = io.WriteString(w, set.Explain(req).String())
	})
	return mux
}
