package proxy

import (
	"net/http"

	"github.com/authgate/authgate/internal/httperr"
)

// Error is the one error type for client-facing failures (see
// internal/httperr). Msg is safe to show the client; Err is the private
// detail and goes only to the log.
type Error = httperr.Error

// WriteError renders e as JSON with the request id (httperr.Write, the
// only writer of gateway errors), or as a gRPC status for a gRPC client of
// the proxy (see grpc.go).
func WriteError(w http.ResponseWriter, requestID string, e *Error) {
	if sw, ok := w.(*statusWriter); ok && sw.grpc != grpcNone {
		writeGRPCError(sw, e)
		return
	}
	httperr.Write(w, requestID, e)
}
