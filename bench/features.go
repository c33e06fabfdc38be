package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/internal/grpcbench"
)

// The modes of the gateway's features beyond authentication: the signed
// identity assertion, browser sessions (embedded store and Redis), policy
// conditions and CEL, a per-route rate limit, and gRPC. Each runs the
// hs256 mode's credential (or a session of the same user) on a path or an
// instance of its own, so its figure reads as "hs256 plus the feature".

// Instances of the feature modes.
const (
	assertInstance       = "assertion"
	assertSignInstance   = "assertion-sign"
	sessionInstance      = "sessions"
	sessionRedisInstance = "sessions-redis"
	grpcInstance         = "grpc"
)

// needsRedis is the Needs value of the modes whose state store is the
// harness's redis-server.
const needsRedis = "redis-server"

// Paths and rule ids of the policy fragments.
const (
	condPath          = "/cond/items"
	celPath           = "/cel/items"
	limitPath         = "/limited/items"
	condRule          = "conditions"
	celRule           = "cel"
	limitRule         = "limited"
	assertHeader      = "X-Auth-Assertion"
	benchSubject      = "bench-user" // the sub of the hs256 token
	benchUpstreamHost = "upstream"   // upstream.host_header
	assertTyp         = "authgate-assertion+jwt"
	signingKeyPEM     = "signing.pem"
	authMethodSes     = "session"
)

// featureFragments are the config fragments of the feature modes, added
// to fragmentTable.
var featureFragments = map[string]fragment{
	// Assertions need a private signing key; AUTHGATE_JWT_SECRET then
	// only verifies, so the hs256 token is still accepted.
	"assertion": {Config: "assertion:\n  enabled: true\n",
		Env: map[string]string{"AUTHGATE_JWT_SIGNING_KEY_FILE": "{{.Dir}}/" + signingKeyPEM}},
	"assertion-sign": {Config: "assertion:\n  enabled: true\n  cache_size: 0\n",
		Env: map[string]string{"AUTHGATE_JWT_SIGNING_KEY_FILE": "{{.Dir}}/" + signingKeyPEM}},
	"sessions": {Config: "sessions:\n  enabled: true\n"},
	"redis":    {Env: map[string]string{"AUTHGATE_REDIS_URL": "redis://{{.RedisAddr}}/0"}},
	// Every structured condition that an HS256 token and a loopback
	// client can satisfy, on one rule.
	"conditions": {Policy: `rules:
  - id: ` + condRule + `
    path: /cond/**
    methods: [GET, HEAD]
    roles: [` + benchRole + `]
    issuers: [` + ownIssuer + `]
    auth_methods: [jwt]
    claims:
      - {path: type, equals: access}
      - {path: roles, contains: ` + benchRole + `}
    source_cidrs: [127.0.0.0/8]
`},
	"cel": {Policy: `rules:
  - id: ` + celRule + `
    path: /cel/**
    methods: [GET, HEAD]
    authenticated: true
    when: 'principal.auth_method == "jwt" && "` + benchRole + `" in principal.roles && request.method == "GET" && claims["type"] == "access" && request.client_ip.startsWith("127.")'
`},
	// A bucket per subject refilling a token every microsecond: far above
	// any rate this machine reaches, so no request is refused and the run
	// measures the bucket's cost (one GCRA step in the state store).
	"ratelimit": {Policy: `rules:
  - id: ` + limitRule + `
    path: /limited/**
    methods: [GET, HEAD]
    authenticated: true
    rate_limit: {per: subject, every: 1us, burst: 1000}
`},
	"grpc": {Config: "listen:\n  h2c: true\nupstream:\n  protocol: h2c\n", Policy: `rules:
  - id: grpc
    path: /grpc.testing.TestService/**
    methods: [POST]
    authenticated: true
`},
}

// withFragments returns base with the entries of more added.
func withFragments(base, more map[string]fragment) map[string]fragment {
	for k, v := range more {
		base[k] = v
	}
	return base
}

