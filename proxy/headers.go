package proxy

import (
	"net/http"
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
}

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
	return d
}

func (h IdentityHeaders) names() []string {
	return []string{h.Subject, h.Roles, h.Method, h.KeyName, h.Issuer}
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
}

func newStripper(always, untrusted []string) stripper {
	var s stripper
	for _, n := range always {
		s.always = append(s.always, strings.ToLower(n))
	}
	for _, n := range untrusted {
		s.untrusted = append(s.untrusted, strings.ToLower(n))
	}
	return s
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

// strip deletes reserved headers from h. Trusted forwarded headers in their
// exact canonical spelling are kept when trustedPeer is true; underscore
// variants of them are always removed.
func (s stripper) strip(h http.Header, trustedPeer bool) {
	for k := range h {
		for _, n := range s.always {
			if sameHeader(k, n) {
				delete(h, k)
				break
			}
		}
		for _, n := range s.untrusted {
			if sameHeader(k, n) {
				if !trustedPeer || strings.ContainsRune(k, '_') || k != http.CanonicalHeaderKey(n) {
					delete(h, k)
				}
				break
			}
		}
	}
}
