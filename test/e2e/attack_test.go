package e2e

// Adversarial end-to-end tests. Each test sends one class of attack through
// a real gateway and asserts the safe outcome, so that a weakness shows up
// as a failing test. Tests for attacks that are handled are kept too: they
// document the defence and keep it from regressing.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/users"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/jwks"
	"github.com/authgate/authgate/authn/jwks/jwkstest"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/internal/config"
)

// atkSeen is what an attack upstream observed of one request, including the
// request trailers, which the plain recorder does not read.
type atkSeen struct {
	Method  string
	Target  string
	Header  http.Header
	Trailer http.Header
	Body    string
}

// atkSink is an upstream that reads every request body to the end (so that
// trailers are parsed) and records what it saw.
type atkSink struct {
	mu   sync.Mutex
	reqs []atkSeen
}

func (s *atkSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, atkSeen{Method: r.Method, Target: r.RequestURI, Header: r.Header.Clone(), Trailer: r.Trailer.Clone(), Body: string(body)})
	s.mu.Unlock()
	_, _ = io.WriteString(w, "upstream ok")
}

func (s *atkSink) all() []atkSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// atkIdentityLike reports whether header name k would be read as one of the
// gateway's identity headers by some upstream stack (case-insensitive, "_"
// as "-").
func atkIdentityLike(k string) bool {
	n := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
	return strings.HasPrefix(n, "x-auth-")
}

// atkRawConn sends several requests on one connection and returns every
// response read until the connection is closed or goes quiet.
func atkRawConn(t *testing.T, addr, data string) []*http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, data); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, resp)
	}
}

// TestAttackRequestTrailersCannotCarryIdentity sends identity headers as
// HTTP/1.1 request trailers (declared with Trailer:, with and without
// "Te: trailers"). The stripper only walks r.Header; an upstream that reads
// or merges trailers must still never see a client-written identity.
func TestAttackRequestTrailersCannotCarryIdentity(t *testing.T) {
	up := &atkSink{}
	e := newEnv(t, "", up)
	tests := []struct {
		name, path, auth, te string
	}{
		{"public anonymous", "/public/x", "", ""},
		{"public anonymous with te trailers", "/public/x", "", "Te: trailers\r\n"},
		{"authenticated reader", "/api/x", "X-API-Key: " + testReaderKey + "\r\n", "Te: trailers\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.all())
			req := "POST " + tc.path + " HTTP/1.1\r\nHost: x\r\n" + tc.auth + tc.te +
				"Transfer-Encoding: chunked\r\nTrailer: X-Auth-Subject, X-Auth-Roles, X_Auth_Method\r\nConnection: close\r\n\r\n" +
				"5\r\nhello\r\n0\r\nX-Auth-Subject: alice\r\nX-Auth-Roles: admin\r\nX_Auth_Method: jwt\r\nX-Auth-Key-Name: admin-bot\r\n\r\n"
			code, body := raw(t, e.addr(), req)
			all := up.all()
			if len(all) == before {
				// Refusing the request is safe too.
				if code < 400 {
					t.Fatalf("status %d %q but the upstream saw nothing", code, body)
				}
				return
			}
			got := all[len(all)-1]
			if got.Body != "hello" {
				t.Fatalf("upstream body = %q, want hello", got.Body)
			}
			for k, v := range got.Trailer {
				if !atkIdentityLike(k) {
					continue
				}
				if strings.Join(v, "") != "" {
					t.Errorf("upstream received client trailer %s: %q", k, v)
				} else {
					// The values are dropped only because the reverse
					// proxy clones Trailer before the body is read; the
					// client still chooses reserved names the upstream
					// sees declared (Trailer: header, r.Trailer keys).
					t.Errorf("upstream request declares client-chosen reserved trailer %s", k)
				}
			}
			for k, v := range got.Header {
				if !atkIdentityLike(k) {
					continue
				}
				if tc.auth == "" || strings.Contains(strings.Join(v, ","), "admin") || strings.Contains(strings.Join(v, ","), "alice") {
					t.Errorf("upstream received identity header %s: %q", k, v)
				}
			}
		})
	}
}

