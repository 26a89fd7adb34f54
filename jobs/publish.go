package jobs

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
)

// Publish sends a job of type t to <subjectPrefix>.jobs.<t> ("push" when subjectPrefix is
// empty) and waits for JetStream's acknowledgement. When the job has a request id it is
// also the message's Nats-Msg-Id, so that publishing the same job twice within the jobs
// stream's duplicate window stores it once (the PubAck then says Duplicate). The trace
// context of ctx goes into the message's headers (traceparent, tracestate) through the
// global OpenTelemetry propagator, so the worker's spans continue the caller's trace; with
// no propagator set (otel.SetTextMapPropagator) nothing is added.
func Publish(ctx context.Context, js jetstream.JetStream, subjectPrefix string, t Type, job Job) (*jetstream.PubAck, error) {
	if len(job.Payload) == 0 {
		return nil, errors.New("jobs: the job has no payload")
	}
	data, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	if subjectPrefix == "" {
		subjectPrefix = "push"
	}
	m := nats.NewMsg(subjectPrefix + ".jobs." + string(t))
	m.Data = data
	if job.RequestID != "" {
		m.Header.Set(nats.MsgIdHdr, job.RequestID)
	}
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(m.Header))
	return js.PublishMsg(ctx, m)
}
