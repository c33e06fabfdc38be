// Package discovery serves the gateway's published keys and its issuer
// metadata:
//
//	GET /.well-known/jwks.json              the JWK set: current, next and previous public keys
//	GET /.well-known/openid-configuration   issuer, jwks_uri, token_endpoint, algorithms
//
// With them a verifier (another authgate listing this one under issuers:
// with discovery, an app checking the identity assertion, any JWT library)
// trusts the gateway's tokens without holding a secret that can mint them.
//
// Both answers are public data. They carry Cache-Control max-age MaxAge
// and an ETag, so that verifiers pick up a rotation's next key within
// MaxAge; the metadata is built from the configured external URL only,
// never from the request's Host header, which a client chooses (cache
// poisoning of jwks_uri).
package discovery

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/authgate/authgate/authn/token"
)

// The paths served.
const (
	PathJWKS     = "/.well-known/jwks.json"
	PathMetadata = "/.well-known/openid-configuration"
)

// Options configure the handlers. Keys and Issuer are required.
type Options struct {
	// Keys is the key set in force; its public keys are published.
	Keys token.KeySource
	// Issuer is the "iss" of the gateway's tokens; the metadata's issuer
	// is exactly this, as OpenID Connect Discovery §4.3 requires.
	Issuer string
	// BaseURL is the gateway's external base URL (no trailing slash). The
	// metadata document is served only when it is set.
	BaseURL string
	// TokenPath, when set, is the login endpoint's path below BaseURL
	// (the password and refresh_token grants of RFC 6749).
	TokenPath string
	// MaxAge is the Cache-Control max-age of both documents.
	MaxAge time.Duration
	// Error writes an error answer (the gateway's one error writer).
	Error func(w http.ResponseWriter, r *http.Request, code int, msg string)
}

// Handlers returns the handlers keyed by path.
func Handlers(o Options) map[string]http.Handler {
	cc := "public, max-age=" + strconv.FormatInt(int64(o.MaxAge/time.Second), 10)
	return map[string]http.Handler{
		PathJWKS: serve(o, cc, func() []byte { return o.Keys.Keys().JWKS() }),
		PathMetadata: serve(o, cc, func() []byte {
			if o.BaseURL == "" {
				return nil
			}
			return metadata(o)
		}),
	}
}

func serve(o Options, cacheControl string, body func() []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			o.Error(w, r, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		b := body()
		if b == nil {
			o.Error(w, r, http.StatusNotFound, "no issuer metadata: set jwt.issuer_url")
			return
		}
		sum := sha256.Sum256(b)
		etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", cacheControl)
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Length", strconv.Itoa(len(b)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(b)
	})
}

// metadata renders the issuer metadata of the key set in force.
func metadata(o Options) []byte {
	ks := o.Keys.Keys()
	var algs []string
	for _, k := range ks.PublicKeys() {
		algs = append(algs, k.Alg)
	}
	if a := ks.Algorithm(); a != "" && a != token.AlgHS256 {
		algs = append(algs, a)
	}
	slices.Sort(algs)
	algs = slices.Compact(algs)
	if algs == nil {
		algs = []string{}
	}
	doc := struct {
		Issuer               string   `json:"issuer"`
		JWKSURI              string   `json:"jwks_uri"`
		TokenEndpoint        string   `json:"token_endpoint,omitempty"`
		GrantTypes           []string `json:"grant_types_supported,omitempty"`
		TokenAuthMethods     []string `json:"token_endpoint_auth_methods_supported,omitempty"`
		SubjectTypes         []string `json:"subject_types_supported"`
		IDTokenAlgs          []string `json:"id_token_signing_alg_values_supported"`
		AccessTokenAlgs      []string `json:"access_token_signing_alg_values_supported"`
		AssertionSigningAlgs []string `json:"authgate_assertion_signing_alg_values_supported"`
	}{
		Issuer: o.Issuer, JWKSURI: o.BaseURL + PathJWKS, SubjectTypes: []string{"public"},
		IDTokenAlgs: algs, AccessTokenAlgs: algs, AssertionSigningAlgs: algs,
	}
	if o.TokenPath != "" {
		doc.TokenEndpoint = o.BaseURL + o.TokenPath
		doc.GrantTypes = []string{"password", "refresh_token"}
		doc.TokenAuthMethods = []string{"none"}
	}
	b, _ := json.Marshal(doc) // strings only: cannot fail
	return b
}
