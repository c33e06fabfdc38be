package proxy_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authgate/authgate/internal/nginxtest"
	"github.com/authgate/authgate/proxy"
)

// smuggled is request B hidden in the body of request A: an admin-only
// path with identity headers the client wrote. An upstream that ignores
// A's body parses it as its next request.
const smuggled = "GET /admin/users HTTP/1.1\r\nHost: app.example\r\nX-Auth-Subject: admin\r\nX-Auth-Roles: admin\r\n\r\n"

// bodilessMethods are the methods without body semantics that reach the
// policy; TRACE is refused before (405) and covered apart.
var bodilessMethods = []string{"GET", "HEAD", "OPTIONS", "DELETE"}

// withBody is method /public/a carrying body with Content-Length.
func withBody(method, body string, extra ...string) string {
	return fmt.Sprintf("%s /public/a HTTP/1.1\r\nHost: app.example\r\n%sContent-Length: %d\r\n\r\n%s",
		method, strings.Join(extra, ""), len(body), body)
}

// chunked is method /public/a carrying body as one chunk and a trailer.
func chunked(method, body string) string {
	return fmt.Sprintf("%s /public/a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nTrailer: X-Auth-Roles\r\n\r\n%x\r\n%s\r\n0\r\nX-Auth-Roles: admin\r\n\r\n",
		method, len(body), body)
}

const follow = "GET /public/b HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n"

// proxyNginxConf puts nginx in front of the gateway the usual way: HTTP/1.1
// with a keepalive pool, bodies passed on.
const proxyNginxConf = nginxtest.Prelude + `
  upstream authgate {
    server {{.Gateway}};
    keepalive 8;
  }
  server {
    listen 127.0.0.1:{{.Port}};
    location / {
      proxy_pass http://authgate;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`

// front is how the client reaches the gateway: directly or through nginx.
type front struct {
	name string
	addr string
}

// gatewayFronts serves a gateway for upstream on a real listener and, if
// nginx is installed, behind nginx too.
func gatewayFronts(t *testing.T, upstream string, mod func(*proxy.Options)) []front {
	t.Helper()
	e := newGatewayEnv(t, faPolicy, upstream, mod)
	srv := httptest.NewServer(e.gw)
	t.Cleanup(srv.Close)
	fronts := []front{{"direct", strings.TrimPrefix(srv.URL, "http://")}}
	if testing.Short() {
		return fronts
	}
	port := nginxtest.FreePort(t)
	nginxtest.Start(t, proxyNginxConf, map[string]any{"Port": port, "Gateway": strings.TrimPrefix(srv.URL, "http://")}, port)
	return append(fronts, front{"nginx", fmt.Sprintf("127.0.0.1:%d", port)})
}

