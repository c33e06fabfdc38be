package proxy

import (
	"net/http"
	"slices"
	"strings"
)

// IdentityHeaders names the headers the gateway sets on admitted requests.
// Empty fields take the defaults of DefaultIdentityHeaders.
type IdentityHeaders struct {
	Subject string `yaml:"subject"`
	Roles   string `yaml:"roles"`
	Method  string `yaml:"method"`
	KeyName string `yaml:"key_name"`
	Issuer  string `yaml:"issuer"`
	// Claims maps an upstream header name to the token claim path it
	// carries (for example X-Auth-Email: email), for the gateway's own
	// tokens and external issuers alike. The values are
	// authn.ClaimText: no control characters, list items joined with ","
	// and never containing one. These headers are reserved like the
	// others: a client's copies are always removed.
	Claims map[string]string `yaml:"claims"`

	claims    []claimHeader // Claims in header order, canonical names; set by withDefaults
	assertion string        // the assertion header, canonical; set by New
}

// claimHeader is one header of IdentityHeaders.Claims.
type claimHeader struct{ name, path string }

// DefaultIdentityHeaders are the documented default header names.
var DefaultIdentityHeaders = IdentityHeaders{
	Subject: "X-Auth-Subject",
	Roles:   "X-Auth-Roles",
	Method:  "X-Auth-Method",
	KeyName: "X-Auth-Key-Name",
	Issuer:  "X-Auth-Issuer",
}

func (h IdentityHeaders) withDefaults() IdentityHeaders {
	d := DefaultIdentityHeaders
	if h.Subject != "" {
		d.Subject = h.Subject
	}
	if h.Roles != "" {
		d.Roles = h.Roles
	}
	if h.Method != "" {
		d.Method = h.Method
	}
	if h.KeyName != "" {
		d.KeyName = h.KeyName
	}
	if h.Issuer != "" {
		d.Issuer = h.Issuer
	}
	d.Subject = http.CanonicalHeaderKey(d.Subject)
	d.Roles = http.CanonicalHeaderKey(d.Roles)
	d.Method = http.CanonicalHeaderKey(d.Method)
	d.KeyName = http.CanonicalHeaderKey(d.KeyName)
	d.Issuer = http.CanonicalHeaderKey(d.Issuer)
	d.Claims, d.claims = h.Claims, nil
	for name, path := range h.Claims {
		d.claims = append(d.claims, claimHeader{name: http.CanonicalHeaderKey(name), path: path})
	}
	slices.SortFunc(d.claims, func(a, b claimHeader) int { return strings.Compare(a.name, b.name) })
	return d
}

// names are every header the gateway sets for the caller: the identity
// headers, the claim headers and the assertion header.
func (h IdentityHeaders) names() []string {
	out := []string{h.Subject, h.Roles, h.Method, h.KeyName, h.Issuer}
	for _, c := range h.claims {
		out = append(out, c.name)
	}
	if h.assertion != "" {
		out = append(out, h.assertion)
	}
	return out
}

// overrideHeaders make many frameworks serve another method or path than
// the one on the request line: Rails, Laravel and Express honour method
// overrides, Symfony/Zend (CVE-2018-14773) and IIS URL Rewrite route by
// X-Original-URL and X-Rewrite-URL. The policy decides the request line, so
// these never reach the upstream, whoever sent them.
var overrideHeaders = []string{
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
	"X-Original-Url", "X-Rewrite-Url", "X-Original-Uri", "X-Forwarded-Uri", "X-Forwarded-Path",
}

// foreignIdentityHeaders are the identity headers other authenticating
// proxies set. An app moving from oauth2-proxy, Authelia, Authentik,
// Pomerium, Vouch, Kong, Grafana's auth proxy, a cloud load balancer or
// the Kubernetes front proxy trusts exactly these, so a client must not
// be able to write them. They are removed from every request, from any
// peer, public paths included: a trusted ingress passes a client's copy
// on unchanged. An app that needs one from authgate can have it, by
// naming it under identity_headers. The client-certificate headers are
// included, as Envoy sanitizes X-Forwarded-Client-Cert by default.
var foreignIdentityHeaders = []string{
	// oauth2-proxy
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
	"X-Forwarded-Access-Token", "X-Forwarded-Login",
	// Authelia, Apache, Kubernetes request-header authentication
	"Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name", "X-Remote-User", "X-Remote-Group",
	"X-Remote-Groups", "X-Remote-Email", "X-Remote-Name",
	// Grafana auth proxy, Kong, generic
	"X-Webauth-User", "X-Webauth-Email", "X-Webauth-Name", "X-Webauth-Groups", "X-Webauth-Role",
	"X-Authenticated-User", "X-Authenticated-Userid", "X-Authenticated-Scope", "X-Anonymous-Consumer",
	"X-Credential-Identifier", "X-Credential-Username", "X-Userinfo",
	"X-User", "X-User-Id", "X-User-Email", "X-Email", "X-Groups", "X-Roles",
	// Pomerium, Google IAP, Cloudflare Access, AWS ALB
	"X-Goog-Iap-Jwt-Assertion",
	// client certificates (Envoy XFCC, RFC 9440, nginx and Apache)
	"X-Forwarded-Client-Cert", "Client-Cert", "Client-Cert-Chain", "X-Client-Cert", "X-Client-Verify",
	"X-Client-Dn", "X-Ssl-Cert",
}

