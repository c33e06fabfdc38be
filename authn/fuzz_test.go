package authn

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// judgingVerifier records every call and accepts a token only when its
// length is even, so the fuzzer sees both answers.
type judgingVerifier struct {
	iss string

	mu       sync.Mutex
	got      []string
	accepted []bool
}

func (v *judgingVerifier) Issuer() string { return v.iss }

func (v *judgingVerifier) Verify(_ context.Context, raw string) (Principal, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ok := len(raw)%2 == 0
	v.got = append(v.got, raw)
	v.accepted = append(v.accepted, ok)
	if !ok {
		return Principal{}, ErrInvalidToken
	}
	return Principal{Subject: "sub-" + v.iss, Method: MethodExternal, Issuer: v.iss}, nil
}

func FuzzBearerToken(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	f.Add("Bearer x.y.z", "", "", false)
	f.Add("Basic YTpi", "", "", false)
	f.Add("", "a", "sig", true)
	f.Add("bearer ", "b", "", true)
	f.Add("Bearer  ", "a", " extra", true)
	f.Add("Bearer "+enc([]byte(`{}`))+"."+enc([]byte(`{"iss":"a"}`))+".s", "", "", false)
	f.Add("Bearer "+enc([]byte(`{}`))+"."+enc([]byte(`{"iss":"b","ISS":"a"}`))+".sig", "", "", false)
	f.Add("Bearer\t", "a", "\t", true)
	f.Add("Bearer", "\x00", "..", true)

	f.Fuzz(func(t *testing.T, header, iss, tail string, build bool) {
		if build {
			// Build a well-formed token around the fuzzed issuer so the
			// verifier dispatch is reached, not only the header parser.
			payload := `{"iss":` + quoteJSON(iss) + `}`
			header += enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(payload)) + "." + tail
		}
		a, b := &judgingVerifier{iss: "a"}, &judgingVerifier{iss: "b"}
		vs := []TokenVerifier{a, b}
		single := len(tail)%3 == 1 // also cover the one-issuer path
		if single {
			vs = vs[:1]
		}
		bearer, err := NewBearer(vs...)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Authorization"] = []string{header}
		p, ok, err := bearer.Authenticate(r)

		calls := len(a.got) + len(b.got)
		if calls > 1 {
			t.Fatalf("Authenticate(%q) called the verifiers %d times, want at most once", header, calls)
		}
		var v *judgingVerifier
		switch {
		case len(a.got) == 1:
			v = a
		case len(b.got) == 1:
			v = b
		}
		if ok {
			if err != nil {
				t.Fatalf("Authenticate(%q) = ok with error %v", header, err)
			}
			if v == nil || !v.accepted[0] {
				t.Fatalf("Authenticate(%q) = ok, but no verifier accepted the token", header)
			}
			if p.Subject != "sub-"+v.iss {
				t.Fatalf("Authenticate(%q) subject = %q, want the verifier's %q", header, p.Subject, "sub-"+v.iss)
			}
		} else if p.Authenticated() {
			t.Fatalf("Authenticate(%q) = not ok with principal %+v", header, p)
		}
		if v != nil {
			if v.accepted[0] != ok {
				t.Fatalf("Authenticate(%q) ok = %v, but the verifier said %v", header, ok, v.accepted[0])
			}
			if !v.accepted[0] && err == nil {
				t.Fatalf("Authenticate(%q) error = nil after the verifier rejected the token", header)
			}
			tok := v.got[0]
			// The verifier only ever sees the single token of a bearer
			// header, and, among several issuers, only the verifier its
			// issuer names.
			if tok == "" || strings.ContainsAny(tok, " \t") || !strings.Contains(header, tok) {
				t.Fatalf("Authenticate(%q) gave the verifier %q", header, tok)
			}
			if got, _, perr := peekIssuer(tok); !single && (perr != nil || got != v.iss) {
				t.Fatalf("Authenticate(%q) gave a token with issuer %q (%v) to verifier %q", header, got, perr, v.iss)
			}
		}
		if v == nil && err == nil && header != "" && !ok {
			// A present header that reached no verifier must be an error:
			// a bad credential never falls through to anonymous.
			t.Fatalf("Authenticate(%q) = no credential, no error", header)
		}
	})
}

func quoteJSON(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20:
			sb.WriteString(`\u00`)
			sb.WriteByte("0123456789abcdef"[r>>4])
			sb.WriteByte("0123456789abcdef"[r&0xf])
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}
