package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

// job is one delivery of a job message being processed.
type job struct {
	msg       jetstream.Msg
	subject   string
	data      []byte
	seq       uint64
	ts        time.Time // when the stream stored it
	delivered uint64
	d         *jobs.Decoded
	app       *config.App
	rec       *record // our dedup record, once claimed
	rev       uint64  // its KV revision
	touched   time.Time
	throttled bool       // its class is held by the rate: its NATS writes go through the outbox
	slot      bool       // holds a concurrency slot (see releaseSlot)
	span      trace.Span // this delivery's span; nil when tracing is off
	sentAt    time.Time  // when its last upstream call was made
}

// heartbeat tells JetStream the job is still being worked on, so it is not redelivered to
// another replica while it waits for budget, a slot or the upstream.
func (j *job) heartbeat() {
	_ = j.msg.InProgress()
	j.touched = time.Now()
}

func (j *job) touchIfOld(ackWait time.Duration) {
	if time.Since(j.touched) > ackWait/3 {
		j.heartbeat()
	}
}

// handle processes one delivery. A panic fails this job alone.
func (w *Worker) handle(soft, hard context.Context, msg jetstream.Msg) {
	j := &job{msg: msg, subject: msg.Subject(), data: msg.Data(), touched: time.Now()}
	if meta, err := msg.Metadata(); err == nil {
		j.seq, j.ts, j.delivered = meta.Sequence.Stream, meta.Timestamp, meta.NumDelivered
	}
	// A redelivery of a message this process is still handling (its ack wait ran out while
	// it was slow) is left to the handler that has it: that one acks or hands it back.
	if _, busy := w.active.LoadOrStore(j.seq, struct{}{}); busy {
		_ = msg.InProgress()
		return
	}
	defer w.active.Delete(j.seq)
	defer w.releaseSlot(j) // after finish, also the one of a panic below
	w.m.inflight.Inc()
	defer w.m.inflight.Dec()
	if w.tr != nil {
		defer w.traceJob(j)()
	}
	defer func() {
		if r := recover(); r != nil {
			w.log.Error().Uint64("job_seq", j.seq).Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("job handler panicked")
			if j.d == nil {
				j.d = &jobs.Decoded{Type: "unknown", RequestID: fmt.Sprintf("seq-%d", j.seq), App: config.DefaultApp}
			}
			res := w.newResult(j, jobs.StatusFailed)
			res.Error = jobs.Errorf(jobs.KindInvalidJob, "internal error while processing the job")
			w.finish(hard, j, res)
		}
	}()
	w.process(soft, hard, j)
}

// process is the life of one job, top to bottom.
func (w *Worker) process(soft, hard context.Context, j *job) {
	// 1. Decode and validate.
	h := j.msg.Headers()
	d, jerr := jobs.Decode(jobs.Meta{Subject: j.subject, MsgID: h.Get("Nats-Msg-Id"), RequestID: h.Get(jobs.HeaderRequestID), Seq: j.seq},
		j.data, jobs.Options{SubjectPrefix: w.c.SubjectPrefix, MaxBytes: w.c.MaxJobBytes})
	j.d = d
	if jerr == nil {
		j.app, jerr = w.appFor(d)
	}
	if jerr != nil {
		res := w.newResult(j, jobs.StatusRejected)
		res.Error = jerr
		w.finish(hard, j, res)
		return
	}
	j.throttled = w.o.Limiter.Throttled(d.App, d.Spec.Class)
	// Cancelled or paused by an operator (an in-memory check).
	if w.held(hard, j) {
		return
	}
	// Due later: waits as a scheduled message, not here.
	if !d.NotBefore.IsZero() && time.Until(d.NotBefore) > 0 && !w.untilDue(soft, hard, j) {
		return
	}

	// 2. Dedup: claim the request id, or replay its stored result, or wait for its owner.
	switch st, err := w.claim(hard, j); {
	case err != nil:
		w.log.Warn().Err(err).Str("request_id", d.RequestID).Msg("dedup store unavailable; handing the job back")
		w.handBack(j, 2*time.Second)
		return
	case st == claimDone:
		w.replay(hard, j)
		return
	case st == claimBusy:
		w.m.waits.WithLabelValues(d.Type, "in_flight_copy").Inc()
		w.handBack(j, jitter(time.Second))
		return
	}

	// 3. Expiry.
	if w.expired(hard, j) {
		return
	}

	// 4-7. For every call not yet done: limit → breaker → call → classify.
	for i := range d.Calls {
		if cs := &j.rec.Calls[i]; cs.Done || cs.Rejected {
			continue
		}
		step := w.attempt(soft, hard, j, i)
		switch {
		case step.expired:
			w.expired(hard, j)
			return
		case step.stopping:
			w.release(hard, j)
			w.handBack(j, 0)
			return
		case step.held:
			return
		case step.delay > 0:
			if w.expired(hard, j) {
				return
			}
			w.m.waits.WithLabelValues(d.Type, step.reason).Inc()
			w.release(hard, j)
			w.handBack(j, step.delay)
			return
		}
		if !w.record(hard, j, i, step.out) {
			return // retry scheduled, or finished as failed
		}
	}

	// 8. Publish the result and ack.
	w.finish(hard, j, w.outcomeResult(j))
}

