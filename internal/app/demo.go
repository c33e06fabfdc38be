package app

import (
	"encoding/json"
	"errors"
	"html"
	"io"
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
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		// A browser gets a page: who the gateway says is signed in, and a
		// way out.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		var b strings.Builder
		b.WriteString("<!doctype html><html lang=\"en\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>authgate demo</title>" +
			"<h1>authgate demo upstream</h1><p>" + html.EscapeString(r.Method+" "+r.URL.EscapedPath()) + "</p><table>")
		for _, k := range names {
			b.WriteString("<tr><th align=left>" + html.EscapeString(k) + "</th><td>" + html.EscapeString(identity[k]) + "</td></tr>")
		}
		b.WriteString("</table><p><a href=\"/auth/sign_out\">Sign out</a></p></html>\n")
		_, _ = io.WriteString(w, b.String())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{"upstream": "authgate demo", "method": r.Method, "path": r.URL.EscapedPath(), "headers": identity})
}
