package proxy

import (
	"crypto/tls"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

func TestGRPCKindOf(t *testing.T) {
	tests := []struct {
		ct    []string
		proto int
		want  grpcKind
	}{
		{[]string{"application/grpc"}, 2, grpcNative},
		{[]string{"application/grpc+proto"}, 2, grpcNative},
		{[]string{"Application/GRPC+json"}, 2, grpcNative},
		{[]string{"application/grpc; charset=utf-8"}, 2, grpcNative},
		{[]string{"application/grpc"}, 1, grpcNone}, // gRPC needs HTTP/2
		{[]string{"application/grpc-web"}, 1, grpcWeb},
		{[]string{"application/grpc-web+proto"}, 2, grpcWeb},
		{[]string{"application/grpc-web-text"}, 1, grpcWebText},
		{[]string{"application/grpc-web-text+proto"}, 1, grpcWebText},
		{[]string{"application/grpcx"}, 2, grpcNone},
		{[]string{"application/grpc-webx"}, 2, grpcNone},
		{[]string{"application/json"}, 2, grpcNone},
		{[]string{"application/gr"}, 2, grpcNone},
		{nil, 2, grpcNone},
		{[]string{"application/grpc", "application/grpc"}, 2, grpcNone}, // ambiguous
	}
	for _, tc := range tests {
		r := &http.Request{Header: http.Header{}, ProtoMajor: tc.proto}
		if tc.ct != nil {
			r.Header["Content-Type"] = tc.ct
		}
		if got := grpcKindOf(r); got != tc.want {
			t.Errorf("grpcKindOf(%q over HTTP/%d) = %d, want %d", tc.ct, tc.proto, got, tc.want)
		}
	}
}

func TestParseGRPCTimeout(t *testing.T) {
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"30S", 30 * time.Second, true},
		{"300m", 300 * time.Millisecond, true},
		{"5u", 5 * time.Microsecond, true},
		{"7n", 7, true},
		{"0m", 0, true},
		{"99999999n", 99999999, true},
		{"99999999H", math.MaxInt64, true}, // clamped
		{"", 0, false},
		{"S", 0, false},
		{"1", 0, false},
		{"123456789S", 0, false}, // nine digits
		{"1s", 0, false},
		{"-1S", 0, false},
		{"+1S", 0, false},
		{" 1S", 0, false},
		{"1.5S", 0, false},
		{"1SS", 0, false},
		{"１S", 0, false}, // a full-width digit
	}
	for _, tc := range tests {
		got, ok := ParseGRPCTimeout(tc.v)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseGRPCTimeout(%q) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzGRPCTimeout(f *testing.F) {
	for _, s := range []string{"1H", "300m", "99999999H", "0n", "1", "abc", "12345678S"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseGRPCTimeout(v)
		if !ok {
			if d != 0 {
				t.Fatalf("ParseGRPCTimeout(%q) = %v for a rejected value", v, d)
			}
			return
		}
		// Accepted values are 1-8 ASCII digits and a unit, never negative.
		if len(v) < 2 || len(v) > 9 || d < 0 {
			t.Fatalf("ParseGRPCTimeout(%q) accepted it as %v", v, d)
		}
		for i := 0; i < len(v)-1; i++ {
			if v[i] < '0' || v[i] > '9' {
				t.Fatalf("ParseGRPCTimeout(%q) accepted a non-digit", v)
			}
		}
	})
}

