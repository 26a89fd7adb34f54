package worker

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/tracing"
	"github.com/pushworker/pushworker/upstream"
)

// Tracing of the job path (README "Tracing"). Each delivery of a job gets a consumer span,
// a child of the producer's span when the message carries a traceparent; under it a span
// for the rate limiter wait, one per upstream call, and one per result or DLQ publish, whose
// context goes on in that message's headers. A delivery after a failed attempt is linked to
// the delivery that made it: its traceparent is kept in the dedup record with the failure.
//
// A Worker without Options.TracerProvider has no tracer: j.span stays nil, and every hook
// returns at its first check without allocating.

// tracer makes the job path's spans.
type tracer struct {
	t    trace.Tracer
	urls map[string]upstreamURL // by upstream name
}

// upstreamURL is an upstream's base URL as spans show it (without user info).
type upstreamURL struct {
	base string
	host string
	port int
}

// newTracer returns the tracer of tp, or nil when tp is nil (tracing off).
func newTracer(tp trace.TracerProvider, c config.Config) *tracer {
	if tp == nil {
		return nil
	}
	t := &tracer{
		t:    tp.Tracer("github.com/pushworker/pushworker/worker", trace.WithSchemaURL(semconv.SchemaURL)),
		urls: map[string]upstreamURL{},
	}
	for name, base := range map[string]string{jobs.UpstreamMIMC: c.MIMCURL, jobs.UpstreamNotify: c.NotifyURL} {
		u, err := url.Parse(base)
		if err != nil || u.Host == "" {
			continue
		}
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = map[string]int{"http": 80, "https": 443}[u.Scheme]
		}
		t.urls[name] = upstreamURL{base: u.Scheme + "://" + u.Host + u.EscapedPath(), host: u.Hostname(), port: port}
	}
	return t
}

var natsSystem = semconv.MessagingSystemKey.String("nats")

// within returns a context whose span is sp, to start a child of it.
func within(sp trace.Span) context.Context { return trace.ContextWithSpan(context.Background(), sp) }

// traceJob starts the span of one delivery of a job; the function it returns ends it.
func (w *Worker) traceJob(j *job) func() {
	ctx := context.Background()
	if parent := tracing.Extract(j.msg.Headers()); parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	_, j.span = w.tr.t.Start(ctx, "process "+j.subject, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		natsSystem,
		semconv.MessagingDestinationName(j.subject),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingMessageBodySize(len(j.data)),
		tracing.JobSeq.Int64(int64(j.seq)),
		tracing.Delivery.Int64(int64(j.delivered)),
	))
	return func() {
		if d := j.d; d != nil {
			j.span.SetAttributes(
				semconv.MessagingMessageID(d.RequestID),
				semconv.MessagingConsumerGroupName(w.n.Consumer(d.Type)),
				tracing.JobType.String(d.Type),
				tracing.App.String(d.App),
			)
		}
		j.span.End()
	}
}

// traceRetried links the delivery's span to the delivery whose attempt failed before
// (prev, a traceparent from the dedup record).
func (w *Worker) traceRetried(j *job, prev string) {
	if j.span == nil || prev == "" {
		return
	}
	if sc := tracing.ParseTraceparent(prev); sc.IsValid() {
		j.span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{tracing.LinkRelation.String(tracing.LinkPreviousAttempt)}})
	}
}

// traceWait starts the span of a call's wait for rate budget (the gate, the token bucket, a
// concurrency slot, the admission check); the function it returns ends it and may be called
// again.
func (w *Worker) traceWait(j *job, class string, weight int) func() {
	if j.span == nil {
		return func() {}
	}
	_, sp := w.tr.t.Start(within(j.span), "limiter wait", trace.WithAttributes(
		tracing.App.String(j.d.App), tracing.RateClass.String(class), tracing.Weight.Int(weight)))
	return func() { sp.End() }
}

