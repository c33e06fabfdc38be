package cli

import (
	"context"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authgate/authgate/internal/app"
)

// serveFlags are the flags of serve, which the root command takes too.
type serveFlags struct {
	config string
	demo   string
}

func (f *serveFlags) register(cmd *cobra.Command) {
	addConfigFlag(cmd, &f.config)
	cmd.Flags().StringVar(&f.demo, "demo-upstream", "", "also run the built-in demo upstream on `ADDR` (for trying authgate out)")
}

func newServeCmd(o *Options) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (the default command)",
		Long: `Run the gateway until SIGTERM or SIGINT: load the config, the policy and
the users and keys files (every error is reported, and the gateway does not
start), then serve the proxy and admin listeners. SIGHUP reloads the files.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.serve(cmd.Context(), f)
		},
	}
	f.register(cmd)
	return cmd
}

func (o *Options) serve(ctx context.Context, f serveFlags) error {
	cfg, sec, err := loadConfigAndSecrets(f.config, o.Environ)
	if err != nil {
		return err
	}
	log, err := app.NewLogger(cfg.Logging, zapcore.Lock(zapcore.AddSync(o.Stderr)))
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	deps := app.Deps{Logger: log, Version: o.Version, Revision: o.Revision, Environ: o.Environ}
	if p := o.Process; p != nil {
		if cfg.UsersFile != "" {
			// bcrypt runs on threads of the lowest OS priority, but while
			// it runs it still holds one of Go's processors. Giving it
			// processors of its own leaves the CPUs' worth of processors
			// to proxied traffic, and the OS scheduler, not Go's, lets
			// bcrypt have only what proxying leaves over.
			procs := p.MaxProcs()
			deps.BcryptConcurrency = bcryptConcurrency(cfg.Auth.BcryptConcurrency, procs)
			p.SetMaxProcs(procs + deps.BcryptConcurrency)
		}
		if cfg.UsesRedis(sec) {
			// go-redis logs through a process-wide logger; route it into
			// ours so its lines are structured JSON like every other.
			p.SetRedisLogger(app.RedisLogger{Log: log.With(zap.String("component", "redis"))})
		}
	}
	if f.demo != "" {
		stopDemo, err := app.StartDemoUpstream(f.demo, log)
		if err != nil {
			return err
		}
		defer stopDemo()
	}
	a, err := app.New(cfg, sec, deps)
	if err != nil {
		return err
	}
	ls, err := app.Listen(cfg.Listen)
	if err != nil {
		return err
	}
	return a.Run(ctx, ls)
}

// bcryptConcurrency is auth.bcrypt_concurrency, or when that is zero the
// issuer's default, half the processors there were before bcrypt got its
// own (at least one).
func bcryptConcurrency(configured, procs int) int {
	if configured > 0 {
		return configured
	}
	return max(1, procs/2)
}
