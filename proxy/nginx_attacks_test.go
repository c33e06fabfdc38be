package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/http2/hpack"

	"github.com/authgate/authgate/internal/nginxtest"
)

// TestNginxForwardAuthH2C: an h2c-speaking app behind the README's nginx
// configuration. An anonymous client asks to upgrade a public request to
// h2c; were it allowed, nginx would splice the connection to the app, and
// the client would send /admin/users over HTTP/2 where no check sees it.
// Also with "Connection $http_connection", the usual WebSocket copy-paste
// that passes the client's HTTP2-Settings token on.
func TestNginxForwardAuthH2C(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	app := httptest.NewServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Proto+" "+r.URL.Path)
		mu.Unlock()
		_, _ = io.WriteString(w, "page "+r.URL.Path)
	}), &http2.Server{}))
	t.Cleanup(app.Close)
	appAddr := strings.TrimPrefix(app.URL, "http://")
	e := newFAEnv(t, faPolicy)
	fronts := []nginxFront{
		{Name: "readme", Port: freePort(t)},
		{Name: "http_connection", Port: freePort(t), adapt: func(t *testing.T, s string) string {
			return nginxtest.Replace(t, s, "proxy_set_header Connection $authgate_connection;", "proxy_set_header Connection $http_connection;")
		}},
	}
	startREADMENginx(t, e, appAddr, "", fronts)
	for _, f := range fronts {
		t.Run(f.Name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			status, admin := h2cAttack(t, fmt.Sprintf("127.0.0.1:%d", f.Port))
			mu.Lock()
			defer mu.Unlock()
			for _, s := range seen {
				if strings.HasSuffix(s, "/admin/users") {
					t.Errorf("the app served %s to an anonymous client", s)
				}
			}
			if admin != "" {
				t.Errorf("anonymous client got %q over h2c", admin)
			}
			if status != http.StatusForbidden {
				t.Errorf("h2c upgrade through nginx = %d, want 403; the app saw %q", status, seen)
			}
		})
	}
}

// h2cAttack asks addr to upgrade GET /public/a to h2c; on 101 it sends
// GET /admin/users on stream 3 and returns what came back.
func h2cAttack(t *testing.T, addr string) (status int, admin string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET /public/a HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, ""
	}
	// The tunnel is open: speak HTTP/2 to the app.
	_, _ = io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, br)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/admin/users"}, {":authority", "app.example"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	var body strings.Builder
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return resp.StatusCode, body.String()
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			if f.StreamID == 3 {
				body.Write(f.Data())
				if f.StreamEnded() {
					return resp.StatusCode, body.String()
				}
			}
		case *http2.GoAwayFrame:
			return resp.StatusCode, body.String()
		}
	}
}

// TestNginxForwardAuthBodies: the README's nginx configuration with a
// keepalive pool towards a Python app that ignores GET bodies. The check
// sees the body through X-Original-Content-Length and refuses it, so the
// admin request hidden in the body never reaches the app.
func TestNginxForwardAuthBodies(t *testing.T) {
	py := startPython(t)
	e := newFAEnv(t, faPolicy)
	fronts := []nginxFront{
		{Name: "readme", Port: freePort(t)},
		{Name: "keepalive", Port: freePort(t), adapt: func(t *testing.T, s string) string {
			s = nginxtest.Replace(t, s, "proxy_pass http://"+py.addr+";", "proxy_pass http://app_pool;")
			return nginxtest.Replace(t, s, "proxy_set_header Connection $authgate_connection;", `proxy_set_header Connection "";`)
		}},
	}
	startREADMENginx(t, e, py.addr, "upstream app_pool {\n  server "+py.addr+";\n  keepalive 4;\n}\n", fronts)
	for _, f := range fronts {
		for _, m := range bodilessMethods {
			for _, shape := range []struct {
				name string
				raw  string
			}{{"content-length", withBody(m, smuggled)}, {"chunked", chunked(m, smuggled)}} {
				t.Run(f.Name+"/"+m+"/"+shape.name, func(t *testing.T) {
					addr := fmt.Sprintf("127.0.0.1:%d", f.Port)
					before := len(py.settle())
					resp, _ := roundTrip(t, addr, shape.raw)
					_, next := roundTrip(t, addr, follow)
					got := py.settle()[before:]
					for _, r := range got {
						if strings.HasPrefix(r.Path, "/admin") || r.Subject != "" {
							t.Errorf("app parsed %s %s as subject %q: one request became two", r.Method, r.Path, r.Subject)
						}
					}
					if strings.Contains(next, "ADMIN") {
						t.Errorf("the next request got %q", next)
					}
					if resp.StatusCode != http.StatusForbidden {
						t.Errorf("%s with a body through nginx = %d, want 403", m, resp.StatusCode)
					}
				})
			}
		}
	}
}
