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
}

// DefaultIdentityHeaders are the documented default header names.
var DefaultIdentityHeaders = IdentityHeaders{
	Subject: "X-Auth-Subject",
	Roles:   "X-Auth-Roles",
	Method:  "X-Auth-Method",
	KeyName: "X-Auth-Key-Name",
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
	d.Subject = http.CanonicalHeaderKey(d.Subject)
	d.Roles = http.CanonicalHeaderKey(d.Roles)
	d.Method = http.CanonicalHeaderKey(d.Method)
	d.KeyName = http.CanonicalHeaderKey(d.KeyName)
	return d
}

func (h IdentityHeaders) names() []string {
	return []string{h.Subject, h.Roles, h.Method, h.KeyName}
}

// forwardedHeaders are believed only from trusted proxies.
var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-Ip", "Forwarded"}

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
