package jwks

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// A request that waits for its issuer's keys to be fetched gets a span for
// the wait, under the span of the request that authenticates (the
// authenticator's context carries it). The span comes from the provider of
// that parent span, so nothing is configured here and an untraced request
// costs one context lookup. Background refreshes have no request and no
// span.

// fetchSpanName is the name of the span of a JWKS fetch.
const fetchSpanName = "authgate.jwks.fetch"

// startFetchSpan starts the span of a key fetch the request in ctx waits
// for, because its keys were due or its token named an unknown kid
// (cause); it returns nil when the request is not traced.
func startFetchSpan(ctx context.Context, issuer, cause string) trace.Span {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return nil
	}
	_, span := parent.TracerProvider().Tracer("github.com/authgate/authgate/authn/jwks").Start(ctx, fetchSpanName,
		trace.WithAttributes(attribute.String("authgate.issuer", issuer), attribute.String("authgate.jwks.cause", cause)))
	return span
}

// endFetchSpan ends span (nil for none), marking a failed fetch.
func endFetchSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, "jwks fetch failed")
	}
	span.End()
}
