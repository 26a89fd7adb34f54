package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/tracing"
	"github.com/pushworker/pushworker/worker"
)

// tracedEnv runs a worker whose spans go to an in-memory exporter, and makes jobs.Publish
// inject W3C trace context (as a producer that set up OpenTelemetry does).
func tracedEnv(t *testing.T, up *fakeUpstream, vars map[string]string) (*env, *tracetest.InMemoryExporter, trace.Tracer) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
	e := newEnvWith(t, up, vars, func(o *worker.Options) { o.TracerProvider = tp })
	return e, exp, tp.Tracer("producer")
}

// publishTraced publishes a p2p job with jobs.Publish inside a producer span.
func publishTraced(t *testing.T, e *env, producer trace.Tracer, job jobs.Job) (trace.SpanContext, uint64) {
	t.Helper()
	ctx, sp := producer.Start(context.Background(), "send order", trace.WithSpanKind(trace.SpanKindProducer))
	defer sp.End()
	ack, err := jobs.Publish(ctx, e.js, "", jobs.P2P, job)
	if err != nil {
		t.Fatal(err)
	}
	return sp.SpanContext(), ack.Sequence
}

// spansNamed waits until the exporter holds n ended spans named name and returns them,
// oldest first.
func spansNamed(t *testing.T, exp *tracetest.InMemoryExporter, name string, n int) []tracetest.SpanStub {
	t.Helper()
	var got []tracetest.SpanStub
	waitFor(t, 10*time.Second, fmt.Sprintf("%d spans named %q", n, name), func() bool {
		got = got[:0]
		for _, s := range exp.GetSpans() {
			if s.Name == name {
				got = append(got, s)
			}
		}
		return len(got) >= n
	})
	if len(got) != n {
		t.Fatalf("%d spans named %q, want %d", len(got), name, n)
	}
	return got
}

// childrenOf returns the spans whose parent is span, by name.
func childrenOf(exp *tracetest.InMemoryExporter, span trace.SpanContext) map[string][]tracetest.SpanStub {
	out := map[string][]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		if s.Parent.SpanID() == span.SpanID() && s.Parent.TraceID() == span.TraceID() {
			out[s.Name] = append(out[s.Name], s)
		}
	}
	return out
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// checkAttrs compares the attributes given with the span's.
func checkAttrs(t *testing.T, s tracetest.SpanStub, want map[attribute.Key]any) {
	t.Helper()
	got := attrs(s)
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("span %q has no attribute %s (has %v)", s.Name, k, s.Attributes)
			continue
		}
		if fmt.Sprint(g.AsInterface()) != fmt.Sprint(v) {
			t.Errorf("span %q: %s = %v, want %v", s.Name, k, g.AsInterface(), v)
		}
	}
}