// foreignIdentityPrefixes are header-name prefixes of the same kind:
// every header starting with one of them is removed.
var foreignIdentityPrefixes = []string{
	"X-Auth-Request-",       // oauth2-proxy (nginx auth_request mode)
	"X-Pomerium-",           // Pomerium (X-Pomerium-Jwt-Assertion, -Claim-*)
	"X-Authentik-",          // Authentik
	"X-Vouch-",              // Vouch Proxy
	"X-Consumer-",           // Kong
	"X-Remote-Extra-",       // Kubernetes request-header authentication
	"X-Goog-Authenticated-", // Google IAP
	"Cf-Access-",            // Cloudflare Access
	"X-Amzn-Oidc-",          // AWS ALB
	"X-Ms-Client-Principal", // Azure App Service authentication
	"X-Ms-Token-",           // Azure App Service authentication
	"X-Ssl-Client-",         // nginx/HAProxy client certificates
	"Ssl-Client-",           // ingress-nginx client certificates
}

// forwardedHeaders are believed only from trusted proxies: client address
// and scheme hints that frameworks read (Rails reads Client-Ip, Rack reads
// X-Forwarded-Ssl before X-Forwarded-Proto).
var forwardedHeaders = []string{
	"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix",
	"X-Real-Ip", "Forwarded", "True-Client-Ip", "X-Client-Ip", "Client-Ip", "Cf-Connecting-Ip",
	"X-Cluster-Client-Ip", "Fastly-Client-Ip", "X-Originating-Ip", "X-Forwarded-Ssl", "X-Forwarded-Scheme",
	"X-Url-Scheme", "Front-End-Https",
}

// stripper removes reserved headers. Names compare case-insensitively with
// "_" equal to "-": many upstream stacks (CGI, WSGI, PHP, some nginx
// setups) map both to the same variable, so X_Auth_Subject would arrive as
// the subject header (oauth2-proxy CVE-2025-64484).
type stripper struct {
	always    []string // lower-case, "-" form
	untrusted []string // stripped unless the peer is a trusted proxy
	prefixes  []string // lower-case, "-" form; every name starting so is stripped
}

func newStripper(always, untrusted, prefixes []string) stripper {
	var s stripper
	for _, n := range always {
		s.always = append(s.always, strings.ToLower(n))
	}
	for _, n := range untrusted {
		s.untrusted = append(s.untrusted, strings.ToLower(n))
	}
	for _, n := range prefixes {
		s.prefixes = append(s.prefixes, strings.ToLower(n))
	}
	return s
}

// prefixed reports whether header name k starts with one of the
// stripper's prefixes, compared like sameHeader.
func (s stripper) prefixed(k string) bool {
	for _, p := range s.prefixes {
		if len(k) >= len(p) && sameHeader(k[:len(p)], p) {
			return true
		}
	}
	return false
}

// sameHeader reports whether header name k equals the lower-case "-" form
// want, ignoring case and treating "_" as "-".
func sameHeader(k, want string) bool {
	if len(k) != len(want) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '_' {
			c = '-'
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// peer says whether the headers being stripped came from a trusted proxy.
type peer bool

// The peers.
const (
	untrustedPeer peer = false // a client, or headers built here
	trustedPeer   peer = true  // a configured proxy: its forwarded headers stay
)

// strip deletes reserved headers from h. Trusted forwarded headers in their
// exact canonical spelling are kept when from is trustedPeer; underscore
// variants of them are always removed.
func (s stripper) strip(h http.Header, from peer) {
	for k := range h {
		if s.prefixed(k) {
			delete(h, k)
			continue
		}
		for _, n := range s.always {
			if sameHeader(k, n) {
				delete(h, k)
				break
			}
		}
		for _, n := range s.untrusted {
			if sameHeader(k, n) {
				if from != trustedPeer || strings.ContainsRune(k, '_') || k != http.CanonicalHeaderKey(n) {
					delete(h, k)
				}
				break
			}
		}
	}
}