// TestBodySmugglingPythonUpstream replays the desynchronisation attack on a
// real keep-alive Python upstream: an anonymous request on a public path
// carries, as its body, an admin request with forged identity headers,
// followed by an innocent request. The upstream must never parse a
// request the gateway did not authorize, and the follow-up must never get
// the admin page.
func TestBodySmugglingPythonUpstream(t *testing.T) {
	py := startPython(t)
	fronts := gatewayFronts(t, py.url(), nil)
	type attack struct {
		name   string
		raw    func(method string) string
		direct bool // only without nginx (nginx answers or rewrites it itself)
	}
	attacks := []attack{
		{"content-length body", func(m string) string { return withBody(m, smuggled) }, false},
		{"chunked body with trailer", func(m string) string { return chunked(m, smuggled) }, false},
		{"empty chunked body", func(m string) string {
			return m + " /public/a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		}, true},
		{"expect 100-continue with body", func(m string) string { return withBody(m, smuggled, "Expect: 100-continue\r\n") }, true},
		{"expect 100-continue without body", func(m string) string {
			return m + " /public/a HTTP/1.1\r\nHost: app.example\r\nExpect: 100-continue\r\n\r\n"
		}, true},
	}
	for _, f := range fronts {
		for _, a := range attacks {
			if a.direct && f.name != "direct" {
				continue
			}
			for _, m := range bodilessMethods {
				t.Run(f.name+"/"+a.name+"/"+m, func(t *testing.T) {
					before := len(py.settle())
					resp, body := roundTrip(t, f.addr, a.raw(m))
					_, next := roundTrip(t, f.addr, follow)
					got := py.settle()[before:]
					for _, r := range got {
						if strings.HasPrefix(r.Path, "/admin") || r.Subject != "" || r.Roles != "" {
							t.Errorf("upstream parsed %s %s as subject %q roles %q: one request became two", r.Method, r.Path, r.Subject, r.Roles)
						}
						if r.Path == "/public/a" {
							t.Errorf("upstream received %s /public/a with its body (content-length %q, transfer-encoding %q)", r.Method, r.ContentLength, r.TransferEncoding)
						}
					}
					if strings.Contains(next, "ADMIN") {
						t.Errorf("the next request got %q", next)
					}
					if resp.StatusCode != 400 {
						t.Errorf("%s with a body = %d %q, want 400", m, resp.StatusCode, body)
					}
					if m != "HEAD" && !strings.Contains(body, `"error":"bad_request"`) {
						t.Errorf("%s with a body answered %q, want the JSON error", m, body)
					}
					if len(got) != 1 || got[0].Path != "/public/b" {
						t.Errorf("upstream parsed %+v, want only GET /public/b", got)
					}
				})
			}
		}
	}
	t.Run("direct/TRACE", func(t *testing.T) {
		before := len(py.settle())
		resp, _ := roundTrip(t, fronts[0].addr, withBody("TRACE", smuggled))
		if resp.StatusCode != 405 {
			t.Errorf("TRACE with a body = %d, want 405", resp.StatusCode)
		}
		if got := py.settle()[before:]; len(got) != 0 {
			t.Errorf("upstream parsed %+v after a TRACE", got)
		}
	})
}

// TestBodyContentLengthZero: "Content-Length: 0" frames no content for any
// reader, so it is accepted, and forwarded without the header.
func TestBodyContentLengthZero(t *testing.T) {
	py := startPython(t)
	fronts := gatewayFronts(t, py.url(), nil)
	for _, f := range fronts {
		for _, m := range bodilessMethods {
			t.Run(f.name+"/"+m, func(t *testing.T) {
				before := len(py.settle())
				resp, _ := roundTrip(t, f.addr, withBody(m, ""))
				if resp.StatusCode != 200 {
					t.Fatalf("%s with Content-Length: 0 = %d, want 200", m, resp.StatusCode)
				}
				got := py.settle()[before:]
				if len(got) != 1 || got[0].Method != m || got[0].Path != "/public/a" {
					t.Fatalf("upstream parsed %+v, want one %s /public/a", got, m)
				}
				if cl := got[0].ContentLength; cl != "" && cl != "0" {
					t.Errorf("upstream got Content-Length %q", cl)
				}
			})
		}
	}
}

// TestBodyOptInPythonUpstream: with allow_bodies_on the body is forwarded,
// and the upstream connection that carried it is closed, so the smuggled
// request in it is never parsed.
func TestBodyOptInPythonUpstream(t *testing.T) {
	py := startPython(t)
	fronts := gatewayFronts(t, py.url(), func(o *proxy.Options) { o.AllowBodiesOn = []string{"GET", "DELETE", "OPTIONS", "HEAD"} })
	for _, f := range fronts {
		for _, m := range bodilessMethods {
			t.Run(f.name+"/"+m, func(t *testing.T) {
				before := len(py.settle())
				resp, _ := roundTrip(t, f.addr, withBody(m, smuggled))
				if resp.StatusCode != 200 {
					t.Fatalf("%s with a body (allowed) = %d, want 200", m, resp.StatusCode)
				}
				_, next := roundTrip(t, f.addr, follow)
				got := py.settle()[before:]
				if len(got) != 2 || got[0].Path != "/public/a" || got[1].Path != "/public/b" {
					t.Fatalf("upstream parsed %+v, want %s /public/a then GET /public/b", got, m)
				}
				if got[0].Connection != "close" {
					t.Errorf("the request with a body reached the upstream with Connection %q, want close", got[0].Connection)
				}
				if got[0].Conn == got[1].Conn {
					t.Errorf("the next request reused the connection that carried the body")
				}
				if strings.Contains(next, "ADMIN") {
					t.Errorf("the next request got %q", next)
				}
			})
		}
	}
}

// TestBodyOptInGoUpstream: an allowed body arrives whole, and a connection
// that carried one is never reused, counted by the upstream's accepts;
// requests without a body keep sharing one connection.
func TestBodyOptInGoUpstream(t *testing.T) {
	up := startGoUpstream(t)
	e := newGatewayEnv(t, faPolicy, up.srv.URL, func(o *proxy.Options) { o.AllowBodiesOn = []string{"GET"} })
	srv := httptest.NewServer(e.gw)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	const n = 4
	_, conns0 := up.snapshot()
	for i := 0; i < n; i++ {
		if resp, _ := roundTrip(t, addr, follow); resp.StatusCode != 200 {
			t.Fatalf("GET = %d", resp.StatusCode)
		}
	}
	_, conns1 := up.snapshot()
	if conns1-conns0 != 1 {
		t.Errorf("%d GETs without a body opened %d upstream connections, want 1 (reused)", n, conns1-conns0)
	}
	for i := 0; i < n; i++ {
		body := fmt.Sprintf(`{"query":{"match":{"n":%d}}}`, i)
		if resp, _ := roundTrip(t, addr, withBody("GET", body)); resp.StatusCode != 200 {
			t.Fatalf("GET with a body = %d", resp.StatusCode)
		}
		reqs, _ := up.snapshot()
		last := reqs[len(reqs)-1]
		if last.Body != body || !last.Close {
			t.Errorf("upstream got body %q close=%v, want %q with Connection: close", last.Body, last.Close, body)
		}
	}
	// The first body rode the idle connection and closed it; every request
	// after a body needs a fresh one, the last plain GET included.
	if resp, _ := roundTrip(t, addr, follow); resp.StatusCode != 200 {
		t.Fatalf("GET = %d", resp.StatusCode)
	}
	_, conns2 := up.snapshot()
	if conns2-conns1 != n {
		t.Errorf("%d GETs with a body and one without opened %d new upstream connections, want %d (none reused after a body)", n, conns2-conns1, n)
	}
	// A body on a method not named is still refused.
	if resp, _ := roundTrip(t, addr, withBody("DELETE", "x")); resp.StatusCode != 400 {
		t.Errorf("DELETE with a body (GET allowed only) = %d, want 400", resp.StatusCode)
	}
	// A WebSocket upgrade never carries a body, opted in or not.
	if resp, _ := roundTrip(t, addr, withBody("GET", "x", "Connection: Upgrade\r\nUpgrade: websocket\r\n")); resp.StatusCode != 400 {
		t.Errorf("WebSocket upgrade with a body = %d, want 400", resp.StatusCode)
	}
}

// TestBodyRefusedGoUpstream: a Go upstream reads and discards bodies
// itself, but the default still refuses them before they are forwarded,
// and the client connection is closed after the answer.
func TestBodyRefusedGoUpstream(t *testing.T) {
	up := startGoUpstream(t)
	for _, f := range gatewayFronts(t, up.srv.URL, nil) {
		for _, m := range bodilessMethods {
			t.Run(f.name+"/"+m, func(t *testing.T) {
				before, _ := up.snapshot()
				resp, _ := roundTrip(t, f.addr, withBody(m, smuggled))
				if resp.StatusCode != 400 {
					t.Errorf("%s with a body = %d, want 400", m, resp.StatusCode)
				}
				if f.name == "direct" && !resp.Close {
					t.Errorf("%s with a body: connection kept open after the refusal", m)
				}
				if reqs, _ := up.snapshot(); len(reqs) != len(before) {
					t.Errorf("upstream received %+v", reqs[len(before):])
				}
			})
		}
	}
}

func TestCheckAllowBodiesOn(t *testing.T) {
	for _, tc := range []struct {
		in []string
		ok bool
	}{
		{nil, true},
		{[]string{"GET"}, true},
		{[]string{"GET", "HEAD", "OPTIONS", "DELETE"}, true},
		{[]string{"TRACE"}, false},
		{[]string{"get"}, false},
		{[]string{"POST"}, false},
		{[]string{"GET", "GET"}, false},
	} {
		err := proxy.CheckAllowBodiesOn(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("CheckAllowBodiesOn(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "proxy: ") {
			t.Errorf("CheckAllowBodiesOn(%q) error %q lacks the package prefix", tc.in, err)
		}
	}
}
