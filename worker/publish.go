package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

// finish ends a job: it remembers an accepted result, writes rejected and failed jobs to
// the DLQ, publishes the result, forgets the request id of a job that was not accepted,
// and acks (or terms) the message. If NATS cannot take the result, the job is handed
// back and finished on its next delivery; nothing is dropped.
func (w *Worker) finish(ctx context.Context, j *job, res *jobs.Result) {
	res.CompletedAt = time.Now().UTC()
	w.traceResult(j, res)
	accepted := res.Status == jobs.StatusSent || res.Status == jobs.StatusPartial
	switch {
	case accepted && j.rec != nil:
		// The upstream took the job: only this process knows it. Handing the job back
		// before the record is written would send it again, so keep trying here. The
		// record and the result go out together; both are idempotent to repeat.
		if !w.persist(ctx, j, "record and publish the result", func() error { return w.rememberAndPublish(ctx, j, res) }) {
			return
		}
	case res.Status == jobs.StatusRejected || res.Status == jobs.StatusFailed:
		if !w.persist(ctx, j, "write the DLQ entry", func() error { return w.publishDLQ(ctx, j, res) }) {
			return
		}
		fallthrough
	default:
		if !w.persist(ctx, j, "publish the result", func() error { return w.publishResult(ctx, j, res) }) {
			return
		}
	}
	if accepted && !w.accepted(ctx, j, res) {
		return
	}
	if !accepted && j.rec != nil {
		if err := w.forget(ctx, j); err != nil {
			w.log.Warn().Err(err).Str("request_id", res.RequestID).Msg("could not drop the request id's record")
		}
	}
	w.settle(j, res.Status == jobs.StatusRejected || res.Status == jobs.StatusFailed)
	w.observe(res)
}

// accepted runs the OnAccepted hook; on failure the job is handed back.
func (w *Worker) accepted(ctx context.Context, j *job, res *jobs.Result) bool {
	if w.o.OnAccepted == nil {
		return true
	}
	if err := w.o.OnAccepted(ctx, j.d, res); err != nil {
		w.log.Warn().Err(err).Str("request_id", res.RequestID).Msg("could not track the accepted job; retrying")
		w.handBack(j, time.Second)
		return false
	}
	return true
}

// writesStuckAfter is how long finishing writes may be under way with none going through before
// the worker starts no new upstream call (recordsStuck): healthy ones take milliseconds.
const writesStuckAfter = time.Second

// recordsStuck reports whether NATS has taken none of the writes that finish jobs for
// writesStuckAfter while some are under way (a cluster electing leaders, a server gone). An
// answer got meanwhile could not be recorded either, and every answer not recorded is sent
// again if this worker dies.
func (w *Worker) recordsStuck(now time.Time) bool {
	if w.persistPending.Load() == 0 {
		return false
	}
	last := max(w.persistDoneAt.Load(), w.persistFirstAt.Load())
	return now.UnixNano()-last > int64(writesStuckAfter)
}

// persistFor bounds how long a finishing job retries a NATS write in place (a cluster
// electing a leader, a server restarting) before it hands the job back.
const persistFor = 2 * time.Minute

// persist runs a NATS write until it succeeds, sending heartbeats so the job is not
// redelivered meanwhile. If it cannot succeed within persistFor, or the worker is forced
// to stop, the job is handed back and persist returns false.
func (w *Worker) persist(ctx context.Context, j *job, what string, write func() error) bool {
	delay := 50 * time.Millisecond
	deadline := time.Now().Add(persistFor)
	if w.persistPending.Add(1) == 1 {
		w.persistFirstAt.Store(time.Now().UnixNano())
	}
	defer w.persistPending.Add(-1)
	for {
		err := write()
		if err == nil {
			w.persistDoneAt.Store(time.Now().UnixNano())
			return true
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			w.log.Warn().Err(err).Str("request_id", j.d.RequestID).Msg("could not " + what + "; handing the job back")
			w.handBack(j, time.Second)
			return false
		}
		w.log.Debug().Err(err).Str("request_id", j.d.RequestID).Msg("could not " + what + "; retrying")
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		delay = min(delay*2, 2*time.Second)
		j.touchIfOld(w.ackWait)
	}
}

// replay answers a job whose request id already has a stored result.
func (w *Worker) replay(ctx context.Context, j *job) {
	var res jobs.Result
	if err := json.Unmarshal(j.rec.Result, &res); err != nil {
		// An unreadable stored result protects nothing: forget it and start afresh.
		w.log.Warn().Err(err).Str("request_id", j.d.RequestID).Msg("stored result unreadable; processing the job afresh")
		_ = w.dedup.Delete(ctx, dedupKey(j.d.RequestID))
		w.handBack(j, 0)
		return
	}
	if !j.rec.owns(j) {
		// A copy: the stored result again, marked duplicate, for the copy.
		res.Duplicate = true
		res.JobSeq = j.seq
		res.EnqueuedAt = j.ts.UTC()
		w.m.dedupHits.WithLabelValues(j.d.Type).Inc()
	}
	w.traceResult(j, &res)
	if err := w.publishResult(ctx, j, &res); err != nil {
		w.log.Warn().Err(err).Str("request_id", res.RequestID).Msg("could not publish the result; retrying")
		w.handBack(j, time.Second)
		return
	}
	if !res.Duplicate && !w.accepted(ctx, j, &res) {
		return
	}
	w.settle(j, false)
	w.observe(&res)
}

// msgID makes publishing the same job's result or DLQ entry twice a no-op within the
// streams' duplicate window (a redelivery after a lost ack).
func msgID(kind string, j *job) string {
	return kind + "-" + strconv.FormatUint(j.seq, 10) + "-" + strconv.FormatInt(j.ts.UnixNano(), 36)
}