// hs256Request is the request generator of the modes that send the
// hs256 mode's token.
func hs256Request(f *fixtures) (http.Header, *rotation, error) {
	return bearer(f.Creds.HS256), nil, nil
}

// featureModes returns the rows of the feature modes.
func featureModes() []modeSpec {
	return []modeSpec{
		{Name: "assertion", Method: authMethodJWT, Instance: assertInstance, Fragments: []string{"assertion"},
			Doc:     "hs256 with the signed identity assertion (EdDSA key, default assertion cache: reused for the repeated request)",
			Request: hs256Request, Verify: verifyAssertion(false)},
		{Name: "assertion-sign", Method: authMethodJWT, Instance: assertSignInstance, Fragments: []string{"assertion-sign"},
			Doc:     "hs256 with the signed identity assertion, assertion.cache_size 0: an Ed25519 signature per request",
			Request: hs256Request, Verify: verifyAssertion(true)},
		{Name: "session", Method: authMethodSes, Instance: sessionInstance, Fragments: []string{"sessions"},
			Doc:     "a browser session cookie from the sign-in form, sessions in the embedded store",
			Request: sessionRequest(sessionInstance)},
		{Name: "session-redis", Method: authMethodSes, Instance: sessionRedisInstance, Fragments: []string{"sessions", "redis"},
			Needs:   needsRedis,
			Doc:     "a browser session cookie, sessions in Redis (a local redis-server; sessions.cache_ttl default)",
			Request: sessionRequest(sessionRedisInstance), Verify: verifyRedisSession},
		{Name: "conditions", Method: authMethodJWT, Fragments: []string{"conditions"}, Path: condPath,
			Doc:     "hs256 on a rule with roles, issuers, auth_methods, two claims conditions and source_cidrs",
			Request: hs256Request, Verify: verifyRuleHits(condRule)},
		{Name: "cel", Method: authMethodJWT, Fragments: []string{"cel"}, Path: celPath,
			Doc:     "hs256 on a rule with a CEL when: over the principal, the request and a claim",
			Request: hs256Request, Verify: verifyRuleHits(celRule)},
		{Name: "ratelimit", Method: authMethodJWT, Fragments: []string{"ratelimit"}, Path: limitPath,
			Doc:     "hs256 on a rule with a per-subject rate limit that never refuses (embedded store)",
			Request: hs256Request, Verify: verifyRateLimit},
		{Name: "grpc-plain", Ref: grpcPlainRef, Path: grpcbench.Method, GRPC: true,
			Doc:     "the gRPC reference: httputil.ReverseProxy over h2c on both sides (grpcbench.PlainProxy), the same calls",
			Request: hs256Request},
		{Name: "grpc", Method: authMethodJWT, Instance: grpcInstance, Fragments: []string{"grpc"}, Path: grpcbench.Method, GRPC: true,
			Doc:     "unary gRPC calls with the hs256 token over h2c (one connection), upstream over h2c",
			Request: hs256Request},
	}
}

// upstreamRecorder is the benchmark upstream: it answers the fixed body
// and counts the identity assertions it receives, keeping the last one.
// Verifying each would spend the harness's CPU during the run; the last one
// is verified after it. It is safe for concurrent use.
type upstreamRecorder struct {
	body []byte

	mu      sync.Mutex
	count   int    // requests with an assertion
	changes int    // requests whose assertion differed from the one before
	last    string // the last assertion
}

