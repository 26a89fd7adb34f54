package jobs_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/jobs"
)

func TestPublishSetsMsgIDAndDeduplicates(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, natstest.JetStream(t, "")))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PUSH_JOBS", Subjects: []string{"push.jobs.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	job, err := jobs.NewJob("order-1", jobs.P2TPayload{FromAccount: "shop", TopicID: 9223372036854775807, Msg: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	a1, err := jobs.Publish(ctx, js, "", jobs.P2T, job)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := jobs.Publish(ctx, js, "", jobs.P2T, job)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || !a2.Duplicate {
		t.Fatalf("duplicate flags %v %v", a1.Duplicate, a2.Duplicate)
	}
	st, _ := js.Stream(ctx, "PUSH_JOBS")
	m, err := st.GetMsg(ctx, a1.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "push.jobs.p2t" || m.Header.Get(nats.MsgIdHdr) != "order-1" {
		t.Fatalf("subject %s header %v", m.Subject, m.Header)
	}
	d, jerr := jobs.Decode(jobs.Meta{Subject: m.Subject, Seq: m.Sequence}, m.Data, jobs.Options{})
	if jerr != nil {
		t.Fatal(jerr)
	}
	if got := string(d.Calls[0].Body); got != `{"fromAccount":"shop","topicId":9223372036854775807,"msg":"hi"}` {
		t.Fatalf("body %s", got)
	}
	var env map[string]any
	_ = json.Unmarshal(m.Data, &env)
	if env["request_id"] != "order-1" {
		t.Fatalf("envelope %s", m.Data)
	}
}

// TestPublishInjectsTraceContext: with a propagator set (as a producer that set up
// OpenTelemetry has), Publish puts the caller's trace context into the job's headers;
// without one it adds nothing.
func TestPublishInjectsTraceContext(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, natstest.JetStream(t, "")))
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PUSH_JOBS", Subjects: []string{"push.jobs.>"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	traced := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	headers := func(id string) nats.Header {
		t.Helper()
		job, _ := jobs.NewJob(id, jobs.P2PPayload{FromAccount: "shop", ToAccount: "u42", Msg: "hi"})
		ack, err := jobs.Publish(traced, js, "", jobs.P2P, job)
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		return m.Header
	}

	if h := headers("untraced-1"); h.Get("traceparent") != "" || len(h) != 1 {
		t.Fatalf("no propagator set: headers %v", h)
	}
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
	h := headers("traced-1")
	if got := h.Get("traceparent"); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" || h.Get(nats.MsgIdHdr) != "traced-1" {
		t.Fatalf("headers %v", h)
	}
	if sc := trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(ctx, jobs.HeaderCarrier(h))); sc.TraceID() != tid || sc.SpanID() != sid {
		t.Fatalf("extracted %v", sc)
	}
}
