package worker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

// record is a request id's entry in the dedup bucket. While a job is in flight it holds the
// owner message and the outcome of each call so far; once the upstream accepted the job it
// holds the result, which copies of the job get back marked duplicate.
type record struct {
	State    string `json:"state"` // stateInFlight or stateDone
	Seq      uint64 `json:"seq"`   // stream sequence of the owning message
	TS       int64  `json:"ts"`    // its stream timestamp (unix ns)
	Failures int    `json:"failures"`
	// Holder names the handler working on the owning message now ("" once it handed the
	// message back). JetStream may deliver a message to a second replica while the first
	// still holds it (a consumer leader that fails over loses the delivery): the second
	// waits for a holder whose record is younger than the ack wait instead of sending.
	Holder  string               `json:"holder,omitempty"`
	Calls   []callState          `json:"calls,omitempty"`
	Last    *jobs.UpstreamAnswer `json:"last,omitempty"`
	LastErr *jobs.Error          `json:"last_err,omitempty"`
	Result  json.RawMessage      `json:"result,omitempty"` // a jobs.Result, as published
	Trace   string               `json:"trace,omitempty"`  // traceparent of the delivery whose attempt failed last (tracing on)
	Updated time.Time            `json:"updated"`
}

// callState is the outcome of one upstream call of a job.
type callState struct {
	Done         bool        `json:"done,omitempty"`
	Rejected     bool        `json:"rejected,omitempty"`
	Partial      bool        `json:"partial,omitempty"`
	PacketID     string      `json:"packet_id,omitempty"`
	PacketIDs    []string    `json:"packet_ids,omitempty"`
	FailTopicIDs []string    `json:"fail_topic_ids,omitempty"`
	TaskID       *int64      `json:"task_id,omitempty"`
	Err          *jobs.Error `json:"err,omitempty"`
}

const (
	stateInFlight = "inflight"
	stateDone     = "done"
)

// marshal encodes r as json.Marshal would. The two records every job writes, its claim
// and its done record, are appended directly (json.Marshal through reflection was ~8% of
// the worker's CPU); a record with outcomes goes through json.Marshal.
func (r *record) marshal() []byte {
	if r.Failures != 0 || r.Last != nil || r.LastErr != nil || r.Trace != "" || r.anyOutcome() {
		b, _ := json.Marshal(r)
		return b
	}
	b := make([]byte, 0, 112+len(r.Result)+3*len(r.Calls))
	b = append(b, `{"state":"`...)
	b = append(b, r.State...)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, r.TS, 10)
	b = append(b, `,"failures":0`...)
	if r.Holder != "" { // printable ASCII without quotes (newHolder)
		b = append(b, `,"holder":"`...)
		b = append(b, r.Holder...)
		b = append(b, '"')
	}
	if len(r.Calls) > 0 {
		b = append(b, `,"calls":[`...)
		for i := range r.Calls {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, "{}"...)
		}
		b = append(b, ']')
	}
	if len(r.Result) > 0 {
		b = append(b, `,"result":`...)
		b = append(b, r.Result...) // compact JSON from json.Marshal
	}
	b = append(b, `,"updated":"`...)
	b = r.Updated.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

func (r *record) anyOutcome() bool {
	for _, c := range r.Calls {
		if c.Done || c.Rejected || c.Partial || c.PacketID != "" || c.PacketIDs != nil || c.FailTopicIDs != nil || c.TaskID != nil || c.Err != nil {
			return true
		}
	}
	return false
}

func (r *record) anyDone() bool {
	for _, c := range r.Calls {
		if c.Done {
			return true
		}
	}
	return false
}

func (r *record) owns(j *job) bool { return r.Seq == j.seq && r.TS == j.ts.UnixNano() }

type claimState int

const (
	claimOwn  claimState = iota // the job may be sent (j.rec is ours)
	claimDone                   // the request id has a stored result (j.rec holds it)
	claimBusy                   // another copy is in flight
)

// dedupKey maps a request id (any printable ASCII) to a valid KV key.
func dedupKey(requestID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(requestID))
}

// staleAfter is how old an in-flight record of another message must be before we check
// whether that message still exists.
const staleAfter = time.Minute

