package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

// sweepEvery is how often the jobs stream is checked for subjects no consumer takes.
const sweepEvery = time.Second

// sweepUnknown rejects jobs published on subjects of unknown types. No class consumer
// filters them, so they would sit in the work-queue stream forever: the sweeper finds
// them by subject, publishes a rejected result and DLQ entry for each, and deletes them.
// Several replicas may sweep at once: the results' and DLQ entries' Nats-Msg-Id make the
// second publish a no-op.
func (w *Worker) sweepUnknown(soft, hard context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-soft.Done():
			return
		case <-t.C:
		}
		info, err := w.stream.Info(soft, jetstream.WithSubjectFilter(w.n.JobsWildcard()))
		if err != nil {
			continue
		}
		for subj := range info.State.Subjects {
			tail := subj[len(w.n.JobsWildcard())-1:]
			if jobs.IsScheduleTail(tail) { // a job due later, not an unknown type
				continue
			}
			if t, _ := jobs.SplitLane(tail); jobs.IsType(t) {
				continue
			}
			w.sweepSubject(soft, hard, subj)
		}
	}
}

func (w *Worker) sweepSubject(soft, hard context.Context, subj string) {
	var seq uint64 = 1
	for range 1000 {
		if soft.Err() != nil {
			return
		}
		raw, err := w.stream.GetMsg(soft, seq, jetstream.WithGetMsgSubject(subj))
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgNotFound) {
				w.log.Warn().Err(err).Str("subject", subj).Msg("sweeping unknown job type")
			}
			return
		}
		j := &job{subject: raw.Subject, data: raw.Data, seq: raw.Sequence, ts: raw.Time, touched: time.Now()}
		d, jerr := jobs.Decode(jobs.Meta{Subject: raw.Subject, MsgID: raw.Header.Get("Nats-Msg-Id"), RequestID: raw.Header.Get(jobs.HeaderRequestID), Seq: raw.Sequence},
			raw.Data, jobs.Options{SubjectPrefix: w.c.SubjectPrefix, MaxBytes: w.c.MaxJobBytes})
		j.d = d
		if jerr == nil { // cannot happen for an unknown type; keep the rule in one place anyway
			jerr = jobs.Errorf(jobs.KindUnknownType, "unknown job type")
		}
		res := w.newResult(j, jobs.StatusRejected)
		res.Error = jerr
		res.CompletedAt = time.Now().UTC()
		if err := w.publishDLQ(hard, j, res); err != nil {
			return
		}
		if err := w.publishResult(hard, j, res); err != nil {
			return
		}
		if err := w.stream.DeleteMsg(hard, raw.Sequence); err == nil {
			w.observe(res)
		}
		seq = raw.Sequence + 1
	}
}
