package app

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// StartDemoUpstream runs a tiny upstream that echoes what it received,
// identity headers included, so a newcomer can see what the gateway passes
// on. It is for trying authgate out, not for production.
func StartDemoUpstream(addr string, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(demoEcho), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo upstream stopped", zap.Error(err))
		}
	}()
	log.Info("demo upstream started", zap.String("address", ln.Addr().String()))
	return func() { _ = srv.Close() }, nil
}

func demoEcho(w http.ResponseWriter, r *http.Request) {
	identity := map[string]string{}
	var names []string
	for k := range r.Header {
		if strings.HasPrefix(k, "X-Auth-") || strings.HasPrefix(k, "X-Forwarded-") || k == "X-Request-Id" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		identity[k] = r.Header.Get(k)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{"upstream": "authgate demo", "method": r.Method, "path": r.URL.EscapedPath(), "headers": identity})
}