func (u *upstreamRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a := r.Header.Get(assertHeader); a != "" {
		u.mu.Lock()
		u.count++
		if a != u.last {
			u.changes++
			u.last = a
		}
		u.mu.Unlock()
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", fmt.Sprint(len(u.body)))
	_, _ = w.Write(u.body)
}

// snapshot returns the counters and the last assertion.
func (u *upstreamRecorder) snapshot() (count, changes int, last string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.count, u.changes, u.last
}

// featureState is what the feature modes' generators and checks share.
// It is safe for concurrent use.
type featureState struct {
	Upstream    *upstreamRecorder
	SigningKey  ed25519.PrivateKey // the assertion instances' signing key
	UpstreamURL string             // the assertion's expected audience
	RedisAddr   string
	GatewayURL  map[string]string // instance name → proxy URL

	mu                        sync.Mutex
	assertCount, assertChange int // the recorder's counters at the last check
}

// writeSigningKey generates the assertion instances' Ed25519 key and
// writes it as PKCS #8 PEM into dir.
func (fs *featureState) writeSigningKey(dir string) error {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("bench: signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("bench: signing key: %w", err)
	}
	fs.SigningKey = key
	return os.WriteFile(dir+"/"+signingKeyPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// assertionClaims are the claims an assertion check reads.
type assertionClaims struct {
	jwt.RegisteredClaims
	AuthMethod string `json:"auth_method"`
	Req        struct {
		Method string `json:"method"`
		Host   string `json:"host"`
		Path   string `json:"path"`
	} `json:"req"`
}

// checkAssertion verifies tok as an app would: the signature with the
// gateway's public key, typ, iss, aud, expiry, the caller and the binding
// to the benchmark's request.
func (fs *featureState) checkAssertion(tok string) error {
	var c assertionClaims
	t, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return fs.SigningKey.Public(), nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer(ownIssuer), jwt.WithAudience(fs.UpstreamURL), jwt.WithExpirationRequired())
	if err != nil {
		return fmt.Errorf("the upstream's last assertion does not verify: %w", err)
	}
	if typ, _ := t.Header["typ"].(string); typ != assertTyp {
		return fmt.Errorf("the upstream's last assertion has typ %q, want %q", typ, assertTyp)
	}
	// host_header: upstream sends the upstream's own host, which the
	// assertion binds.
	host := strings.TrimPrefix(fs.UpstreamURL, "http://")
	if c.Subject != benchSubject || c.AuthMethod != authMethodJWT || c.Req.Method != http.MethodGet || c.Req.Path != apiPath || c.Req.Host != host {
		return fmt.Errorf("the upstream's last assertion names sub=%q auth_method=%q req=%+v, want %s, %s, GET %s %s",
			c.Subject, c.AuthMethod, c.Req, benchSubject, authMethodJWT, host, apiPath)
	}
	return nil
}

// verifyAssertion checks that the upstream received an assertion with
// every request of the run and that the last one verifies; fresh
// requires a new assertion per request (cache_size 0), otherwise most
// must be reused.
func verifyAssertion(fresh bool) func(f *fixtures, _, _ promSnapshot, res loadResult) error {
	return func(f *fixtures, _, _ promSnapshot, res loadResult) error {
		fs := f.Features
		count, changes, last := fs.Upstream.snapshot()
		fs.mu.Lock()
		n, ch := count-fs.assertCount, changes-fs.assertChange
		fs.assertCount, fs.assertChange = count, changes
		fs.mu.Unlock()
		if n < int(res.Requests) {
			return fmt.Errorf("the upstream received %d requests with %s, the load generator completed %d", n, assertHeader, res.Requests)
		}
		switch {
		case fresh && ch < n/2:
			return fmt.Errorf("%d distinct assertions in %d requests: assertions are being reused", ch, n)
		case !fresh && n >= 10 && ch > n/2:
			return fmt.Errorf("%d distinct assertions in %d identical requests: the assertion cache is not used", ch, n)
		}
		return fs.checkAssertion(last)
	}
}

// csrfField finds the sign-in form's CSRF token.
var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// sessionRequest signs the benchmark user in on instance's sign-in form,
// as a browser does, and returns the session cookie as the mode's header.
// Cookies are handled by hand: a cookie jar sends no Secure (__Host-)
// cookie over plain http, which the gateway accepts on loopback.
func sessionRequest(instance string) func(f *fixtures) (http.Header, *rotation, error) {
	return func(f *fixtures) (http.Header, *rotation, error) {
		base := f.Features.GatewayURL[instance]
		client := &http.Client{Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Get(base + "/auth/sign_in")
		if err != nil {
			return nil, nil, fmt.Errorf("sign-in page: %w", err)
		}
		page, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		m := csrfField.FindSubmatch(page)
		if resp.StatusCode != http.StatusOK || m == nil {
			return nil, nil, fmt.Errorf("sign-in page answered %d without a CSRF field", resp.StatusCode)
		}
		form := url.Values{"username": {benchUser}, "password": {benchPassword}, "csrf": {string(m[1])}, "rd": {"/"}}
		req, err := http.NewRequest(http.MethodPost, base+"/auth/sign_in", strings.NewReader(form.Encode()))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range resp.Cookies() {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		resp, err = client.Do(req)
		if err != nil {
			return nil, nil, fmt.Errorf("sign-in: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if strings.HasSuffix(c.Name, "authgate_session") && c.Value != "" {
				return http.Header{"Cookie": {c.Name + "=" + c.Value}}, nil, nil
			}
		}
		return nil, nil, fmt.Errorf("sign-in answered %d with no session cookie", resp.StatusCode)
	}
}

// verifyRedisSession checks that the session the mode uses lives in the
// harness's Redis.
func verifyRedisSession(f *fixtures, _, _ promSnapshot, _ loadResult) error {
	rc := redis.NewClient(&redis.Options{Addr: f.Features.RedisAddr})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var cursor uint64
	for {
		keys, next, err := rc.Scan(ctx, cursor, "authgate:s:*", 1000).Result()
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		if len(keys) > 0 {
			return nil
		}
		if cursor = next; cursor == 0 {
			return errors.New("no session record in Redis: the sessions are not in the Redis store")
		}
	}
}

// verifyRuleHits checks that every request of the run was allowed by the
// rule named (its conditions held), not by a broader one.
func verifyRuleHits(rule string) func(*fixtures, promSnapshot, promSnapshot, loadResult) error {
	return func(_ *fixtures, before, after promSnapshot, res loadResult) error {
		if n := delta(before, after, metricRuleHits, map[string]string{"rule_id": rule, "decision": "allow"}); n < float64(res.Requests) {
			return fmt.Errorf("rule %s allowed %.0f requests, the load generator completed %d", rule, n, res.Requests)
		}
		return nil
	}
}

// verifyRateLimit checks that every request of the run took a token from
// the rule's bucket and none was refused or passed on a store error.
func verifyRateLimit(_ *fixtures, before, after promSnapshot, res loadResult) error {
	m := func(result string) float64 {
		return delta(before, after, metricRateLimit, map[string]string{"rule_id": limitRule, "result": result})
	}
	if n := m("allowed"); n < float64(res.Requests) {
		return fmt.Errorf("the rate limit counted %.0f allowed requests, the load generator completed %d", n, res.Requests)
	}
	if l, e := m("limited"), m("store_error"); l+e > 0 {
		return fmt.Errorf("the rate limit refused %.0f requests and had %.0f store errors: it must never refuse in the benchmark", l, e)
	}
	return nil
}

// grpcPlainRef is the reference kind of the plain gRPC proxy.
const grpcPlainRef = "grpc-plain"

// grpcReferenceMain is the grpc-plain reference process: the plain gRPC
// reverse proxy to upstream (the gRPC server, h2c), served over h2c.
func grpcReferenceMain(upstream string, in io.Reader, out io.Writer) error {
	u, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("bench: grpc reference: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: grpc reference: %w", err)
	}
	srv := grpcbench.ServeH2C(ln, grpcbench.PlainProxy(u, nil))
	defer srv.Close()
	if _, err := fmt.Fprintf(out, "reference http://%s\n", ln.Addr()); err != nil {
		return fmt.Errorf("bench: grpc reference: %w", err)
	}
	_, _ = io.Copy(io.Discard, in)
	return nil
}

// runGRPC runs a closed loop of unary gRPC calls at the mode's target (a
// gateway instance or the gRPC reference).
func runGRPC(ctx context.Context, m *mode, o runOpts, f *fixtures) (loadResult, error) {
	addr, _, _ := strings.Cut(strings.TrimPrefix(m.Target.URL, "http://"), "/")
	r, err := grpcbench.RunUnary(ctx, addr, grpcbench.LoadOptions{Token: f.Creds.HS256, Concurrency: o.Concurrency,
		Duration: o.Duration, Calls: o.Requests})
	res := loadResult{Requests: uint64(r.Calls), Elapsed: r.Elapsed, P50: r.P50, P99: r.P99, P999: r.P999}
	for _, n := range r.Errors {
		res.Non200 += uint64(n)
	}
	if err != nil && r.Calls == 0 {
		return res, err
	}
	return res, nil
}

// helperProcs are the processes the harness started for the selected
// modes besides the gateways and the references.
type helperProcs struct {
	missing       map[string]bool // Needs values whose program is not installed
	grpcURL       string          // the gRPC upstream, http://host:port (h2c)
	grpcInstances map[string]bool // instances that proxy to it
	needGRPC      bool            // a gRPC mode (gateway or reference) is selected
}

// has reports whether spec's needs are met.
func (h *helperProcs) has(spec modeSpec) bool { return spec.Needs == "" || !h.missing[spec.Needs] }

// startHelpers starts what the selected modes need: a redis-server for
// the Redis modes and the gRPC upstream for the gRPC mode. A missing
// redis-server leaves its modes out with a note, unless CI=true (CI
// installs it), where it fails the run.
func startHelpers(ctx context.Context, out io.Writer, s settings, dir string, fx *fixtures, stops *stopper) (*helperProcs, error) {
	h := &helperProcs{missing: map[string]bool{}, grpcInstances: map[string]bool{}}
	var redisModes []string
	for _, spec := range modeTable() {
		if !slices.Contains(s.Modes, spec.Name) {
			continue
		}
		if spec.Needs == needsRedis {
			redisModes = append(redisModes, spec.Name)
		}
		switch {
		case spec.GRPC && spec.Ref == "":
			h.grpcInstances[spec.Instance] = true
			h.needGRPC = true
		case spec.GRPC:
			h.needGRPC = true
		}
	}
	if len(redisModes) > 0 {
		p, err := startRedis(ctx, dir)
		switch {
		case errors.Is(err, errNoRedis) && os.Getenv("CI") != "true":
			fmt.Fprintf(out, "note: %v: modes %s left out\n", err, strings.Join(redisModes, ", "))
			h.missing[needsRedis] = true
		case err != nil:
			return nil, err
		default:
			stops.add(p.Stop)
			fx.Features.RedisAddr = p.Addr
		}
	}
	if h.needGRPC {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("bench: grpc upstream: %w", err)
		}
		srv := grpcbench.StartUpstream(ln)
		stops.add(srv.Stop)
		h.grpcURL = "http://" + ln.Addr().String()
	}
	return h, nil
}

// checkGRPC makes checkRequests calls of a gRPC mode, each of which must
// succeed.
func checkGRPC(ctx context.Context, m *mode, fx *fixtures) (int, error) {
	res, err := runGRPC(ctx, m, runOpts{Concurrency: 1, Duration: 30 * time.Second, Requests: checkRequests}, fx)
	if err != nil {
		return 0, err
	}
	if res.Requests != checkRequests || res.Non200 > 0 {
		return 0, fmt.Errorf("%d of %d gRPC calls succeeded", res.Requests, checkRequests)
	}
	return http.StatusOK, nil
}