// claim takes the request id for this job, or finds who has it.
func (w *Worker) claim(ctx context.Context, j *job) (claimState, error) {
	key := dedupKey(j.d.RequestID)
	fresh := func() *record {
		return &record{State: stateInFlight, Seq: j.seq, TS: j.ts.UnixNano(), Holder: w.newHolder(), Calls: make([]callState, len(j.d.Calls)), Updated: time.Now()}
	}
	create := func() (bool, error) {
		rec := fresh()
		rev, err := w.create(ctx, j, key, rec.marshal())
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil // someone has it: look
		}
		if err != nil {
			return false, err
		}
		j.rec, j.rev = rec, rev
		return true, nil
	}
	// On a first delivery the request id is almost always new: claim it in one round trip.
	if j.delivered <= 1 {
		if ok, err := create(); ok || err != nil {
			return claimOwn, err
		}
	}
	for range 5 {
		e, err := w.dedup.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			ok, err := create()
			if err != nil {
				return 0, err
			}
			if ok {
				return claimOwn, nil
			}
			continue // lost a race with a copy: look again
		}
		if err != nil {
			return 0, err
		}
		var rec record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			// A corrupt entry protects nothing: take it over.
			return w.takeOver(ctx, j, key, e.Revision(), fresh())
		}
		switch {
		case rec.State == stateDone:
			j.rec = &rec
			return claimDone, nil
		case rec.owns(j):
			if rec.Holder != "" && time.Since(rec.Updated) < w.holdFor() {
				// Another handler of this very message may still be at work (it would
				// have been redelivered only after an ack wait without a heartbeat, or
				// by a consumer leader that lost the delivery): wait for its outcome.
				return claimBusy, nil
			}
			if len(rec.Calls) != len(j.d.Calls) {
				rec.Calls = make([]callState, len(j.d.Calls))
			}
			rec.Holder, rec.Updated = w.newHolder(), time.Now()
			rev, err := w.dedup.Update(ctx, key, rec.marshal(), e.Revision())
			if err != nil {
				return claimBusy, nil // written meanwhile: look again on the next delivery
			}
			j.rec, j.rev = &rec, rev
			w.traceRetried(j, rec.Trace)
			return claimOwn, nil
		case time.Since(rec.Updated) > staleAfter && !w.messageExists(ctx, rec.Seq):
			// The owner is gone from the stream without finishing (purged or deleted).
			return w.takeOver(ctx, j, key, e.Revision(), fresh())
		default:
			return claimBusy, nil
		}
	}
	return claimBusy, nil
}

// create writes value under key for job j if the key has no live entry. The common case, a
// key never seen, is one publish (w.send) that expects no earlier message on the key's
// subject (kv.Create makes a synchronous request with a context of its own per call, ~10%
// of the worker's CPU); a key with an entry, live or deleted, is left to kv.Create, which writes
// over a deleted one and reports a live one as jetstream.ErrKeyExists.
func (w *Worker) create(ctx context.Context, j *job, key string, value []byte) (uint64, error) {
	m := nats.NewMsg(w.dedupSubject(key))
	m.Data = value
	acks, err := w.send(ctx, j, outMsg{m: m, opts: []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(0)}})
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return w.dedup.Create(ctx, key, value)
		}
		return 0, err
	}
	return acks[0].Sequence, nil
}

func (w *Worker) dedupSubject(key string) string { return "$KV." + w.n.DedupBucket() + "." + key }

func (w *Worker) takeOver(ctx context.Context, j *job, key string, rev uint64, rec *record) (claimState, error) {
	nrev, err := w.dedup.Update(ctx, key, rec.marshal(), rev)
	if err != nil {
		return claimBusy, nil
	}
	j.rec, j.rev = rec, nrev
	return claimOwn, nil
}

func (w *Worker) messageExists(ctx context.Context, seq uint64) bool {
	_, err := w.stream.GetMsg(ctx, seq)
	return !errors.Is(err, jetstream.ErrMsgNotFound)
}

// saveRecord writes our in-flight record.
func (w *Worker) saveRecord(ctx context.Context, j *job) error {
	j.rec.Updated = time.Now()
	rev, err := w.dedup.Update(ctx, dedupKey(j.d.RequestID), j.rec.marshal(), j.rev)
	if err != nil {
		return err
	}
	j.rev = rev
	return nil
}

// minHold is the least time a holder of a message is presumed alive after it last wrote
// its record: longer than a NATS cluster takes to elect new stream leaders after losing a
// node (the chaos soak saw record writes fail for 6-13 s), during which a holder that has
// the upstream's answer cannot record it.
const minHold = 30 * time.Second

// holdFor is how long a holder is presumed alive: the ack wait, at least minHold. A
// message whose holder died is taken over that long after its claim.
func (w *Worker) holdFor() time.Duration { return max(w.ackWait, minHold) }

// newHolder returns a name for one handling of a message, unique across replicas.
func (w *Worker) newHolder() string {
	return w.holderPrefix + "." + strconv.FormatUint(w.holders.Add(1), 10)
}

// release marks our in-flight record as handed back, so that the next delivery of the
// message takes it over at once; without it, the next delivery waits up to an ack wait.
func (w *Worker) release(ctx context.Context, j *job) {
	if j.rec == nil || j.rec.Holder == "" || j.rec.State != stateInFlight {
		return
	}
	j.rec.Holder = ""
	if err := w.saveRecord(ctx, j); err != nil {
		w.log.Debug().Err(err).Str("request_id", j.d.RequestID).Msg("could not mark the job handed back; its next delivery waits up to an ack wait")
	}
}

// rememberMsg is the KV put that stores the accepted result of the job under its request
// id, as a message to publish (so that it can go out together with the result).
func (w *Worker) rememberMsg(j *job, result []byte) *nats.Msg {
	rec := &record{State: stateDone, Seq: j.seq, TS: j.ts.UnixNano(), Result: result, Updated: time.Now()}
	m := nats.NewMsg(w.dedupSubject(dedupKey(j.d.RequestID)))
	m.Data = w.scrub.Bytes(rec.marshal())
	return m
}

// forget drops our record: rejected, failed and expired jobs leave none.
func (w *Worker) forget(ctx context.Context, j *job) error {
	err := w.dedup.Delete(ctx, dedupKey(j.d.RequestID), jetstream.LastRevision(j.rev))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}