// TestAttackContentLengthWithTransferEncoding sends a request framed both
// by Content-Length and by chunked Transfer-Encoding, with a second request
// hidden after the chunked body but inside the Content-Length. A front proxy
// that frames by Content-Length sees one request; if the gateway frames by
// chunked and keeps the connection, it parses the hidden one as a new
// request (request smuggling, RFC 9112 §11.2). The gateway must refuse the
// ambiguous message or close the connection after it, so the hidden request
// never reaches the upstream.
func TestAttackContentLengthWithTransferEncoding(t *testing.T) {
	e := newEnv(t, "", nil)
	hidden := "GET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	chunked := "0\r\n\r\n" + hidden
	req := "POST /public/front HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(chunked)) +
		"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
	resps := atkRawConn(t, e.addr(), req)
	if len(resps) == 0 {
		t.Fatal("no response")
	}
	// RFC 9112 §6.1: whether the server rejects such a request or processes
	// it by Transfer-Encoding, it MUST close the connection after
	// responding. Either way the hidden request is never parsed.
	for _, r := range e.up.all() {
		if r.Path == "/public/smuggled" {
			t.Errorf("upstream received the request hidden in the body of an ambiguously framed request (first answer %d, %d responses on one connection)", resps[0].StatusCode, len(resps))
		}
	}
}