// appFor finds the job's app and checks it has credentials for the job's upstream.
func (w *Worker) appFor(d *jobs.Decoded) (*config.App, *jobs.Error) {
	a, ok := w.c.Apps[d.App]
	if !ok {
		return nil, jobs.Errorf(jobs.KindUnknownApp, fmt.Sprintf("app %q is not configured (PUSH_APPS_FILE)", d.App))
	}
	switch d.Spec.Upstream {
	case jobs.UpstreamMIMC:
		if a.MIMC == nil {
			return nil, jobs.Errorf(jobs.KindUnknownApp, fmt.Sprintf("app %q has no MIMC credentials (PUSH_MIMC_APP_ID, PUSH_MIMC_APP_KEY, PUSH_MIMC_APP_SECRET or PUSH_APPS_FILE)", d.App))
		}
	case jobs.UpstreamNotify:
		var missing []string
		if w.c.NotifyURL == "" {
			missing = append(missing, "PUSH_NOTIFY_URL is empty")
		}
		if !a.Notify.Complete() {
			missing = append(missing, fmt.Sprintf("app %q has no notify credentials (PUSH_NOTIFY_APP_ID and PUSH_NOTIFY_ACCESS_TOKEN, or PUSH_APPS_FILE)", d.App))
		}
		if len(missing) > 0 {
			return nil, jobs.Errorf(jobs.KindUnknownApp, "notify is not configured: "+strings.Join(missing, "; "))
		}
	}
	return &a, nil
}

// expired finishes the job as expired when its not_after has passed.
func (w *Worker) expired(ctx context.Context, j *job) bool {
	if j.d.NotAfter.IsZero() || time.Now().Before(j.d.NotAfter) {
		return false
	}
	res := w.newResult(j, jobs.StatusExpired)
	res.Error = jobs.Errorf(jobs.KindExpired, fmt.Sprintf("not_after %s passed before the job was sent", j.d.NotAfter.Format(time.RFC3339)))
	if j.rec != nil && j.rec.anyDone() {
		// Part of a split notify job went out: report what was accepted.
		res = w.outcomeResult(j)
	} else if j.rec != nil {
		// Earlier attempts failed: say how many, and what the upstream last answered.
		res.Attempts, res.Upstream = j.rec.Failures, j.rec.Last
		if j.rec.Failures > 0 && j.rec.LastErr != nil {
			res.Error.Detail += fmt.Sprintf(" (%d failed attempts, the last: %s)", j.rec.Failures, j.rec.LastErr.Detail)
		}
	}
	w.finish(ctx, j, res)
	return true
}

// ratePenalty is how long a class pauses on this replica after the upstream said its rate
// was exceeded: long enough to let the upstream's window move on, short enough not to
// waste much of the next second's budget.
const ratePenalty = 250 * time.Millisecond

// step is what one attempt at a call came to.
type step struct {
	out      upstream.Outcome
	delay    time.Duration // > 0: hand the job back for this long (breaker, pause)
	reason   string
	stopping bool
	expired  bool // not_after passed while the job waited for budget or a slot
	held     bool // an operator paused or cancelled it meanwhile: done with
}