// traceCall starts the span of an upstream call; the function it returns ends it with the
// outcome. A retryable outcome also keeps the delivery's traceparent in the dedup record,
// for the retry's link.
func (w *Worker) traceCall(j *job, spec *jobs.Spec) func(upstream.Outcome) {
	if j.span == nil {
		return func(upstream.Outcome) {}
	}
	attempt := 1
	if j.rec != nil {
		attempt = j.rec.Failures + 1
	}
	j.span.SetAttributes(tracing.Attempt.Int(attempt))
	u := w.tr.urls[spec.Upstream]
	_, sp := w.tr.t.Start(within(j.span), http.MethodPost+" "+spec.Path, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.HTTPRequestMethodPost,
		semconv.URLFull(u.base+spec.Path), // no secrets: MIMC credentials go in the body, notify's in headers
		semconv.ServerAddress(u.host),
		semconv.ServerPort(u.port),
		tracing.Upstream.String(spec.Upstream),
		tracing.Attempt.Int(attempt),
	))
	return func(out upstream.Outcome) {
		sp.SetAttributes(tracing.Outcome.String(out.Kind.String()))
		status := 0
		if a := out.Answer; a != nil {
			status = a.HTTPStatus
			sp.SetAttributes(semconv.HTTPResponseStatusCode(a.HTTPStatus), tracing.UpstreamCode.Int(a.Code))
		}
		if !out.Accepted() {
			errType := "upstream_error"
			switch {
			case status >= 400:
				errType = strconv.Itoa(status)
			case out.Err != nil:
				errType = string(out.Err.Kind)
			}
			detail := ""
			if out.Err != nil {
				detail = w.scrub.String(out.Err.Detail)
			}
			sp.SetAttributes(semconv.ErrorTypeKey.String(errType))
			sp.SetStatus(codes.Error, detail)
		}
		if out.Kind == upstream.Retryable && j.rec != nil {
			j.rec.Trace = tracing.Traceparent(j.span.SpanContext())
		}
		sp.End()
	}
}

// tracePublish starts the span of publishing a result or DLQ entry of the job and puts its
// context into m's headers; the function it returns ends it.
func (w *Worker) tracePublish(j *job, m *nats.Msg) func(error) {
	if j.span == nil {
		return func(error) {}
	}
	name := "publish " + m.Subject
	if j.d != nil && m.Subject != w.n.ResultSubject(j.d.Type) && m.Subject != w.n.DLQSubject(j.d.Type) {
		name = "publish (reply_subject)" // chosen by producers: keep span names few
	}
	_, sp := w.tr.t.Start(within(j.span), name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		natsSystem,
		semconv.MessagingDestinationName(m.Subject),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("publish"),
		semconv.MessagingMessageID(m.Header.Get(nats.MsgIdHdr)),
		semconv.MessagingMessageBodySize(len(m.Data)),
	))
	tracing.InjectSpan(sp.SpanContext(), m.Header)
	return func(err error) {
		if err != nil {
			sp.SetStatus(codes.Error, err.Error())
		}
		sp.End()
	}
}

// traceResult notes the job's result on its span: an error status for failed and rejected jobs.
func (w *Worker) traceResult(j *job, res *jobs.Result) {
	if j.span == nil {
		return
	}
	j.span.SetAttributes(tracing.Status.String(string(res.Status)), tracing.Attempts.Int(res.Attempts), tracing.Duplicate.Bool(res.Duplicate))
	if (res.Status == jobs.StatusFailed || res.Status == jobs.StatusRejected) && res.Error != nil {
		j.span.SetAttributes(semconv.ErrorTypeKey.String(string(res.Error.Kind)))
		j.span.SetStatus(codes.Error, w.scrub.String(res.Error.Detail))
	}
}

// traceHandBack notes on the job's span that it goes back to the stream for delay.
func (w *Worker) traceHandBack(j *job, delay time.Duration) {
	if j.span == nil {
		return
	}
	j.span.AddEvent("handed back", trace.WithAttributes(tracing.DelayMillis.Int64(delay.Milliseconds())))
}
