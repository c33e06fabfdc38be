package issuer

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"time"
)

// Page customises the gateway's browser pages (sign-in, sign-out,
// errors). The zero value is the default look.
type Page struct {
	// Title is the page heading and title; empty means "Sign in".
	Title string `yaml:"title"`
	// LogoURL is an image shown above the form: an https URL or a path
	// on this origin. Empty shows none.
	LogoURL string `yaml:"logo_url"`
	// PrimaryColor colours the buttons and links (#rgb or #rrggbb).
	PrimaryColor string `yaml:"primary_color"`
	// BackgroundColor colours the page behind the form.
	BackgroundColor string `yaml:"background_color"`
	// TemplateFile replaces the built-in template: an html/template file
	// that renders every page kind from PageData.
	TemplateFile string `yaml:"template_file"`
}

var colorRE = regexp.MustCompile(`^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// Validate reports every problem with p.
func (p Page) Validate() error {
	var errs []error
	for _, c := range []struct{ name, v string }{{"primary_color", p.PrimaryColor}, {"background_color", p.BackgroundColor}} {
		if c.v != "" && !colorRE.MatchString(c.v) {
			errs = append(errs, fmt.Errorf("issuer: page: %s: want #rgb or #rrggbb, got %q", c.name, c.v))
		}
	}
	if p.LogoURL != "" {
		if _, err := logoSource(p.LogoURL); err != nil {
			errs = append(errs, err)
		}
	}
	if len(p.Title) > 200 {
		errs = append(errs, errors.New("issuer: page: title: at most 200 bytes"))
	}
	return errors.Join(errs...)
}

// logoSource returns the CSP img-src source of a logo URL.
func logoSource(raw string) (string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", fmt.Errorf("issuer: page: logo_url: not a URL")
	case u.Scheme == "" && u.Host == "" && len(raw) > 0 && raw[0] == '/' && (len(raw) == 1 || raw[1] != '/'):
		return "'self'", nil
	case u.Scheme == "https" && u.Host != "" && u.User == nil:
		return "https://" + u.Host, nil
	}
	return "", fmt.Errorf("issuer: page: logo_url: want an https URL or a path starting with /")
}

// Page kinds, the PageData.Kind values a template renders.
const (
	KindSignIn    = "sign_in"
	KindSignOut   = "sign_out"
	KindSignedOut = "signed_out"
	KindError     = "error"
)

// PageData is what a page template renders. Every string is escaped by
// html/template for the context it lands in; nothing reaches the page
// unescaped.
type PageData struct {
	// Kind is one of sign_in, sign_out, signed_out, error.
	Kind string
	// Title is the configured heading.
	Title string
	// LogoURL is the configured logo, or empty.
	LogoURL string
	// Primary and Background are the configured colours.
	Primary, Background string
	// Nonce authorises the page's one inline style block (CSP).
	Nonce string
	// Action is the form's target; CSRF its token; RD the page to return
	// to after sign-in.
	Action, CSRF, RD string
	// Local reports whether the username and password form is shown.
	Local bool
	// Username is the name typed before a failed attempt.
	Username string
	// Error is a message for the user (uniform for every failed sign-in).
	Error string
	// Providers are the external identity providers, one button each.
	Providers []ProviderLink
	// Subject is the signed-in user on the sign-out page.
	Subject string
	// SignInURL is the sign-in page (links back from sign-out and errors).
	SignInURL string
	// RetryURL is the "try again" link of an error page.
	RetryURL string
	// Continue, on the signed-out page, is where the browser goes on to
	// sign out at the identity provider too (a meta refresh and a link:
	// a redirect from the sign-out form would be a form-action to
	// another origin, which the CSP forbids).
	Continue string
}

// ProviderLink is one external provider's button on the sign-in page.
type ProviderLink struct {
	Name, URL string
}

// defaultTemplate is the built-in page. It needs no JavaScript, has one
// inline style block authorised by nonce, labels every field, keeps the
// natural tab order, shows focus, and reflows to one column on a phone.
const defaultTemplate = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
{{if .Continue}}<meta http-equiv="refresh" content="0;url={{.Continue}}">
{{end}}<title>{{if eq .Kind "sign_in"}}{{.Title}}{{else if eq .Kind "sign_out"}}Sign out{{else if eq .Kind "signed_out"}}Signed out{{else}}Sign-in problem{{end}}</title>
<style nonce="{{.Nonce}}">
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:{{.Background}};font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a}
main{width:100%;max-width:24rem;margin:1rem;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.12)}
h1{font-size:1.5rem;margin:0 0 1.25rem}
.logo{display:block;max-width:100%;max-height:4rem;margin:0 auto 1rem}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=text],input[type=password]{width:100%;padding:.7rem .8rem;font-size:1rem;border:1px solid #767676;border-radius:8px}
button,.button{display:block;width:100%;margin-top:1.25rem;padding:.8rem;font-size:1rem;font-weight:600;border:0;border-radius:8px;background:{{.Primary}};color:#fff;text-align:center;text-decoration:none;cursor:pointer}
button.secondary{background:#fff;color:{{.Primary}};border:2px solid {{.Primary}}}
input:focus,button:focus,a:focus{outline:3px solid #ffbf47;outline-offset:2px}
.error{margin:0 0 1rem;padding:.75rem;border-radius:8px;background:#fdecea;color:#8a1c12;border:1px solid #f5c2bd}
.or{margin:1.5rem 0 0;text-align:center;color:#555}
a{color:{{.Primary}}}
@media (max-width:30rem){main{margin:0;max-width:none;min-height:100vh;border-radius:0;box-shadow:none;padding:1.5rem}}
</style>
</head>
<body>
<main>
{{if .LogoURL}}<img class="logo" src="{{.LogoURL}}" alt="">{{end}}
{{if eq .Kind "sign_in"}}
<h1>{{.Title}}</h1>
{{if .Error}}<p class="error" role="alert" id="form-error">{{.Error}}</p>{{end}}
{{if .Local}}
<form method="post" action="{{.Action}}" novalidate>
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="rd" value="{{.RD}}">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="{{.Username}}" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus{{if .Error}} aria-describedby="form-error" aria-invalid="true"{{end}}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required{{if .Error}} aria-describedby="form-error" aria-invalid="true"{{end}}>
<button type="submit">Sign in</button>
</form>
{{end}}
{{if .Providers}}{{if .Local}}<p class="or">or</p>{{end}}
{{range .Providers}}<a class="button" href="{{.URL}}">Sign in with {{.Name}}</a>
{{end}}{{end}}
{{else if eq .Kind "sign_out"}}
<h1>Sign out</h1>
<p>You are signed in as <strong>{{.Subject}}</strong>.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="scope" value="this">Sign out</button>
<button type="submit" name="scope" value="everywhere" class="secondary">Sign out everywhere</button>
</form>
{{else if eq .Kind "signed_out"}}
<h1>You are signed out</h1>
{{if .Continue}}<p><a class="button" href="{{.Continue}}">Continue to sign out at your identity provider</a></p>
{{else}}<p><a href="{{.SignInURL}}">Sign in again</a></p>{{end}}
{{else}}
<h1>Sign-in did not work</h1>
<p class="error" role="alert">{{.Error}}</p>
<p><a class="button" href="{{.RetryURL}}">Try again</a></p>
{{end}}
</main>
</body>
</html>
`

// pages renders the browser pages with their headers.
type pages struct {
	tmpl    *template.Template
	base    PageData
	imgSrc  string
	signIn  string
	refresh time.Duration
}

// newPages parses the page template (built in, or p.TemplateFile).
func newPages(p Page, signIn string) (*pages, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	src := defaultTemplate
	name := "sign-in page"
	if p.TemplateFile != "" {
		b, err := os.ReadFile(p.TemplateFile)
		if err != nil {
			return nil, fmt.Errorf("issuer: page: template_file: %w", err)
		}
		src, name = string(b), p.TemplateFile
	}
	t, err := template.New(name).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("issuer: page: %w", err)
	}
	pg := &pages{tmpl: t, signIn: signIn, imgSrc: "'self'"}
	pg.base = PageData{Title: p.Title, LogoURL: p.LogoURL, Primary: p.PrimaryColor, Background: p.BackgroundColor, SignInURL: signIn}
	if pg.base.Title == "" {
		pg.base.Title = "Sign in"
	}
	if pg.base.Primary == "" {
		pg.base.Primary = "#1f5fbf"
	}
	if pg.base.Background == "" {
		pg.base.Background = "#eef1f5"
	}
	if p.LogoURL != "" {
		pg.imgSrc, _ = logoSource(p.LogoURL)
	}
	// A broken custom template fails at startup, not at the first user.
	for _, kind := range []string{KindSignIn, KindSignOut, KindSignedOut, KindError} {
		d := pg.base
		d.Kind, d.Local, d.Nonce = kind, true, "n"
		if err := t.Execute(new(bytes.Buffer), d); err != nil {
			return nil, fmt.Errorf("issuer: page: %s: %w", kind, err)
		}
	}
	return pg, nil
}

// render writes a page with status. The headers keep it out of caches
// and frames: a strict CSP (no script at all; the one style block by
// nonce), frame-ancestors 'none' and X-Frame-Options DENY against
// clickjacking, no-store so a shared computer's back button shows no form
// state, and form-action 'self' so an injected form could not post away.
func (pg *pages) render(w http.ResponseWriter, r *http.Request, status int, d PageData) {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	d.Nonce = base64.RawStdEncoding.EncodeToString(nonce)
	d.Title, d.LogoURL, d.Primary, d.Background, d.SignInURL = pg.base.Title, pg.base.LogoURL, pg.base.Primary, pg.base.Background, pg.base.SignInURL
	var buf bytes.Buffer
	if err := pg.tmpl.Execute(&buf, d); err != nil {
		http.Error(w, "page unavailable", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+d.Nonce+"'; img-src "+pg.imgSrc+
		"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}
