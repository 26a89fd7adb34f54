package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

// traceHooks runs every tracing hook of one job's path, as a job that is sent after a
// retry calls them.
func traceHooks(w *Worker, j *job, spec *jobs.Spec, out upstream.Outcome, m *nats.Msg, res *jobs.Result) {
	w.traceRetried(j, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	waited := w.traceWait(j, spec.Class, 1)
	waited()
	called := w.traceCall(j, spec)
	called(out)
	sent := w.tracePublish(j, m)
	sent(nil)
	w.traceResult(j, res)
	w.traceHandBack(j, time.Second)
}

// TestTracingOffCostsNothing: with tracing off (no TracerProvider) the hooks on the job
// path allocate nothing and add no header; with it on they do make spans (so the
// measurement would see them).
func TestTracingOffCostsNothing(t *testing.T) {
	spec, _ := jobs.Lookup(string(jobs.P2P))
	c := config.Config{MIMCURL: "https://mimc.example.com", SubjectPrefix: "push"}
	out := upstream.Outcome{Kind: upstream.Sent, Answer: &jobs.UpstreamAnswer{HTTPStatus: 200, Code: 200}}
	res := &jobs.Result{RequestID: "r1", Type: "p2p", App: "default", Status: jobs.StatusSent, Attempts: 2}
	newJob := func() *job {
		return &job{subject: "push.jobs.p2p", d: &jobs.Decoded{RequestID: "r1", Type: "p2p", App: "default", Spec: spec}, rec: &record{Failures: 1}}
	}

	off := &Worker{c: c, tr: newTracer(nil, c), scrub: config.NewScrubber(nil)}
	if off.tr != nil {
		t.Fatal("a nil TracerProvider made a tracer")
	}
	j, m := newJob(), nats.NewMsg("push.results.p2p")
	if allocs := testing.AllocsPerRun(1000, func() { traceHooks(off, j, spec, out, m, res) }); allocs != 0 {
		t.Fatalf("tracing off: the hooks allocate %.1f times per job", allocs)
	}
	if len(m.Header) != 0 || j.rec.Trace != "" {
		t.Fatalf("tracing off: header %v, record trace %q", m.Header, j.rec.Trace)
	}

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	on := &Worker{c: c, tr: newTracer(tp, c), scrub: config.NewScrubber(nil)}
	j = newJob()
	_, j.span = on.tr.t.Start(context.Background(), "job")
	traceHooks(on, j, spec, out, m, res)
	j.span.End()
	if n := len(exp.GetSpans()); n != 4 || m.Header.Get("traceparent") == "" {
		t.Fatalf("tracing on: %d spans (want job, wait, call, publish), header %v", n, m.Header)
	}
}

// BenchmarkTraceHooks measures the tracing of one job: the hooks with tracing off, and the
// job's span and its hooks with tracing on, the spans going to a batch span processor
// (whose exporter drops them). The benchmark's own job and message are not counted.
func BenchmarkTraceHooks(b *testing.B) {
	spec, _ := jobs.Lookup(string(jobs.P2P))
	c := config.Config{MIMCURL: "https://mimc.example.com", SubjectPrefix: "push"}
	out := upstream.Outcome{Kind: upstream.Sent, Answer: &jobs.UpstreamAnswer{HTTPStatus: 200, Code: 200}}
	res := &jobs.Result{RequestID: "r1", Type: "p2p", App: "default", Status: jobs.StatusSent, Attempts: 1}
	msg := headerMsg{h: nats.Header{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}
	j := &job{msg: msg, subject: "push.jobs.p2p", d: &jobs.Decoded{RequestID: "r1", Type: "p2p", App: "default", Spec: spec}, rec: &record{}}
	m := nats.NewMsg("push.results.p2p")
	b.Run("off", func(b *testing.B) {
		w := &Worker{c: c, tr: newTracer(nil, c), scrub: config.NewScrubber(nil)}
		b.ReportAllocs()
		for b.Loop() {
			traceHooks(w, j, spec, out, m, res)
		}
	})
	b.Run("on", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		w := &Worker{c: c, tr: newTracer(tp, c), scrub: config.NewScrubber(nil)}
		b.ReportAllocs()
		for b.Loop() {
			end := w.traceJob(j)
			traceHooks(w, j, spec, out, m, res)
			end()
		}
	})
}

// headerMsg is a delivered message that has only headers.
type headerMsg struct {
	jetstream.Msg
	h nats.Header
}

func (m headerMsg) Headers() nats.Header { return m.h }