// attempt makes call i of the job once: waits for rate budget and a concurrency slot, asks
// the breaker, and calls the upstream.
func (w *Worker) attempt(soft, hard context.Context, j *job, i int) step {
	d := j.d
	spec := d.Spec
	gate := w.o.Breakers.For(d.App, spec.Upstream, w.o.Sender.Host(spec.Upstream))
	if wait, blocked := gate.Blocked(); blocked {
		return step{delay: jitter(wait), reason: "breaker"}
	}
	call := d.Calls[i]
	// Refresh the ack wait now: between the limiter's release and the call nothing may
	// touch NATS, or a reconnecting connection would hold released calls back and let them
	// go together.
	j.touchIfOld(w.ackWait)
	start := time.Now()
	waited := w.traceWait(j, spec.Class, call.Weight)
	defer waited()
	g := w.gates.get(d.App, spec.Class, gateSize(j.app.Rate(spec.Class), w.maxAckPending()))
	if !g.enter(soft, d.Type, d.Priority.Lane(), call.Weight, j.heartbeat, w.ackWait/3) {
		return step{stopping: true}
	}
	err := w.o.Limiter.Wait(soft, d.App, spec.Class, call.Weight, j.heartbeat)
	g.leave(call.Weight)
	if err != nil || soft.Err() != nil {
		return step{stopping: true}
	}
	// A pause or cancel that came while the job queued holds it now, before the call.
	if w.held(hard, j) {
		return step{held: true}
	}
	w.m.limiterWait.WithLabelValues(spec.Class).Observe(time.Since(start).Seconds())
	j.throttled = j.throttled || w.o.Limiter.Throttled(d.App, spec.Class)
	if !j.slot { // a later call of a split job keeps the slot of the first
		if !w.acquireSlot(soft, j) {
			return step{stopping: true}
		}
		j.slot = true
	}
	called := false
	defer func() {
		if !called {
			w.releaseSlot(j)
		}
	}()
	if err := w.o.Limiter.Admit(soft, d.App, spec.Class, call.Weight); err != nil {
		return step{stopping: true}
	}
	waited()
	if !d.NotAfter.IsZero() && !time.Now().Before(d.NotAfter) {
		return step{expired: true}
	}
	if w.recordsStuck(time.Now()) {
		return step{delay: jitter(time.Second), reason: "unrecorded"}
	}
	done, wait, err := gate.Allow()
	if err != nil {
		reason := "breaker"
		if errors.Is(err, upstream.ErrPaused) {
			reason = "paused"
		}
		return step{delay: jitter(wait), reason: reason}
	}

	w.m.tokens.WithLabelValues(d.App, spec.Class).Add(float64(call.Weight))
	t0 := time.Now()
	j.sentAt = t0
	traced := w.traceCall(j, spec)
	called = true // the slot is kept until the job's outcome is recorded (releaseSlot)
	out := w.o.Sender.Push(hard, spec, j.app, call.Body)
	traced(out)
	w.m.upstreamDuration.WithLabelValues(spec.Upstream, spec.Path, out.Kind.String()).Observe(time.Since(t0).Seconds())
	done(out)
	if out.RateLimited {
		w.o.Limiter.Penalize(d.App, spec.Class, ratePenalty)
	}
	if out.Kind == upstream.Configuration {
		code := 0
		if out.Answer != nil {
			code = out.Answer.Code
		}
		w.log.Error().Str("app", d.App).Str("upstream", spec.Upstream).Int("code", code).Str("detail", w.scrub.String(out.Err.Detail)).
			Msg("upstream says the app's configuration is wrong; its jobs wait until a probe succeeds")
		return step{delay: jitter(w.o.Breakers.ProbeEvery()), reason: "paused"}
	}
	return step{out: out}
}

// releaseSlot gives back the job's concurrency slot, if it holds one. A job that called the
// upstream keeps its slot until its outcome is recorded (or it is handed back): the answers
// not yet recorded, the ones a worker's death would send again, are then never more than
// PUSH_CONCURRENCY, also while a throttled job's record waits for its outbox batch or NATS
// is slow to take it.
func (w *Worker) releaseSlot(j *job) {
	if j.slot {
		j.slot = false
		<-w.slots
	}
}