func (w *Worker) publishResult(ctx context.Context, j *job, res *jobs.Result) error {
	m, err := w.resultMsg(j, res)
	if err != nil {
		return err
	}
	sent := w.tracePublish(j, m)
	_, err = w.js.PublishMsg(ctx, m)
	sent(err)
	return err
}

func (w *Worker) resultMsg(j *job, res *jobs.Result) (*nats.Msg, error) {
	data := res.AppendJSON(make([]byte, 0, 384))
	subject := j.d.ReplySubject
	if subject == "" {
		subject = w.n.ResultSubject(res.Type)
	}
	m := nats.NewMsg(subject)
	m.Data = w.scrub.Bytes(data)
	m.Header.Set(jobs.HeaderRequestID, res.RequestID)
	m.Header.Set(jobs.HeaderStatus, string(res.Status))
	m.Header.Set(nats.MsgIdHdr, msgID("r", j))
	return m, nil
}

// rememberAndPublish stores an accepted result under its request id and publishes it, in
// one round trip: both publishes go out at once and both acks are awaited. The record
// holds the very bytes published.
func (w *Worker) rememberAndPublish(ctx context.Context, j *job, res *jobs.Result) (err error) {
	out, err := w.resultMsg(j, res)
	if err != nil {
		return err
	}
	sent := w.tracePublish(j, out)
	defer func() { sent(err) }()
	rec := w.rememberMsg(j, out.Data)
	_, err = w.send(ctx, j, outMsg{m: rec}, outMsg{m: out})
	return err
}

// ackTimeout bounds the wait for a JetStream acknowledgement of a publish.
const ackTimeout = 10 * time.Second

// awaitAck waits for the acknowledgement of an async publish.
func awaitAck(ctx context.Context, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	default:
	}
	t := time.NewTimer(ackTimeout)
	defer t.Stop()
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("no acknowledgement from JetStream")
	}
}

func (w *Worker) publishDLQ(ctx context.Context, j *job, res *jobs.Result) error {
	e := jobs.DLQEntry{Subject: j.subject, Data: j.data, Result: *res}
	if json.Valid(j.data) {
		var buf bytes.Buffer
		if json.Compact(&buf, j.data) == nil {
			e.Job = buf.Bytes()
		}
	}
	if res.Error != nil && res.Error.Kind == jobs.KindCredentialsInJob {
		e.Data, e.Job = redactCredentials(e.Data), redactCredentials(e.Job)
	}
	// data is base64 in the entry: scrub the raw bytes, where a secret can still be seen.
	e.Data, e.Job = w.scrub.Bytes(e.Data), w.scrub.Bytes(e.Job)
	data, err := w.fitDLQ(&e)
	if err != nil {
		return err
	}
	m := nats.NewMsg(w.n.DLQSubject(res.Type))
	m.Data = data
	m.Header.Set(jobs.HeaderRequestID, res.RequestID)
	m.Header.Set(jobs.HeaderStatus, string(res.Status))
	m.Header.Set(nats.MsgIdHdr, msgID("d", j))
	sent := w.tracePublish(j, m)
	_, err = w.js.PublishMsg(ctx, m)
	sent(err)
	if err != nil {
		return err
	}
	w.m.dlqWrites.WithLabelValues(res.Type).Inc()
	return nil
}

// dlqHeadroom is what a DLQ message's subject and headers may take besides its data.
const dlqHeadroom = 1024

// fitDLQ marshals a DLQ entry small enough for one NATS message. The job bytes are in it
// twice (data, base64, and job) and a job of half the server's max_payload would not fit:
// the write would fail for ever and the job would never get its result. So job goes first,
// then data, and omitted says so; the result, with the reason of the rejection, stays.
func (w *Worker) fitDLQ(e *jobs.DLQEntry) ([]byte, error) {
	limit := int(w.js.Conn().MaxPayload()) - dlqHeadroom
	data, err := json.Marshal(e)
	if err != nil || limit <= 0 || len(data) <= limit {
		return w.scrub.Bytes(data), err
	}
	size := len(e.Data)
	if e.Job != nil {
		e.Job = nil
		e.Omitted = fmt.Sprintf("job: the entry would exceed the NATS max_payload of %d bytes; data holds the job's %d bytes", limit+dlqHeadroom, size)
		if data, err = json.Marshal(e); err != nil || len(data) <= limit {
			return w.scrub.Bytes(data), err
		}
	}
	e.Data = nil
	e.Omitted = fmt.Sprintf("job and data: the job's %d bytes do not fit in one DLQ message (NATS max_payload %d bytes)", size, limit+dlqHeadroom)
	data, err = json.Marshal(e)
	return w.scrub.Bytes(data), err
}

// observe logs and counts a job's outcome.
func (w *Worker) observe(res *jobs.Result) {
	w.m.jobs.WithLabelValues(metricType(res.Type), string(res.Status)).Inc()
	ev := w.log.Debug()
	if res.Status == jobs.StatusFailed || res.Status == jobs.StatusRejected {
		ev = w.log.Warn()
	}
	ev = ev.Str("request_id", res.RequestID).Str("type", res.Type).Str("app", res.App).
		Str("status", string(res.Status)).Int("attempt", res.Attempts).Uint64("job_seq", res.JobSeq).Bool("duplicate", res.Duplicate)
	if res.Error != nil {
		ev = ev.Str("error_kind", string(res.Error.Kind)).Str("error", w.scrub.String(res.Error.Detail))
	}
	ev.Msg("job finished")
}

// metricType keeps unknown types from blowing up label cardinality.
func metricType(t string) string {
	if _, ok := jobs.Lookup(t); ok {
		return t
	}
	return "unknown"
}
