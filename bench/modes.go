package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/authgate/authgate/authn"
)

// The mode table. Every row of the report is a mode: a reference proxy or
// a gateway setup, each with the requests that load it. To add a mode for
// a new gateway feature:
//
//  1. If the feature needs configuration, add a fragment to fragmentTable:
//     YAML merged into the gateway config and, if it adds rules, into the
//     policy (a mode on its own path, such as /cel/**, leaves the other
//     modes' rules alone). The templates see configData. A setting that
//     only the environment carries (a signing key file, the Redis URL)
//     goes in the fragment's Env; such a mode needs its own Instance.
//  2. Add a modeSpec to modeTable naming the fragments, the auth_method the
//     gateway must count for its requests, and its request generator. A
//     feature that changes every request (assertion signing, a Redis state
//     store) gets its own Instance, a gateway process of its own, so the
//     other modes keep measuring what they did. A mode that needs a
//     program besides the gateway sets Needs (redis-server: the harness
//     starts one); a gRPC mode sets GRPC (the load is grpcbench's).
//  3. If a run must prove something beyond "every request was allowed by
//     the expected method" (a cache missed, many keys were used), give it a
//     Verify hook over the gateway's metrics.
//
// A mode whose fragment the gateway rejects makes the run fail: a feature
// is never silently turned off. Leave a mode out with --modes.

// modeSpec is one row of the mode table.
type modeSpec struct {
	Name string
	Doc  string // one line: what is measured
	// Ref names the reference process of a reference mode (bare, tuned,
	// nginx); empty for a gateway mode.
	Ref string
	// Instance is the gateway process the mode runs against; empty is the
	// main instance, which every run starts and whose memory is reported.
	Instance string
	// Fragments are the fragmentTable entries the mode needs in its
	// instance's config.
	Fragments []string
	// Method is the auth_method label the gateway must count, as an
	// allowed 2xx, for every request of a gateway mode.
	Method string
	// Path is the request path; empty is apiPath.
	Path string
	// Request returns the headers of the mode's requests and, for a mode
	// that varies a header per request, the rotation of its values.
	Request func(f *fixtures) (http.Header, *rotation, error)
	// Verify, if set, checks a run of the mode from the instance's metrics
	// before and after it.
	Verify func(f *fixtures, before, after promSnapshot, res loadResult) error
	// Needs names a process the harness must start for the mode:
	// needsRedis. Without the program the mode is left out with a note,
	// or fails the run when CI=true.
	Needs string
	// GRPC marks a mode of unary gRPC calls: its instance proxies to the
	// harness's gRPC upstream over h2c, and the load is grpcbench's.
	GRPC bool
}

// fragment is a piece of gateway configuration a mode needs.
type fragment struct {
	Config string // YAML template merged into the config
	Policy string // YAML template merged into the policy
	// Env holds templates of environment variables the gateway gets
	// (settings that only the environment carries: key files, Redis).
	Env map[string]string
}

// fragmentTable holds every config fragment by name.
var fragmentTable = withFragments(map[string]fragment{
	"api-key":     {Config: "api_keys_file: {{.Dir}}/keys.yaml\n"},
	"api-keys10k": {Config: "api_keys_file: {{.Dir}}/keys-many.yaml\n"},
	// One external issuer for every asymmetric algorithm, with its JWKS
	// served by the harness. token_cache_size is written out, because
	// the cold modes' token pools are sized from it.
	"external-issuer": {Config: `issuers:
  - issuer: "{{.Issuer}}"
    jwks_uri: "{{.JWKSURI}}"
    audiences: [` + extAudience + `]
    algorithms: [RS256, ES256, EdDSA]
    roles_claim: roles
jwks:
  token_cache_size: {{.TokenCache}}
`},
}, featureFragments)

// Gateway instances, and the size of the many-keys file.
const (
	mainInstance  = "main"
	manyKeysGroup = "keys10k"
	manyKeysCount = 10_000
)

// The auth_method label values the modes are counted under.
const (
	authMethodNone = string(authn.MethodNone)
	authMethodJWT  = string(authn.MethodJWT)
	authMethodKey  = string(authn.MethodAPIKey)
	authMethodExt  = string(authn.MethodExternal)
)

