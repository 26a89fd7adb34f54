package jobs

import (
	"strings"

	"github.com/nats-io/nats.go"
)

// HeaderCarrier lets an OpenTelemetry propagator read and write the trace context
// (traceparent, tracestate) in NATS message headers: it is a propagation.TextMapCarrier.
// Publish injects the caller's context with it; a reader of results extracts the worker's:
//
//	ctx = otel.GetTextMapPropagator().Extract(ctx, jobs.HeaderCarrier(msg.Header))
type HeaderCarrier nats.Header

// Get returns the first value of key. NATS headers are case-sensitive; a key that is not
// there as given is also looked for regardless of case ("Traceparent").
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set sets key to value, replacing any earlier values.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
