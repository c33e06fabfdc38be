package app

import (
	"net/http"
	"strings"
)

// modeRouter sends forward-auth checks to the decision endpoint and every
// other request to the gateway (which in forward-auth mode serves only the
// auth endpoints). It matches exact paths itself rather than through
// http.ServeMux, whose path cleaning would redirect requests the gateway
// must see and refuse.
type modeRouter struct {
	verifyPath, envoyPrefix string
	verify, next            http.Handler
}

func (m *modeRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == m.verifyPath || (m.envoyPrefix != "" && (p == m.envoyPrefix || strings.HasPrefix(p, m.envoyPrefix+"/"))) {
		m.verify.ServeHTTP(w, r)
		return
	}
	m.next.ServeHTTP(w, r)
}
