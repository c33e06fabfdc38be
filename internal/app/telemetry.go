package app

import (
	"context"
	"net/url"

	"go.uber.org/zap"

	"github.com/authgate/authgate/internal/telemetry"
)

// openTracing builds the tracer provider that the OTEL_* variables of
// d.Environ ask for; a.tracing stays nil when tracing is off. A setting
// the gateway cannot honour stops startup.
func (a *App) openTracing(d Deps) error {
	s, err := telemetry.FromEnv(d.Environ)
	if err != nil {
		return err
	}
	p, err := telemetry.New(context.Background(), s, telemetry.Options{ServiceVersion: d.Version})
	if err != nil {
		return err
	}
	a.tracing = p
	if p != nil {
		// Only the collector's address is logged: headers carry its
		// credentials, and a query string might.
		where := "default"
		if u, err := url.Parse(s.Endpoint); err == nil && u.Host != "" {
			where = u.Scheme + "://" + u.Host
		}
		a.log.Info("tracing on", zap.String("protocol", s.Protocol), zap.String("collector", where))
	}
	return nil
}

// closeTracing exports the spans still queued and stops the exporter. It
// is the last step of the stop order, after the server drained, so the
// spans of the last requests are in the export.
func (a *App) closeTracing() {
	ctx, cancel := context.WithTimeout(context.Background(), telemetry.ShutdownTimeout)
	defer cancel()
	if err := a.tracing.Shutdown(ctx); err != nil {
		a.log.Warn("tracing: final export failed", zap.Error(err))
	}
}
