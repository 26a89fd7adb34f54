package tracing

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pushworker/pushworker/jobs"
)

// Extract returns the W3C trace context (traceparent, tracestate) carried by NATS headers;
// it is invalid when there is none. The worker reads and writes W3C Trace Context whatever
// global propagator the process has: it is what producers and collectors agree on.
func Extract(h nats.Header) trace.SpanContext {
	if len(h) == 0 {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), jobs.HeaderCarrier(h)))
}

// Inject writes the span context of ctx into NATS headers.
func Inject(ctx context.Context, h nats.Header) {
	propagation.TraceContext{}.Inject(ctx, jobs.HeaderCarrier(h))
}

// InjectSpan writes sc into NATS headers.
func InjectSpan(sc trace.SpanContext, h nats.Header) {
	Inject(trace.ContextWithSpanContext(context.Background(), sc), h)
}

// Traceparent is sc as a W3C traceparent value, or "" when sc is invalid.
func Traceparent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	h := nats.Header{}
	InjectSpan(sc, h)
	return h.Get("traceparent")
}

// ParseTraceparent reads a W3C traceparent value; the result is invalid when s is not one.
func ParseTraceparent(s string) trace.SpanContext {
	if s == "" {
		return trace.SpanContext{}
	}
	return Extract(nats.Header{"traceparent": {s}})
}
