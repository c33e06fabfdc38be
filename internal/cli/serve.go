package cli

import (
	"context"
	"flag"
	"io"
	"runtime"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authgate/authgate/internal/app"
)

func cmdServe(ctx context.Context, version string, args, environ []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFlag := fs.String("config", "", "config file (default $AUTHGATE_CONFIG)")
	demo := fs.String("demo-upstream", "", "also run the built-in demo upstream on this address (for trying authgate out)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, sec, err := loadConfigAndSecrets(*cfgFlag, environ)
	if err != nil {
		return err
	}
	log, err := app.NewLogger(cfg.Logging, zapcore.Lock(zapcore.AddSync(stderr)))
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if cfg.UsersFile != "" {
		// bcrypt runs on threads of the lowest OS priority, but while it
		// runs it still holds one of Go's processors. Giving it processors
		// of its own leaves the CPUs' worth of processors to proxied
		// traffic, and the OS scheduler, not Go's, lets bcrypt have only
		// what proxying leaves over.
		procs := runtime.GOMAXPROCS(0)
		if cfg.Auth.BcryptConcurrency == 0 {
			cfg.Auth.BcryptConcurrency = max(1, procs/2)
		}
		runtime.GOMAXPROCS(procs + cfg.Auth.BcryptConcurrency)
	}
	if sec.RedisURL != "" {
		// go-redis logs through a process-wide logger; route it into ours
		// so its lines are structured JSON like every other.
		redis.SetLogger(app.RedisLogger{Log: log.With(zap.String("component", "redis"))})
	}
	if *demo != "" {
		stopDemo, err := app.StartDemoUpstream(*demo, log)
		if err != nil {
			return err
		}
		defer stopDemo()
	}
	a, err := app.New(cfg, sec, app.Deps{Logger: log, Version: version})
	if err != nil {
		return err
	}
	ls, err := app.Listen(cfg.Listen)
	if err != nil {
		return err
	}
	return a.Run(ctx, ls)
}
