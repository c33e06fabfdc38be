package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authgate/authgate/authn"
)

type fixedAuth struct{}

func (fixedAuth) Authenticate(*http.Request) (authn.Principal, bool, error) {
	return authn.Principal{}, false, nil
}

type fixedRT struct{ resp *http.Response }

func (f fixedRT) RoundTrip(*http.Request) (*http.Response, error) { return f.resp, nil }

// With no tracer provider every tracing hook on the request path is free:
// the cost of tracing off is zero allocations (BenchmarkGatewayPass shows
// the whole pass).
func TestTracingOffAllocatesNothing(t *testing.T) {
	g := &Gateway{o: Options{Authenticator: fixedAuth{}}}
	r := httptest.NewRequest("GET", "/x", nil)
	st := &reqState{}
	if n := testing.AllocsPerRun(1000, func() {
		_, _, _ = g.authenticate(r)
		g.traceDecision(r, st, g.decideStart(r))
	}); n != 0 {
		t.Fatalf("authentication and decision hooks allocate %v times with tracing off", n)
	}
	resp := &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(""))}
	tt := &timedTransport{next: fixedRT{resp}}
	if n := testing.AllocsPerRun(1000, func() { _, _ = tt.RoundTrip(r) }); n != 0 {
		t.Fatalf("the upstream round trip allocates %v times with tracing off", n)
	}
}
