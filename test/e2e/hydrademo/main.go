// Command hydrademo runs single sign-on on a laptop: a local OpenID
// Provider (Ory Hydra with its in-memory database and a demo login app),
// the gateway signing browsers in through it, and the demo upstream. Run
// it with `make hydra-demo`, then open http://localhost:8080/admin/users.
// It is a demo, not a deployment.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/internal/app"
	"github.com/authgate/authgate/internal/config"
	"github.com/authgate/authgate/internal/hydratest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hydra-demo:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("hydra", "", "the hydra binary (scripts/hydra.sh prints it)")
	listen := flag.String("listen", "localhost:8080", "the gateway's address")
	flag.Parse()
	if *bin == "" {
		return fmt.Errorf("--hydra is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log, _ := zap.NewDevelopment()
	defer func() { _ = log.Sync() }()

	users := map[string]hydratest.User{
		"alice": {Password: "alice-idp-password", Roles: []string{"admin", "user"}},
		"bob":   {Password: "bob-idp-password", Roles: []string{"user"}},
	}
	h, err := hydratest.Start(ctx, hydratest.Options{Binary: *bin, Users: users, Name: "Local Hydra", AccessTokenTTL: 5 * time.Minute})
	if err != nil {
		return err
	}
	defer h.Close()
	external := "http://" + *listen
	const secret = "demo-client-secret-0123456789"
	if err := h.CreateClient(hydratest.Client{ID: "authgate-demo", Secret: secret,
		RedirectURIs: []string{external + "/auth/callback"}, PostLogoutRedirectURIs: []string{external + "/auth/sign_out"},
		BackchannelLogoutURI: external + "/auth/backchannel_logout/hydra"}); err != nil {
		return err
	}
	stopUp, err := app.StartDemoUpstream("127.0.0.1:8081", log)
	if err != nil {
		return err
	}
	defer stopUp()

	root, err := os.Getwd()
	if err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Path = filepath.Join(root, "config.example.yaml")
	cfg.Upstream.URL = "http://127.0.0.1:8081"
	cfg.Listen.Address, cfg.Listen.AdminAddress = *listen, "localhost:9090"
	cfg.Listen.ShutdownDelay = 0
	cfg.PolicyFile = filepath.Join(root, "examples", "policy.yaml")
	cfg.UsersFile = filepath.Join(root, "examples", "users.yaml")
	cfg.Sessions.Enabled, cfg.Sessions.ExternalURL = true, external
	cfg.Issuers = []jwks.IssuerConfig{{
		Issuer: h.Issuer, Discovery: true, Audiences: []string{"authgate-demo"}, RolesClaim: "roles",
		Login: &jwks.LoginConfig{ID: "hydra", Name: "Local Hydra", ClientID: "authgate-demo",
			Scopes: []string{"offline_access", "profile", "email"}, BackchannelLogout: true},
	}}
	if err := cfg.Validate(); err != nil {
		return err
	}
	sec := config.Secrets{JWT: []byte(os.Getenv("AUTHGATE_JWT_SECRET")), ClientSecrets: map[string]string{"hydra": secret}}
	a, err := app.New(&cfg, sec, app.Deps{Logger: log, Version: "hydra-demo"})
	if err != nil {
		return err
	}
	ls, err := app.Listen(cfg.Listen)
	if err != nil {
		return err
	}
	fmt.Printf("\nOpen %s/admin/users and choose \"Sign in with Local Hydra\":\n"+
		"  alice / alice-idp-password (admin), bob / bob-idp-password (no admin: 403)\n"+
		"  or sign in locally as alice / alice-demo-password. Provider: %s\n\n", external, h.Issuer)
	return a.Run(ctx, ls)
}
