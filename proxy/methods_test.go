package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestMethodGrammarIsThePolicys: a method a rule names passes the gateway's
// method check, so a rule can always match what it names, and a method
// outside the one grammar is refused before authentication.
func TestMethodGrammarIsThePolicys(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Method", r.Method)
	}))
	t.Cleanup(up.Close)
	env := newGatewayEnv(t, `rules:
  - {id: m2, path: /dav/**, methods: [M2, PURGE], authenticated: true}
  - {id: rest, path: /**, public: true}
`, up.URL, nil)
	for _, tt := range []struct {
		method string
		key    string
		want   int
	}{
		{"M2", userKey, http.StatusOK},
		{"PURGE", userKey, http.StatusOK},
		{"M2", "", http.StatusUnauthorized},
		{"M3", userKey, http.StatusMethodNotAllowed}, // valid, but no rule names it
		{"m2", userKey, http.StatusMethodNotAllowed},
		{"2M", userKey, http.StatusMethodNotAllowed},
		{"M.2", userKey, http.StatusMethodNotAllowed},
	} {
		t.Run(tt.method, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/dav/x", nil)
			if tt.key != "" {
				r.Header.Set("X-API-Key", tt.key)
			}
			w := serve(env.gw, r)
			if w.Code != tt.want {
				t.Fatalf("%s /dav/x = %d, want %d (%s)", tt.method, w.Code, tt.want, w.Body)
			}
		})
	}
}
