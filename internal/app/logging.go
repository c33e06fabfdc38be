package app

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/authgate/authgate/internal/config"
)

// NewLogger builds the JSON (or console) logger the config asks for.
func NewLogger(c config.LoggingConfig, w zapcore.WriteSyncer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, w, lvl)), nil
}

// RedisLogger adapts zap to go-redis's logger.
type RedisLogger struct{ Log *zap.Logger }

// Printf logs a go-redis message as a warning.
func (l RedisLogger) Printf(_ context.Context, format string, v ...any) {
	l.Log.Warn(fmt.Sprintf(format, v...))
}