// TestAttackFramingHandled documents framing attacks the HTTP server
// already refuses.
func TestAttackFramingHandled(t *testing.T) {
	e := newEnv(t, "", nil)
	// The server answers "OPTIONS *" itself (200, no body); that is fine as
	// long as nothing is proxied.
	serverAnswers := map[string]bool{"asterisk form": true}
	tests := []struct{ name, req string }{
		{"two different content lengths", "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"},
		{"transfer-encoding list", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"transfer-encoding twice", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"obfuscated transfer-encoding", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"space before colon", "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Auth-Subject : admin\r\n\r\n"},
		{"two host headers", "GET /public/x HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
		{"host with a path", "GET /public/x HTTP/1.1\r\nHost: x/admin\r\n\r\n"},
		{"h2c prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"asterisk form", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"userinfo in absolute form", "GET http://u:p@x/admin/x HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"upgrade list with h2c", "GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n"},
		{"two upgrade headers", "GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.up.count()
			resps := atkRawConn(t, e.addr(), strings.Replace(tc.req, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
			if len(resps) > 0 && resps[0].StatusCode < 400 && !serverAnswers[tc.name] {
				t.Errorf("%q = %d, want a 4xx/5xx", firstLine(tc.req), resps[0].StatusCode)
			}
			if e.up.count() != before {
				t.Errorf("upstream saw %q", firstLine(tc.req))
			}
		})
	}
	t.Run("websocket upgrade is authorized first", func(t *testing.T) {
		before := e.up.count()
		code, _ := raw(t, e.addr(), "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		if code != http.StatusUnauthorized || e.up.count() != before {
			t.Errorf("anonymous upgrade on /ws = %d (upstream +%d), want 401 and nothing upstream", code, e.up.count()-before)
		}
	})
}

// atkHeadPolicy protects one document for GET with a role, under a tree that
// is public for every method: the documented precedence lets a method rule
// override a method-less one.
const atkHeadPolicy = `roles: [admin]
rules:
  - id: docs
    path: /docs/**
    public: true
  - id: docs-secret
    path: /docs/secret
    methods: [GET]
    roles: [admin]
`

// TestAttackHeadIsDecidedLikeGet sends HEAD to a path whose GET needs the
// admin role. HEAD is GET without a body (RFC 9110 §9.3.2): Go's ServeMux
// routes "GET /docs/secret" to HEAD requests too, and so do most
// frameworks, so the protected handler runs for an anonymous caller and
// its headers (and side effects) leak. HEAD must be decided as GET.
func TestAttackHeadIsDecidedLikeGet(t *testing.T) {
	e := newEnv(t, atkHeadPolicy, nil)
	if resp, _ := e.do("GET", "/docs/secret"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /docs/secret anonymous = %d, want 401", resp.StatusCode)
	}
	t.Run("proxy", func(t *testing.T) {
		before := e.up.count()
		resp, _ := e.do("HEAD", "/docs/secret")
		if resp.StatusCode != http.StatusUnauthorized || e.up.count() != before {
			t.Errorf("HEAD /docs/secret anonymous = %d, upstream saw %d requests; want 401 like GET and nothing upstream", resp.StatusCode, e.up.count()-before)
		}
	})
	t.Run("forward-auth", func(t *testing.T) {
		fa := newEnv(t, atkHeadPolicy, nil, atkForwardAuthFrom("127.0.0.1/32", "::1/128"))
		for _, m := range []string{"GET", "HEAD"} {
			resp, _ := fa.do("GET", "/_authgate/verify", "X-Original-Method", m, "X-Original-Uri", "/docs/secret")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("check of anonymous %s /docs/secret = %d, want 401", m, resp.StatusCode)
			}
		}
	})
}

// atkForwardAuthFrom runs the gateway in mode both, believing forward-auth
// headers from peers.
func atkForwardAuthFrom(peers ...string) envOption {
	return func(c *config.Config) {
		c.Mode = config.ModeBoth
		c.ForwardAuth.TrustedPeers = peers
	}
}

// TestAttackForwardAuthHeaderTrust documents the forward-auth defences: the
// original method and URI are believed only from trusted peers, the two
// header families must agree, and the proxy path never reads them.
func TestAttackForwardAuthHeaderTrust(t *testing.T) {
	t.Run("untrusted peer", func(t *testing.T) {
		e := newEnv(t, "", nil, atkForwardAuthFrom("192.0.2.1/32"))
		resp, _ := e.do("GET", "/_authgate/verify", "X-Original-Method", "GET", "X-Original-Uri", "/public/x")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("check from an untrusted peer = %d, want 403", resp.StatusCode)
		}
	})
	e := newEnv(t, "", nil, atkForwardAuthFrom("127.0.0.1/32", "::1/128"))
	tests := []struct {
		name string
		hdr  []string
		want int
	}{
		{"nginx pair names a public uri, client adds traefik pair for admin", []string{"X-Original-Method", "GET", "X-Original-Uri", "/admin/x", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/public/x"}, 403},
		{"half pair", []string{"X-Original-Uri", "/public/x"}, 403},
		{"duplicate uri", []string{"X-Original-Method", "GET", "X-Original-Uri", "/public/x", "X-Original-Uri", "/admin/x"}, 403},
		{"absolute uri", []string{"X-Original-Method", "GET", "X-Original-Uri", "http://evil/public/x"}, 403},
		{"dot segments", []string{"X-Original-Method", "GET", "X-Original-Uri", "/public/%2e%2e/admin/x"}, 403},
		{"lower-case method", []string{"X-Original-Method", "get", "X-Original-Uri", "/public/x"}, 403},
		{"spoofed identity headers are no credential", []string{"X-Original-Method", "GET", "X-Original-Uri", "/admin/x", "X-Auth-Roles", "admin", "X-Auth-Subject", "alice"}, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := e.do("GET", "/_authgate/verify", tc.hdr...)
			if resp.StatusCode != tc.want {
				t.Errorf("check = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	t.Run("proxy ignores the forward-auth headers", func(t *testing.T) {
		before := e.up.count()
		resp, _ := e.do("GET", "/admin/x", "X-Original-Method", "GET", "X-Original-Uri", "/public/x")
		if resp.StatusCode != http.StatusUnauthorized || e.up.count() != before {
			t.Errorf("GET /admin/x naming /public/x = %d, want 401", resp.StatusCode)
		}
	})
}

// TestAttackSlowRequestBodyHoldsSlots starts as many uploads as the
// concurrency cap allows and stalls them after two bytes of body. A slot is
// held for the whole upstream round trip, and no timeout covers reading
// the request body (the server sets only ReadHeaderTimeout, and the
// transport's ResponseHeaderTimeout starts after the body is sent), so
// max_in_flight idle connections from one anonymous client lock every
// other caller out with 503 for as long as they stay open (slow-body
// slowloris). A stalled body must be cut off within a few header timeouts.
func TestAttackSlowRequestBodyHoldsSlots(t *testing.T) {
	up := &atkSink{}
	e := newEnv(t, "", up, func(c *config.Config) {
		c.Listen.MaxInFlight = 2
		c.Listen.ReadHeaderTimeout = time.Second
		c.Listen.BodyReadTimeout = time.Second
	})
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", e.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nab"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	var codes []int
	for time.Since(start) < 5*time.Second {
		resp, _ := e.do("GET", "/public/ok")
		if resp.StatusCode == http.StatusOK {
			return
		}
		if len(codes) == 0 || codes[len(codes)-1] != resp.StatusCode {
			codes = append(codes, resp.StatusCode)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Errorf("two stalled uploads kept every other request out for %v (statuses %v)", time.Since(start).Round(time.Second), codes)
}

// atkOverridePolicy lets any authenticated caller use /api, but only admins
// may DELETE an item.
const atkOverridePolicy = `roles: [admin, reader]
rules:
  - id: api
    path: /api/**
    authenticated: true
  - id: delete-item
    path: /api/items/*
    methods: [DELETE]
    roles: [admin]
`

// TestAttackMethodOverrideHeaders sends POST with a method-override header
// naming DELETE. Rails, Laravel, Express method-override, Spring's
// HiddenHttpMethodFilter variants and many API frameworks honour these
// headers, so the upstream performs a DELETE the policy decided as POST.
// The gateway must not forward them (or must refuse the request).
func TestAttackMethodOverrideHeaders(t *testing.T) {
	e := newEnv(t, atkOverridePolicy, nil)
	if resp, _ := e.do("DELETE", "/api/items/7", "X-API-Key", testReaderKey); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("DELETE as reader = %d, want 403", resp.StatusCode)
	}
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		t.Run(h, func(t *testing.T) {
			before := e.up.count()
			resp, _ := e.do("POST", "/api/items/7", "X-API-Key", testReaderKey, h, "DELETE")
			if e.up.count() == before {
				if resp.StatusCode < 400 {
					t.Errorf("status %d without reaching the upstream", resp.StatusCode)
				}
				return
			}
			if v := e.up.last(t).Header.Get(h); v != "" {
				t.Errorf("upstream received %s: %s on a request authorized as POST", h, v)
			}
		})
	}
}

// TestAttackPathOverrideHeaders sends a public path with headers that some
// upstreams use instead of the request line to route (Symfony/Zend
// X-Original-URL and X-Rewrite-URL, CVE-2018-14773; IIS ARR; the
// forward-auth headers X-Original-URI/X-Forwarded-Uri that frameworks
// behind nginx/Traefik read). The path the upstream routes must be the path
// the gateway authorized.
func TestAttackPathOverrideHeaders(t *testing.T) {
	e := newEnv(t, "", nil)
	for _, h := range []string{"X-Original-URL", "X-Rewrite-URL", "X-Original-URI", "X-Forwarded-Uri", "X-Forwarded-Path"} {
		t.Run(h, func(t *testing.T) {
			before := e.up.count()
			resp, _ := e.do("GET", "/public/x", h, "/admin/x")
			if e.up.count() == before {
				if resp.StatusCode < 400 {
					t.Errorf("status %d without reaching the upstream", resp.StatusCode)
				}
				return
			}
			if v := e.up.last(t).Header.Get(h); v != "" {
				t.Errorf("upstream received %s: %s on a request authorized for /public/x", h, v)
			}
		})
	}
}

// TestAttackUntrustedClientAddressAndSchemeHeaders sends, from an
// untrusted peer, the other headers upstream frameworks read for the client
// address or the scheme: Rails' remote_ip reads Client-IP, many stacks read
// True-Client-IP/CF-Connecting-IP/X-Client-IP, and Rack decides https from
// X-Forwarded-Ssl or X-Forwarded-Scheme before X-Forwarded-Proto. The
// gateway trusts X-Forwarded-* only from trusted proxies; these aliases
// must not reach the upstream from anyone else either, or an upstream IP
// allow-list or "secure request" check is bypassed.
func TestAttackUntrustedClientAddressAndSchemeHeaders(t *testing.T) {
	e := newEnv(t, "", nil)
	hdrs := []string{"True-Client-IP", "X-Client-IP", "Client-IP", "CF-Connecting-IP", "X-Cluster-Client-IP", "Fastly-Client-IP", "X-Originating-IP",
		"X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Url-Scheme", "Front-End-Https"}
	values := map[string]string{"X-Forwarded-Ssl": "on", "X-Forwarded-Scheme": "https", "X-Url-Scheme": "https", "Front-End-Https": "on"}
	for _, h := range hdrs {
		t.Run(h, func(t *testing.T) {
			v := values[h]
			if v == "" {
				v = "10.0.0.1"
			}
			e.do("GET", "/public/x", h, v)
			if got := e.up.last(t).Header.Get(h); got != "" {
				t.Errorf("upstream received %s: %s from an untrusted peer", h, got)
			}
		})
	}
}

// TestAttackUnlistedMethodsAreRefused sends methods that are neither
// standard nor named by the policy. WebDAV MOVE/COPY carry a second target
// in Destination: that the policy never sees; PURGE and other extension
// methods act on caches and frameworks. A method-less public rule must not
// open them; only methods the gateway knows or the policy names pass.
func TestAttackUnlistedMethodsAreRefused(t *testing.T) {
	e := newEnv(t, "", nil)
	for _, m := range []string{"MOVE", "COPY", "PURGE", "PROPPATCH", "FOO"} {
		t.Run(m, func(t *testing.T) {
			before := e.up.count()
			code, _ := raw(t, e.addr(), m+" /public/x HTTP/1.1\r\nHost: x\r\nDestination: http://x/admin/x\r\nConnection: close\r\n\r\n")
			if code != http.StatusMethodNotAllowed || e.up.count() != before {
				t.Errorf("%s /public/x = %d, upstream +%d; want 405 and nothing upstream", m, code, e.up.count()-before)
			}
		})
	}
}

// TestAttackExternalIssuersCannotShareASubject signs a token with the same
// subject at two external issuers. The upstream receives only the identity
// headers, so if both callers produce the same headers, a user of one
// identity provider (a partner IdP, a self-service tenant) acts as the
// same-named user of the other (cross-issuer identity confusion).
func TestAttackExternalIssuersCannotShareASubject(t *testing.T) {
	corp, partner := jwkstest.NewIdP(t), jwkstest.NewIdP(t)
	cfg := func(idp *jwkstest.IdP) jwks.IssuerConfig {
		return jwks.IssuerConfig{Issuer: idp.Issuer(), JWKSURI: idp.JWKSURI(), Audiences: []string{"my-app"}, Algorithms: []string{"RS256"}}
	}
	e := newEnv(t, "", nil, func(c *config.Config) { c.Issuers = []jwks.IssuerConfig{cfg(corp), cfg(partner)} })
	waitReady(t, e, 200)
	identity := func(idp *jwkstest.IdP) http.Header {
		now := time.Now()
		tok := idp.Sign(jwt.MapClaims{"iss": idp.Issuer(), "aud": "my-app", "sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}, "RS256")
		resp, body := e.do("GET", "/api/x", "Authorization", "Bearer "+tok)
		if resp.StatusCode != 200 {
			t.Fatalf("external token = %d %s", resp.StatusCode, body)
		}
		h := http.Header{}
		for k, v := range e.up.last(t).Header {
			if atkIdentityLike(k) {
				h[k] = v
			}
		}
		return h
	}
	a, b := identity(corp), identity(partner)
	if fmt.Sprint(a) == fmt.Sprint(b) {
		t.Errorf("callers from two issuers reach the upstream with identical identity headers %v: the upstream cannot tell them apart", a)
	}
}

// atkCustomKeyHeader configures the API key header name.
func atkCustomKeyHeader(c *config.Config) { c.APIKeyHeader = "X-Service-Key" }

// TestAttackAPIKeyNeverReachesUpstream sends a valid API key in headers the
// gateway does not read as the key header: the default name when
// api_key_header is set, and an underscore spelling, which CGI, PHP and
// WSGI stacks map to the same variable as X-API-Key. Credentials stop at
// the gateway, whatever the spelling: an upstream that logs or re-checks
// headers must never see a key.
func TestAttackAPIKeyNeverReachesUpstream(t *testing.T) {
	custom := newEnv(t, "", nil, atkCustomKeyHeader)
	plain := newEnv(t, "", nil)
	tests := []struct {
		name   string
		e      *gwEnv
		header string
	}{
		{"default name with api_key_header set", custom, "X-API-Key"},
		{"underscore spelling", plain, "X_API_Key"},
		{"underscore spelling of the configured header", custom, "X_Service_Key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.e.up.count()
			code, _ := raw(t, tc.e.addr(), "GET /public/x HTTP/1.1\r\nHost: x\r\n"+tc.header+": "+testAPIKey+"\r\nConnection: close\r\n\r\n")
			if tc.e.up.count() == before {
				if code < 400 {
					t.Errorf("status %d without reaching the upstream", code)
				}
				return
			}
			for k, v := range tc.e.up.last(t).Header {
				if strings.Contains(strings.Join(v, ","), testAPIKey) {
					t.Errorf("upstream received the API key in %s", k)
				}
			}
		})
	}
	t.Run("configured header authenticates", func(t *testing.T) {
		resp, body := custom.do("GET", "/admin/x", "X-Service-Key", testAPIKey)
		if resp.StatusCode != 200 {
			t.Errorf("valid key in the configured header = %d %s, want 200", resp.StatusCode, body)
		}
	})
}

// atkLimitsFor returns an option that sets the login limits.
func atkLimitsFor(perIP, perUser int) envOption {
	return func(c *config.Config) {
		c.Auth.Limits = issuer.Limits{
			LoginPerIP:   state.Limit{Every: time.Hour, Burst: perIP},
			LoginPerUser: state.Limit{Every: time.Hour, Burst: perUser},
			RefreshPerIP: state.Limit{Every: time.Second, Burst: 30},
		}
	}
}

// TestAttackLoginLimiterIPv6 rotates the client address inside one IPv6
// /64, which every IPv6 client holds (SLAAC privacy addresses, RFC 8981):
// a per-/128 limiter gives it 2^64 fresh quotas. The per-IP limit must
// count a /64 as one client.
func TestAttackLoginLimiterIPv6(t *testing.T) {
	e := newEnv(t, "", nil, withUsers, atkLimitsFor(1, 100), func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32", "::1/128"} })
	limited := false
	for i := 1; i <= 2 && !limited; i++ {
		resp, _ := e.post("/auth/login", url.Values{"username": {fmt.Sprintf("nobody%d", i)}, "password": {"x-wrong-1"}},
			"X-Forwarded-For", fmt.Sprintf("2001:db8:1:2::%x", i))
		limited = resp.StatusCode == http.StatusTooManyRequests
	}
	if !limited {
		t.Error("2 login attempts from one IPv6 /64 with burst 1 were not limited")
	}
}

// TestAttackLoginLimiterUsernameVariants guesses one account's password
// under spellings that normalize to the same user: the per-user limit must
// count them together.
func TestAttackLoginLimiterUsernameVariants(t *testing.T) {
	e := newEnv(t, "", nil, withUsers, atkLimitsFor(100, 1))
	var codes []int
	for _, name := range []string{"alice", "ALICE", " Alice\t", "aLiCe"} {
		resp, _ := e.post("/auth/login", url.Values{"username": {name}, "password": {"x-wrong-1"}})
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != http.StatusBadRequest || slices.ContainsFunc(codes[1:], func(c int) bool { return c != http.StatusTooManyRequests }) {
		t.Errorf("statuses %v, want 400 then every other spelling limited (429)", codes)
	}
}

// Fixed bcrypt hashes, so the tests do not pay for hashing: atkCarolHash is
// "carol-password-1" at cost 11, atkDaveHash is 72 times "p" at cost 10.
const (
	atkCarolHash = "$2a$11$TOJhRo/SL4/V3iz38edfF.gXwYA9ZhISmWBvxI2qX/1lbwOeK.Z9a"
	atkDaveHash  = "$2a$10$DcD2V/onc4d4vLbM5dAU9uJQgxW86MIW9L2Dfb0BEJJ2lX/hg6ZgG"
)

// cpuTime is the CPU time the test process has used. The gateway runs in
// the test process, so the bcrypt work of a login shows up here, and unlike
// wall time it does not grow when other processes load the machine.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Skipf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// atkTimedLogin is the CPU time of one failed login as name.
func atkTimedLogin(t *testing.T, e *gwEnv, client *http.Client, name string) time.Duration {
	t.Helper()
	form := url.Values{"username": {name}, "password": {"x-wrong-1"}}
	start := cpuTime(t)
	resp, err := client.PostForm(e.gw.URL+"/auth/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	d := cpuTime(t) - start
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("login %s = %d, want 400", name, resp.StatusCode)
	}
	return d
}

// TestAttackLoginTimingWithMixedCosts uses a users file whose hashes have
// different bcrypt costs (normal after raising the cost for new passwords).
// A failed login for an unknown user costs one compare at the highest cost
// in the file; for a known user it costs that user's own cost, so a known
// user with a cheaper hash answers about twice as fast per cost step:
// username enumeration by timing. The same happens after a reload that
// raises the costs, because the dummy hash is made once at start.
func TestAttackLoginTimingWithMixedCosts(t *testing.T) {
	if testing.Short() {
		t.Skip("bcrypt timing")
	}
	registerSecret("carol-password-1")
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.yaml")
	mixed := "users:\n" +
		"  - username: alice\n    password_hash: \"" + hashOf(t, "alice-password-1") + "\"\n    roles: [admin]\n" +
		"  - username: carol\n    password_hash: \"" + atkCarolHash + "\"\n    roles: [user]\n"
	// Mixed costs are refused outright: one dummy cost could not match both.
	if _, err := users.Parse(usersFile, []byte(mixed)); err == nil || !strings.Contains(err.Error(), "differs from the cost") {
		t.Fatalf("users file with mixed bcrypt costs: err = %v, want it refused", err)
	}
	writeFile(t, usersFile, "users:\n  - username: alice\n    password_hash: \""+hashOf(t, "alice-password-1")+"\"\n    roles: [admin]\n")
	e := newEnv(t, "", nil, atkLimitsFor(100, 100), func(c *config.Config) { c.UsersFile = usersFile; c.Auth.BcryptConcurrency = 1 })
	client := &http.Client{Timeout: 2 * time.Minute}
	known := min(atkTimedLogin(t, e, client, "alice"), atkTimedLogin(t, e, client, "alice"))
	unknown := min(atkTimedLogin(t, e, client, "nobody"), atkTimedLogin(t, e, client, "nobody"))
	ratio := float64(unknown) / float64(known)
	t.Logf("CPU time of a failed login: known user (cost 10) %v, unknown user %v, ratio %.2f", known, unknown, ratio)
	if ratio > 1.5 || ratio < 1/1.5 {
		t.Errorf("an unknown user costs %.1fx the time of a known one (%v vs %v): timing reveals which usernames exist", ratio, unknown, known)
	}
}

// TestAttackLoginLongPasswordPrefix logs in with a user's 72-byte password
// followed by extra bytes. bcrypt ignores everything after byte 72, so
// without a length check the longer password matches.
func TestAttackLoginLongPasswordPrefix(t *testing.T) {
	long := strings.Repeat("p", 72)
	registerSecret(long)
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.yaml")
	writeFile(t, usersFile, "users:\n  - username: dave\n    password_hash: \""+atkDaveHash+"\"\n    roles: [admin]\n")
	e := newEnv(t, "", nil, func(c *config.Config) { c.UsersFile = usersFile })
	resp, body := e.post("/auth/login", url.Values{"username": {"dave"}, "password": {long + "-anything"}})
	if resp.StatusCode == http.StatusOK {
		registerSecret(body)
		t.Fatal("a 72-byte password plus a suffix logged in")
	}
}

// TestAttackLogoutEndsAccessToken logs out with the access token as bearer
// and then uses it again, with access revocation enabled; the token was
// verified (and cached) before the logout.
func TestAttackLogoutEndsAccessToken(t *testing.T) {
	e := newEnv(t, "", nil, withUsers, func(c *config.Config) { c.Auth.AccessRevocation.Enabled = true })
	tr := e.login("bob", "bob-password-1")
	if got := e.bearerStatus("/api/x", tr.AccessToken); got != 200 {
		t.Fatalf("before logout = %d", got)
	}
	resp, body := e.post("/auth/logout", url.Values{"refresh_token": {tr.RefreshToken}}, "Authorization", "Bearer "+tr.AccessToken)
	if resp.StatusCode != 200 {
		t.Fatalf("logout = %d %s", resp.StatusCode, body)
	}
	if got := e.bearerStatus("/api/x", tr.AccessToken); got != 401 {
		t.Errorf("access token after logout = %d, want 401", got)
	}
}

// TestAttackExternalTokenTricks sends tokens of a configured external
// issuer that try to choose their own key, smuggle a second roles claim, or
// make the gateway hammer the provider with unknown kids.
func TestAttackExternalTokenTricks(t *testing.T) {
	idp := jwkstest.NewIdP(t)
	e := newEnv(t, "", nil, func(c *config.Config) {
		c.Issuers = []jwks.IssuerConfig{{Issuer: idp.Issuer(), JWKSURI: idp.JWKSURI(), Audiences: []string{"my-app"}, Algorithms: []string{"RS256"}, RolesClaim: "roles"}}
	})
	waitReady(t, e, 200)
	now := time.Now()
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": idp.Issuer(), "aud": "my-app", "sub": "kc-1", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "roles": []string{"user"}}
	}
	if resp, body := e.do("GET", "/api/x", "Authorization", "Bearer "+idp.Sign(claims(), "RS256")); resp.StatusCode != 200 {
		t.Fatalf("valid external token = %d %s", resp.StatusCode, body)
	}
	payload := fmt.Sprintf(`{"iss":%q,"aud":"my-app","sub":"kc-1","iat":%d,"exp":%d,"roles":["user"],"ROLES":["admin"]}`, idp.Issuer(), now.Unix(), now.Add(time.Minute).Unix())
	tests := []struct{ name, token string }{
		{"jku header", idp.SignWithHeader(claims(), "RS256", map[string]any{"jku": "http://127.0.0.1:1/keys"})},
		{"embedded jwk header", idp.SignWithHeader(claims(), "RS256", map[string]any{"jwk": map[string]any{"kty": "RSA"}})},
		{"x5u header", idp.SignWithHeader(claims(), "RS256", map[string]any{"x5u": "http://127.0.0.1:1/cert"})},
		{"crit header", idp.SignWithHeader(claims(), "RS256", map[string]any{"crit": []string{"exp"}})},
		{"kid of wrong type", idp.SignWithHeader(claims(), "RS256", map[string]any{"kid": 7})},
		{"case-variant duplicate roles claim", idp.SignPayload([]byte(payload), "RS256")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.up.count()
			resp, body := e.do("GET", "/admin/x", "Authorization", "Bearer "+tc.token)
			if resp.StatusCode != http.StatusUnauthorized || e.up.count() != before {
				t.Errorf("status %d %s, want 401 and nothing upstream", resp.StatusCode, body)
			}
		})
	}
	t.Run("unknown kid flood", func(t *testing.T) {
		before := idp.FetchCount()
		for i := 0; i < 30; i++ {
			tok := idp.SignWithHeader(claims(), "RS256", map[string]any{"kid": fmt.Sprintf("random-%d", i)})
			if resp, _ := e.do("GET", "/api/x", "Authorization", "Bearer "+tok); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("token with unknown kid = %d, want 401", resp.StatusCode)
			}
		}
		if n := idp.FetchCount() - before; n > 1 {
			t.Errorf("30 unknown kids caused %d key set fetches, want at most 1", n)
		}
	})
}

// TestAttackAuthenticatedResponsesAreNotSharedCacheable has the upstream
// mark a response cacheable (max-age, as many frameworks do for GET). A
// shared cache in front of the gateway (CDN, ingress cache) knows that
// Authorization makes a response private (RFC 9111 §3.5) but not that
// X-API-Key does: it stores an admin's response and serves it to the next
// anonymous request for the URL, which never reaches the gateway. A
// response to a request the gateway authenticated must be marked private
// or vary on the credential header.
func TestAttackAuthenticatedResponsesAreNotSharedCacheable(t *testing.T) {
	e := newEnv(t, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		_, _ = io.WriteString(w, "secret report")
	}))
	resp, body := e.do("GET", "/admin/report", "X-API-Key", testAPIKey)
	if resp.StatusCode != 200 || body != "secret report" {
		t.Fatalf("admin GET = %d %q", resp.StatusCode, body)
	}
	cc := strings.ToLower(strings.Join(resp.Header.Values("Cache-Control"), ","))
	vary := strings.ToLower(strings.Join(resp.Header.Values("Vary"), ","))
	if !strings.Contains(cc, "private") && !strings.Contains(cc, "no-store") && !strings.Contains(vary, "x-api-key") && vary != "*" {
		t.Errorf("response to an API-key request has Cache-Control %q and Vary %q: a shared cache may serve it to anyone", cc, vary)
	}
}