func TestGRPCMessage(t *testing.T) {
	for in, want := range map[string]string{
		"access denied":      "access denied",
		"100% sure":          "100%25 sure",
		"line\nbreak":        "line%0Abreak",
		"caf\u00e9":          "caf%C3%A9",
		"\x7f":               "%7F",
		"":                   "",
		"tab\tand space ok!": "tab%09and space ok!",
	} {
		if got := grpcMessage(in); got != want {
			t.Errorf("grpcMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGRPCCode(t *testing.T) {
	for code, want := range map[int]int{
		400: grpcInvalidArgument, 401: grpcUnauthenticated, 403: grpcPermissionDenied, 404: grpcUnimplemented,
		405: grpcUnimplemented, 408: grpcDeadlineExceeded, 413: grpcResourceExhausted, 429: grpcUnavailable,
		431: grpcResourceExhausted, 502: grpcUnavailable, 503: grpcUnavailable, 504: grpcDeadlineExceeded, 500: grpcInternal,
	} {
		if got := grpcCode(code); got != want {
			t.Errorf("grpcCode(%d) = %d, want %d", code, got, want)
		}
	}
}

// A gRPC refusal is trailers-only: 200, the gRPC content type and status
// in the headers, no body; the writer records the status it stands for.
func TestWriteGRPCError(t *testing.T) {
	for _, tc := range []struct {
		kind grpcKind
		ct   string
	}{{grpcNative, "application/grpc"}, {grpcWeb, "application/grpc-web+proto"}, {grpcWebText, "application/grpc-web-text+proto"}} {
		rec := httptest.NewRecorder()
		w := &statusWriter{ResponseWriter: rec, grpc: tc.kind}
		WriteError(w, "rid", &Error{Code: 401, Msg: "authentication required", Challenge: `Bearer realm="authgate"`, RetryAfter: time.Second})
		h := rec.Header()
		if rec.Code != 200 || rec.Body.Len() != 0 || h.Get("Content-Type") != tc.ct || h.Get("Grpc-Status") != "16" ||
			h.Get("Grpc-Message") != "authentication required" || h.Get("Www-Authenticate") == "" {
			t.Errorf("kind %d: %d %v %q", tc.kind, rec.Code, h, rec.Body)
		}
		if w.code() != 401 || w.grpcCode != grpcUnauthenticated {
			t.Errorf("kind %d: recorded %d (gRPC %d), want 401 (16)", tc.kind, w.code(), w.grpcCode)
		}
	}
	// Not gRPC: the JSON body.
	rec := httptest.NewRecorder()
	WriteError(&statusWriter{ResponseWriter: rec}, "rid", &Error{Code: 403, Msg: "access denied"})
	if rec.Code != 403 || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("non-gRPC: %d %v", rec.Code, rec.Header())
	}
}

// upstream.protocol h2 never falls back to HTTP/1.1: an upstream that
// does not select h2 fails the request (502) instead of silently losing
// trailers.
func TestH2UpstreamWithoutH2Fails(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Proto))
	}))
	up.EnableHTTP2 = false
	up.StartTLS()
	t.Cleanup(up.Close)
	tr := NewTransport(TransportOptions{Protocol: ProtocolH2, TLSClientConfig: up.Client().Transport.(*http.Transport).TLSClientConfig})
	u, _ := url.Parse(up.URL + "/x")
	resp, err := tr.RoundTrip(&http.Request{Method: "GET", URL: u, Header: http.Header{}, Host: u.Host})
	if err == nil {
		resp.Body.Close()
		t.Fatalf("an HTTP/1-only upstream answered %s over upstream.protocol h2", resp.Proto)
	}

	// A TLS server that ignores ALPN altogether.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain := &http.Server{Handler: up.Config.Handler, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	go func() { _ = plain.Serve(tls.NewListener(ln, &tls.Config{Certificates: up.TLS.Certificates})) }()
	t.Cleanup(func() { plain.Close() })
	u, _ = url.Parse("https://" + ln.Addr().String() + "/x")
	resp, err = tr.RoundTrip(&http.Request{Method: "GET", URL: u, Header: http.Header{}, Host: u.Host})
	if err == nil {
		resp.Body.Close()
		t.Fatalf("an upstream without ALPN answered %s over upstream.protocol h2", resp.Proto)
	}

	h2 := httptest.NewUnstartedServer(up.Config.Handler)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	tr = NewTransport(TransportOptions{Protocol: ProtocolH2, TLSClientConfig: h2.Client().Transport.(*http.Transport).TLSClientConfig})
	u, _ = url.Parse(h2.URL + "/x")
	resp, err = tr.RoundTrip(&http.Request{Method: "GET", URL: u, Header: http.Header{}, Host: u.Host})
	if err != nil || resp.ProtoMajor != 2 {
		t.Fatalf("h2 upstream: %v %v", resp, err)
	}
	resp.Body.Close()
}