// bearer returns the Authorization header of tok.
func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// noCredential is the request generator of modes that send no credential.
func noCredential(*fixtures) (http.Header, *rotation, error) { return http.Header{}, nil, nil }

// modeTable returns every mode, in the order each round runs them.
func modeTable() []modeSpec {
	modes := []modeSpec{
		{Name: "bare", Ref: "bare", Request: noCredential,
			Doc: "httputil.ReverseProxy on http.DefaultTransport (2 idle upstream connections, no buffer pool)"},
		{Name: "tuned", Ref: "tuned", Request: noCredential,
			Doc: "the same proxy with the gateway's pool (256 idle) and a 32 KiB buffer pool"},
		{Name: "nginx", Ref: "nginx", Request: noCredential,
			Doc: "nginx, 1 worker, keep-alive upstream pool of 256, streaming with a 32k buffer"},
		{Name: "public", Method: authMethodNone, Path: publicPath, Request: noCredential,
			Doc: "a public path, no credential: path checks and policy only"},
		{Name: "hs256", Method: authMethodJWT,
			Doc: "the gateway's own HS256 token, one token repeated (verified-token cache hit)",
			Request: func(f *fixtures) (http.Header, *rotation, error) {
				return bearer(f.Creds.HS256), nil, nil
			}},
		{Name: "apikey", Method: authMethodKey, Fragments: []string{"api-key"},
			Doc: "one API key in a keys file of one",
			Request: func(f *fixtures) (http.Header, *rotation, error) {
				return http.Header{"X-Api-Key": {f.Creds.APIKey}}, nil, nil
			}},
		{Name: "apikey-many", Method: authMethodKey, Instance: manyKeysGroup, Fragments: []string{"api-keys10k"},
			Doc: fmt.Sprintf("%d API keys in the keys file, every request the next key in turn", manyKeysCount),
			Request: func(f *fixtures) (http.Header, *rotation, error) {
				return http.Header{}, &rotation{Header: "X-Api-Key", Values: f.ManyKeys}, nil
			},
			Verify: verifyManyKeys},
	}
	for _, alg := range externalAlgs {
		name := strings.ToLower(alg)
		modes = append(modes, modeSpec{Name: name, Method: authMethodExt, Fragments: []string{"external-issuer"},
			Doc: "an external-issuer " + alg + " token from the JWKS, one token repeated (verified-token cache hit)",
			Request: func(f *fixtures) (http.Header, *rotation, error) {
				return bearer(f.Creds.External[alg]), nil, nil
			}})
	}
	for _, alg := range externalAlgs {
		modes = append(modes, modeSpec{Name: strings.ToLower(alg) + "-cold", Method: authMethodExt, Fragments: []string{"external-issuer"},
			Doc: "distinct " + alg + " tokens in turn from a pool larger than the verified-token cache: every request a full verification",
			Request: func(f *fixtures) (http.Header, *rotation, error) {
				pool, err := f.coldPool(alg)
				if err != nil {
					return nil, nil, err
				}
				vals := make([]string, len(pool))
				for i, tok := range pool {
					vals[i] = "Bearer " + tok
				}
				return http.Header{}, &rotation{Header: "Authorization", Values: vals}, nil
			},
			Verify: verifyCold})
	}
	return append(modes, featureModes()...)
}

// modeNames returns the names of the mode table, in order.
func modeNames() []string {
	var out []string
	for _, m := range modeTable() {
		out = append(out, m.Name)
	}
	return out
}

// fixtures are what the request generators draw on. Pools are minted on
// first use. It is safe for concurrent use.
type fixtures struct {
	Creds *credentials
	// ManyKeys are the API keys of the keys10k file.
	ManyKeys []string
	// TokenCache is the jwks.token_cache_size the config sets.
	TokenCache int
	// Streams and Concurrency are the load generator's; the cold pools
	// are sized from them.
	Streams, Concurrency int

	// Features is what the feature modes need (upstream recorder,
	// signing key, Redis, instance URLs).
	Features *featureState

	mu    sync.Mutex
	pools map[string][]string
}

