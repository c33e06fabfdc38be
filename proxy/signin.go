package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/authgate/authgate/policy"
)

// SignIn sends anonymous browser navigations to the sign-in page. A nil
// *SignIn redirects nobody. It is immutable and safe for concurrent use.
type SignIn struct {
	// Path is the sign-in page, e.g. /auth/sign_in.
	Path string
	// Default is what a rule without on_unauthenticated does: true
	// redirects browser navigations, false answers 401.
	Default bool
}

// wants reports whether r, an anonymous request that rule choice denied,
// is a browser navigation to send to the sign-in page. Only a top-level
// GET or HEAD for an HTML page qualifies: a script's fetch or XHR, an API
// client, or a browser loading an image keeps the 401, because a redirect
// to an HTML form is useless to them and hides the real status.
func (s *SignIn) wants(r *http.Request, choice policy.OnUnauthenticated) bool {
	if s == nil {
		return false
	}
	switch choice {
	case policy.UnauthenticatedDeny:
		return false
	case policy.UnauthenticatedDefault:
		if !s.Default {
			return false
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	for _, a := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(a), "text/html") {
			return true
		}
	}
	return false
}

// redirect answers 302 to the sign-in page, carrying the canonical path
// and query as rd. The page checks rd again before it follows it.
func (s *SignIn) redirect(w http.ResponseWriter, r *http.Request, canon string) {
	rd := canon
	if r.URL.RawQuery != "" {
		rd += "?" + r.URL.RawQuery
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Location", s.Path+"?rd="+url.QueryEscape(rd))
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusFound)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("<!doctype html><title>Sign in</title><a href=\"" + s.Path + "\">Sign in</a>\n"))
	}
}

// stripCookies removes the named cookies from the Cookie headers of h.
func stripCookies(h http.Header, names map[string]bool) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	var out []string
	changed := false
	for _, line := range lines {
		parts := strings.Split(line, ";")
		kept := parts[:0]
		for _, p := range parts {
			name, _, _ := strings.Cut(strings.TrimSpace(p), "=")
			if names[name] {
				changed = true
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) > 0 {
			out = append(out, strings.TrimSpace(strings.Join(kept, ";")))
		}
	}
	if !changed {
		return
	}
	if len(out) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = out
}

// dropSetCookies removes upstream Set-Cookie headers naming one of the
// gateway's cookies: an app that reflects input into Set-Cookie must not
// be able to plant a session id in the browser (session fixation).
func dropSetCookies(h http.Header, names map[string]bool) {
	lines := h["Set-Cookie"]
	if len(lines) == 0 {
		return
	}
	kept := lines[:0:0]
	for _, l := range lines {
		name, _, _ := strings.Cut(strings.TrimSpace(l), "=")
		if !names[strings.TrimSpace(name)] {
			kept = append(kept, l)
		}
	}
	if len(kept) == 0 {
		delete(h, "Set-Cookie")
		return
	}
	h["Set-Cookie"] = kept
}