func (w *Worker) acquireSlot(soft context.Context, j *job) (ok bool) {
	defer func() {
		if ok && soft.Err() != nil { // stopping: start no new call
			<-w.slots
			ok = false
		}
	}()
	select {
	case w.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTicker(w.ackWait / 3)
	defer t.Stop()
	for {
		select {
		case w.slots <- struct{}{}:
			return true
		case <-t.C:
			msg := j.msg
			go func() { _ = msg.InProgress() }() // never block a released call on NATS
		case <-soft.Done():
			return false
		}
	}
}

// record keeps the outcome of call i. It returns true when the job may go on to its next
// call or its result, false when it was handed back for a retry or finished as failed.
func (w *Worker) record(hard context.Context, j *job, i int, out upstream.Outcome) bool {
	cs := &j.rec.Calls[i]
	if out.Answer != nil { // a network error keeps the answer of an earlier attempt
		j.rec.Last = out.Answer
	}
	switch out.Kind {
	case upstream.Sent, upstream.Partial:
		cs.Done = true
		cs.Partial = out.Kind == upstream.Partial
		cs.PacketID, cs.PacketIDs, cs.FailTopicIDs, cs.TaskID = out.PacketID, out.PacketIDs, out.FailTopicIDs, out.TaskID
		cs.Err = out.Err
		if len(j.d.Calls) > 1 && i < len(j.d.Calls)-1 {
			// Remember each accepted chunk at once, so a retry never resends it.
			if err := w.saveRecord(hard, j); err != nil {
				w.log.Warn().Err(err).Str("request_id", j.d.RequestID).Msg("could not record an accepted chunk")
			}
		}
		return true
	case upstream.Permanent:
		cs.Rejected = true
		cs.Err = out.Err
		cs.FailTopicIDs = out.FailTopicIDs // ucs_multi_topic: every topic failed
		return true
	}
	// Retryable.
	j.rec.Failures++
	j.rec.LastErr = out.Err
	if j.rec.Failures >= w.c.MaxAttempts {
		w.finish(hard, j, w.outcomeResult(j))
		return false
	}
	delay := w.retryDelay(j.rec.Failures)
	j.rec.Holder = "" // handed back with the attempt recorded
	if err := w.saveRecord(hard, j); err != nil {
		w.log.Warn().Err(err).Str("request_id", j.d.RequestID).Msg("could not record the attempt")
	}
	w.m.attempts.WithLabelValues(j.d.Type, "retry").Inc()
	w.log.Warn().Str("request_id", j.d.RequestID).Str("type", j.d.Type).Str("app", j.d.App).Int("attempt", j.rec.Failures).
		Dur("retry_in", delay).Str("error", w.scrub.String(out.Err.Detail)).Msg("upstream call failed; will retry")
	w.handBack(j, delay)
	return false
}

// outcomeResult builds the final result from the recorded call outcomes.
func (w *Worker) outcomeResult(j *job) *jobs.Result {
	rec := j.rec
	done, rejected, pending, partial := 0, 0, 0, false
	var firstErr *jobs.Error
	for _, cs := range rec.Calls {
		switch {
		case cs.Done:
			done++
			partial = partial || cs.Partial
			if cs.Err != nil && firstErr == nil {
				firstErr = cs.Err
			}
		case cs.Rejected:
			rejected++
			if firstErr == nil {
				firstErr = cs.Err
			}
		default:
			pending++
		}
	}
	var status jobs.Status
	var err *jobs.Error
	switch {
	case done == len(rec.Calls) && !partial:
		status = jobs.StatusSent
	case done > 0:
		status = jobs.StatusPartial
		err = firstErr
		if err == nil || pending > 0 {
			err = rec.LastErr
		}
		if err == nil {
			err = jobs.Errorf(jobs.KindUpstreamRejected, "some chunks were not accepted")
		}
		if rejected+pending > 0 && len(rec.Calls) > 1 {
			err = jobs.Errorf(err.Kind, fmt.Sprintf("%d of %d chunks were not accepted: %s", rejected+pending, len(rec.Calls), err.Detail))
		}
	case pending > 0:
		status = jobs.StatusFailed
		err = rec.LastErr
		if err == nil {
			err = jobs.Errorf(jobs.KindUpstreamUnavailable, "upstream unavailable")
		}
		err = jobs.Errorf(err.Kind, fmt.Sprintf("gave up after %d attempts: %s", rec.Failures, err.Detail))
	default:
		status = jobs.StatusRejected
		err = firstErr
	}
	res := w.newResult(j, status)
	res.Error = err
	res.Upstream = rec.Last
	res.Attempts = rec.Failures
	if status != jobs.StatusFailed {
		res.Attempts++
	}
	if j.d.Spec.Upstream == jobs.UpstreamNotify {
		for _, cs := range rec.Calls {
			if cs.TaskID != nil {
				res.TaskIDs = append(res.TaskIDs, *cs.TaskID)
			}
		}
		if len(rec.Calls) == 1 {
			if len(res.TaskIDs) == 1 {
				res.TaskID = &res.TaskIDs[0]
			}
			res.TaskIDs = nil
		}
	} else if len(rec.Calls) == 1 {
		cs := rec.Calls[0]
		res.PacketID, res.PacketIDs, res.FailTopicIDs = cs.PacketID, cs.PacketIDs, cs.FailTopicIDs
	}
	if !j.d.NotBefore.IsZero() && !j.sentAt.IsZero() {
		sent := j.sentAt.UTC()
		res.SentAt = &sent
	}
	return res
}

// newResult starts a result for the job.
func (w *Worker) newResult(j *job, s jobs.Status) *jobs.Result {
	res := &jobs.Result{
		RequestID:  j.d.RequestID,
		Type:       j.d.Type,
		App:        j.d.App,
		Status:     s,
		JobSeq:     j.seq,
		EnqueuedAt: j.ts.UTC(),
	}
	if !j.d.NotBefore.IsZero() {
		due := j.d.NotBefore.UTC()
		res.DueAt = &due
	}
	return res
}

// handBack returns the job to the stream to be delivered again after delay. It does not
// use up an attempt: attempts are counted in the dedup record, not by deliveries.
func (w *Worker) handBack(j *job, delay time.Duration) {
	w.traceHandBack(j, delay)
	if err := j.msg.NakWithDelay(delay); err != nil {
		w.log.Warn().Err(err).Uint64("job_seq", j.seq).Msg("nak failed; the job comes back after the ack wait")
	}
}
