package e2e

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn is a raw HTTP/2 client connection (prior knowledge) that writes
// frames as given, for requests an HTTP/2 client library would refuse to
// send.
type h2Conn struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32 // next client stream id
	// goAways counts the GOAWAY frames read, graceful ones included.
	goAways int
}

// dialH2 opens an h2c connection to addr and exchanges SETTINGS.
func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &h2Conn{t: t, c: c, next: 1}
	h.enc = hpack.NewEncoder(&h.hbuf)
	h.fr = http2.NewFramer(c, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(64<<10, nil)
	h.fr.MaxHeaderListSize = 1 << 20
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	// The server's SETTINGS come first; it acknowledges ours later.
	f, err := h.fr.ReadFrame()
	if err != nil {
		t.Fatalf("reading the server's SETTINGS: %v", err)
	}
	if _, ok := f.(*http2.SettingsFrame); !ok {
		t.Fatalf("first server frame %T, want SETTINGS", f)
	}
	if err := h.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return h
}

// block encodes header fields, given as alternating name and value, into
// one header block.
func (h *h2Conn) block(fields ...string) []byte {
	h.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), h.hbuf.Bytes()...)
}

// request opens a stream with the given header fields (pseudo-headers
// included, in the order given) and returns its id. endStream ends the
// request with its headers.
func (h *h2Conn) request(endStream bool, fields ...string) uint32 {
	h.t.Helper()
	id := h.next
	h.next += 2
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block(fields...), EndStream: endStream, EndHeaders: true}); err != nil {
		h.t.Fatalf("writing HEADERS: %v", err)
	}
	return id
}

// get is the header list of a GET of path with the given extra fields.
func get(path string, extra ...string) []string {
	return append([]string{":method", "GET", ":scheme", "http", ":authority", "gateway.test", ":path", path}, extra...)
}

// h2Result is how the server ended one stream.
type h2Result struct {
	Status  string // :status, "" when the stream was reset
	Header  map[string]string
	Body    string
	Reset   http2.ErrCode // RST_STREAM code, when reset
	GoAway  bool          // the connection was closed with GOAWAY
	ConnErr error         // the connection failed
}

func (r h2Result) String() string {
	switch {
	case r.Status != "":
		return "status " + r.Status
	case r.GoAway:
		return "GOAWAY"
	case r.ConnErr != nil:
		return "connection error " + r.ConnErr.Error()
	}
	return "RST_STREAM " + r.Reset.String()
}

// refused reports whether the stream ended without a 2xx answer.
func (r h2Result) refused() bool { return r.Status == "" || r.Status[0] != '2' }

// await reads frames until stream id ends, answering PINGs and skipping
// other streams' frames.
func (h *h2Conn) await(id uint32) h2Result {
	h.t.Helper()
	var res h2Result
	var body strings.Builder
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			res.ConnErr = err
			return res
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				continue
			}
			if res.Status == "" {
				res.Header = map[string]string{}
			}
			for _, hf := range f.Fields {
				if hf.Name == ":status" {
					res.Status = hf.Value
				} else {
					res.Header[hf.Name] = hf.Value
				}
			}
			if f.StreamEnded() {
				res.Body = body.String()
				return res
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			body.Write(f.Data())
			if f.StreamEnded() {
				res.Body = body.String()
				return res
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				res.Reset = f.ErrCode
				return res
			}
		case *http2.GoAwayFrame:
			h.goAways++
			if f.LastStreamID < id || f.ErrCode != http2.ErrCodeNo {
				res.GoAway = true
				return res
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = h.fr.WritePing(true, f.Data)
			}
		}
	}
}

// drainUntilClosed reads frames until the server closes the connection
// or timeout passes, and reports whether it closed it, and whether a
// GOAWAY came first with which code.
func (h *h2Conn) drainUntilClosed(timeout time.Duration) (closed bool, goAway *http2.GoAwayFrame) {
	_ = h.c.SetReadDeadline(time.Now().Add(timeout))
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout()), goAway
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goAway = g
		}
	}
}

// goAwayCode describes a GOAWAY frame, or its absence.
func goAwayCode(g *http2.GoAwayFrame) string {
	if g == nil {
		return "no GOAWAY"
	}
	return "GOAWAY " + g.ErrCode.String()
}