// TestTraceSpanTree: a job published with a producer's trace context gets a consumer span
// that is a child of the producer's span, with the messaging attributes; under it the
// limiter wait, the upstream call and the result publish; and the result carries the trace
// on in its traceparent header.
func TestTraceSpanTree(t *testing.T) {
	e, exp, producer := tracedEnv(t, newFakeUpstream(t), nil)
	job, err := jobs.NewJob("trace-tree-1", jobs.P2PPayload{FromAccount: "shop", ToAccount: "u42", Msg: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	psc, seq := publishTraced(t, e, producer, job)
	res, msg := e.result(10 * time.Second)
	if res.Status != jobs.StatusSent {
		t.Fatalf("status %s", res.Status)
	}

	js := spansNamed(t, exp, "process push.jobs.p2p", 1)[0]
	if js.Parent.SpanID() != psc.SpanID() || js.SpanContext.TraceID() != psc.TraceID() || !js.Parent.IsRemote() {
		t.Fatalf("job span's parent %v (remote %v), want the producer's span %v", js.Parent, js.Parent.IsRemote(), psc)
	}
	if js.SpanKind != trace.SpanKindConsumer || js.Status.Code != codes.Unset || len(js.Links) != 0 {
		t.Fatalf("job span kind %v status %v links %v", js.SpanKind, js.Status, js.Links)
	}
	checkAttrs(t, js, map[attribute.Key]any{
		"messaging.system": "nats", "messaging.destination.name": "push.jobs.p2p",
		"messaging.operation.type": "process", "messaging.operation.name": "process",
		"messaging.message.id": "trace-tree-1", "messaging.consumer.group.name": "pushworker-p2p",
		tracing.JobType: "p2p", tracing.App: "default", tracing.Attempt: 1, tracing.Delivery: 1,
		tracing.JobSeq: seq, tracing.Status: "sent", tracing.Attempts: 1, tracing.Duplicate: false,
	})

	kids := childrenOf(exp, js.SpanContext)
	if len(kids) != 3 || len(kids["limiter wait"]) != 1 || len(kids["POST /api/push/p2p/"]) != 1 || len(kids["publish push.results.p2p"]) != 1 {
		t.Fatalf("children of the job span: %v", kids)
	}
	wait, call, pub := kids["limiter wait"][0], kids["POST /api/push/p2p/"][0], kids["publish push.results.p2p"][0]
	checkAttrs(t, wait, map[attribute.Key]any{tracing.App: "default", tracing.RateClass: "p2p", tracing.Weight: 1})
	if call.SpanKind != trace.SpanKindClient || call.Status.Code != codes.Unset || wait.EndTime.After(call.StartTime) {
		t.Fatalf("call span kind %v status %v; wait ended %v, call started %v", call.SpanKind, call.Status, wait.EndTime, call.StartTime)
	}
	port := e.up.URL[strings.LastIndex(e.up.URL, ":")+1:]
	checkAttrs(t, call, map[attribute.Key]any{
		"http.request.method": "POST", "url.full": e.up.URL + "/api/push/p2p/", "server.address": "127.0.0.1", "server.port": port,
		"http.response.status_code": 200, tracing.Outcome: "sent", tracing.Upstream: "mimc", tracing.Attempt: 1, tracing.UpstreamCode: 200,
	})
	for _, kv := range call.Attributes {
		if v := kv.Value.Emit(); strings.Contains(v, testKey) || strings.Contains(v, testSecret) {
			t.Fatalf("call span attribute %s holds a credential", kv.Key)
		}
	}
	if pub.SpanKind != trace.SpanKindProducer {
		t.Fatalf("publish span kind %v", pub.SpanKind)
	}
	checkAttrs(t, pub, map[attribute.Key]any{"messaging.system": "nats", "messaging.destination.name": "push.results.p2p", "messaging.operation.type": "send"})

	// The result goes on in the same trace, from the publish span.
	rsc := tracing.Extract(msg.Header)
	if rsc.TraceID() != psc.TraceID() || rsc.SpanID() != pub.SpanContext.SpanID() || !rsc.IsSampled() {
		t.Fatalf("result traceparent %q, want trace %s span %s", msg.Header.Get("traceparent"), psc.TraceID(), pub.SpanContext.SpanID())
	}
}

// TestTraceRetryIsLinked: a job whose first call fails (HTTP 500) and whose retry succeeds
// has two delivery spans, both children of the producer's span; the second is linked to the
// first, and the first's upstream call span says why it failed.
func TestTraceRetryIsLinked(t *testing.T) {
	up := newFakeUpstream(t)
	var calls atomic.Int32
	up.setAnswer(func(recorded) (int, string) {
		if calls.Add(1) == 1 {
			return 500, `{"code":500,"message":"boom"}`
		}
		return 200, ""
	})
	e, exp, producer := tracedEnv(t, up, nil)
	job, _ := jobs.NewJob("trace-retry-1", jobs.P2PPayload{FromAccount: "shop", ToAccount: "u42", Msg: "hello"})
	psc, _ := publishTraced(t, e, producer, job)
	res, msg := e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || res.Attempts != 2 {
		t.Fatalf("status %s attempts %d, want sent after 2", res.Status, res.Attempts)
	}

	deliveries := spansNamed(t, exp, "process push.jobs.p2p", 2)
	first, second := deliveries[0], deliveries[1]
	for i, s := range deliveries {
		if s.Parent.SpanID() != psc.SpanID() || s.SpanContext.TraceID() != psc.TraceID() {
			t.Fatalf("delivery %d: parent %v, want the producer's span %v", i+1, s.Parent, psc)
		}
	}
	checkAttrs(t, first, map[attribute.Key]any{tracing.Delivery: 1, tracing.Attempt: 1})
	checkAttrs(t, second, map[attribute.Key]any{tracing.Delivery: 2, tracing.Attempt: 2, tracing.Status: "sent", tracing.Attempts: 2})
	if len(first.Links) != 0 || len(second.Links) != 1 {
		t.Fatalf("links: first %v, second %v", first.Links, second.Links)
	}
	l := second.Links[0]
	if l.SpanContext.SpanID() != first.SpanContext.SpanID() || l.SpanContext.TraceID() != first.SpanContext.TraceID() ||
		len(l.Attributes) != 1 || l.Attributes[0] != tracing.LinkRelation.String(tracing.LinkPreviousAttempt) {
		t.Fatalf("second delivery's link %+v, want the first delivery %v", l, first.SpanContext)
	}
	if _, ok := attrs(first)[tracing.Status]; ok || first.Status.Code != codes.Unset {
		t.Fatalf("the first delivery has no result: attributes %v status %v", first.Attributes, first.Status)
	}
	if len(first.Events) != 1 || first.Events[0].Name != "handed back" {
		t.Fatalf("first delivery's events %v", first.Events)
	}

	failed := childrenOf(exp, first.SpanContext)["POST /api/push/p2p/"]
	if len(failed) != 1 || failed[0].Status.Code != codes.Error {
		t.Fatalf("first delivery's call spans %v", failed)
	}
	checkAttrs(t, failed[0], map[attribute.Key]any{"http.response.status_code": 500, "error.type": "500", tracing.Outcome: "retryable"})
	if kids := childrenOf(exp, first.SpanContext); len(kids["publish push.results.p2p"]) != 0 {
		t.Fatalf("the first delivery published a result: %v", kids)
	}
	pub := childrenOf(exp, second.SpanContext)["publish push.results.p2p"]
	if len(pub) != 1 {
		t.Fatalf("second delivery's publish spans %v", pub)
	}
	if rsc := tracing.Extract(msg.Header); rsc.TraceID() != psc.TraceID() || rsc.SpanID() != pub[0].SpanContext.SpanID() {
		t.Fatalf("result traceparent %q", msg.Header.Get("traceparent"))
	}
}

// TestTraceRejectedJob: a rejected job's span has an error status and its DLQ entry, like
// its result, carries the trace on.
func TestTraceRejectedJob(t *testing.T) {
	e, exp, producer := tracedEnv(t, newFakeUpstream(t), nil)
	job, _ := jobs.NewJob("trace-reject-1", jobs.P2PPayload{FromAccount: "shop", Msg: "no toAccount"})
	psc, _ := publishTraced(t, e, producer, job)
	res, msg := e.result(10 * time.Second)
	if res.Status != jobs.StatusRejected {
		t.Fatalf("status %s", res.Status)
	}
	js := spansNamed(t, exp, "process push.jobs.p2p", 1)[0]
	if js.Status.Code != codes.Error || !strings.Contains(js.Status.Description, "toAccount") {
		t.Fatalf("job span status %+v", js.Status)
	}
	checkAttrs(t, js, map[attribute.Key]any{tracing.Status: "rejected", "error.type": "invalid_job"})
	kids := childrenOf(exp, js.SpanContext)
	if len(kids["publish push.dlq.p2p"]) != 1 || len(kids["publish push.results.p2p"]) != 1 || len(kids["POST /api/push/p2p/"]) != 0 {
		t.Fatalf("children of the job span: %v", kids)
	}
	if rsc := tracing.Extract(msg.Header); rsc.TraceID() != psc.TraceID() {
		t.Fatalf("result traceparent %q", msg.Header.Get("traceparent"))
	}
	st, err := e.js.Stream(context.Background(), "PUSH_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	dm, err := st.GetLastMsgForSubject(context.Background(), "push.dlq.p2p")
	if err != nil {
		t.Fatal(err)
	}
	if dsc := tracing.Extract(dm.Header); dsc.TraceID() != psc.TraceID() || dsc.SpanID() != kids["publish push.dlq.p2p"][0].SpanContext.SpanID() {
		t.Fatalf("DLQ entry traceparent %q", dm.Header.Get("traceparent"))
	}
}

// TestTraceOffAddsNothing: without a tracer provider a job that carries a producer's
// traceparent is processed as always, and its result carries no trace context.
func TestTraceOffAddsNothing(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("p2p", p2pJob("trace-off-1"), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	res, msg := e.result(10 * time.Second)
	if res.Status != jobs.StatusSent {
		t.Fatalf("status %s", res.Status)
	}
	for k := range msg.Header {
		if strings.EqualFold(k, "traceparent") || strings.EqualFold(k, "tracestate") {
			t.Fatalf("result header %s with tracing off: %v", k, msg.Header)
		}
	}
	if got := msg.Header.Get(jobs.HeaderRequestID); got != "trace-off-1" {
		t.Fatalf("headers %v", msg.Header)
	}
}