// coldPoolSize is the number of distinct tokens that keeps every request
// a verified-token cache miss. The cache is an LRU: a token is evicted
// once cache-size other tokens were stored after it. Each load-generator
// stream walks its share of the pool in order, so between two uses of a
// token its stream stored share-1 others; requests in flight may finish
// out of order, which can cost up to twice the concurrency of those, and
// a request stalled for a whole cycle of its share (a descheduled
// goroutine on a busy machine) could still find its token: a margin of an
// eighth of the cache, at least 64, keeps that rare even in the smoke
// run's small pools. At the default cache size the pool also exceeds the
// bearer authenticator's issuer-choice cache (10,000 entries), so the
// unverified issuer peek runs on every request too.
func (f *fixtures) coldPoolSize() int {
	return f.Streams * (f.TokenCache + 2*f.Concurrency + 1 + max(64, f.TokenCache/8))
}

// coldPool returns alg's pool of distinct tokens, minting it once.
func (f *fixtures) coldPool(alg string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.pools[alg]; ok {
		return p, nil
	}
	p, err := f.Creds.mintPool(alg, f.coldPoolSize())
	if err != nil {
		return nil, err
	}
	if f.pools == nil {
		f.pools = map[string][]string{}
	}
	f.pools[alg] = p
	return p, nil
}

// Metric names read by the checks.
const (
	metricRequests   = "authgate_requests_total"
	metricTokenCache = "authgate_token_cache_total"
	metricAPIKeyUse  = "authgate_api_key_requests_total"
	metricRuleHits   = "authgate_policy_rule_hits_total"
	metricRateLimit  = "authgate_rate_limit_total"
)

// delta returns after minus before of the sum of name's samples matching
// match.
func delta(before, after promSnapshot, name string, match map[string]string) float64 {
	return after.sum(name, match) - before.sum(name, match)
}

// verifyMethod checks that the gateway counted every successful request
// of a run as allowed, 2xx and authenticated by method, and little else:
// a mode that fell back to another method (an unconfigured feature, a
// public rule that caught its path) or got denied fails here. Requests cut
// off when the load generator stops are allowed for in the slack.
func verifyMethod(method string, before, after promSnapshot, res loadResult, slack int) error {
	ok := delta(before, after, metricRequests, map[string]string{"decision": "allow", "auth_method": method, "code_class": "2xx"})
	all := delta(before, after, metricRequests, nil)
	if ok < float64(res.Requests) {
		return fmt.Errorf("the gateway counted %.0f allowed 2xx requests by %s, the load generator %d", ok, method, res.Requests)
	}
	if other := all - ok; other > float64(slack) {
		return fmt.Errorf("the gateway counted %.0f requests that were not allowed 2xx by %s", other, method)
	}
	return nil
}

// maxColdHitRate is the share of verified-token cache hits a cold run may
// have: the pool is sized so that there are none (coldPoolSize), and a
// handful from a stalled request must not fail a run, but a pool that no
// longer beats the cache (a larger default cache) hits on nearly every
// request and fails.
const maxColdHitRate = 0.01

// verifyCold checks that every request of a cold run looked up the
// verified-token cache and (almost) none hit it.
func verifyCold(_ *fixtures, before, after promSnapshot, res loadResult) error {
	hits := delta(before, after, metricTokenCache, map[string]string{"result": "hit"})
	misses := delta(before, after, metricTokenCache, map[string]string{"result": "miss"})
	if hits+misses < float64(res.Requests) {
		return fmt.Errorf("%.0f verified-token cache lookups for %d requests", hits+misses, res.Requests)
	}
	if hits > maxColdHitRate*(hits+misses) {
		return fmt.Errorf("%.0f verified-token cache hits and %.0f misses in a cold run: the token pool no longer beats the cache", hits, misses)
	}
	return nil
}

// verifyManyKeys checks that a run used many distinct keys: with requests
// taking keys in turn, at least half as many as there were requests (up to
// the number of keys).
func verifyManyKeys(f *fixtures, before, after promSnapshot, res loadResult) error {
	b, a := before.values(metricAPIKeyUse, "key"), after.values(metricAPIKeyUse, "key")
	used := 0
	for k, v := range a {
		if v > b[k] {
			used++
		}
	}
	want := min(len(f.ManyKeys), int(res.Requests)) / 2
	if used < max(2, want) {
		return fmt.Errorf("requests used %d distinct API keys, want at least %d", used, max(2, want))
	}
	return nil
}
