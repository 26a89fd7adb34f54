package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"time"

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
//
// A job of priority high or low goes to its lane's subject <prefix>.jobs.<t>.<priority>
// (README "Campaigns"). A job whose NotBefore is in the future is stored as a JetStream scheduled message
// (Schedule) that the server publishes on the job subject at that time; one whose
// NotBefore is after its NotAfter is refused here, as the worker would reject it.
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
	if _, ok := ParsePriority(string(job.Priority)); !ok {
		return nil, errors.New("jobs: priority must be high, normal or low")
	}
	m := nats.NewMsg(JobSubject(subjectPrefix, string(t), job.Priority))
	m.Data = data
	if job.RequestID != "" {
		m.Header.Set(nats.MsgIdHdr, job.RequestID)
	}
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(m.Header))
	if job.NotBefore != nil {
		if job.NotAfter != nil && job.NotBefore.After(*job.NotAfter) {
			return nil, errors.New("jobs: not_before is after not_after")
		}
		if time.Until(*job.NotBefore) > 0 {
			msgID := ""
			if job.RequestID != "" {
				msgID = "sched:" + job.RequestID
			}
			return Schedule(ctx, js, subjectPrefix, string(t), job.RequestID, msgID, m, *job.NotBefore)
		}
	}
	return js.PublishMsg(ctx, m)
}
