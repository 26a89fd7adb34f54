package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushworker/pushworker/jobs"
)

// waitHere is how long before its not_before a job is kept in process rather than
// scheduled again: the server's schedules have whole seconds, and a job that the scheduler
// fired a little early by this replica's clock must not go round again.
const waitHere = 2 * time.Second

// untilDue deals with a job whose not_before is still ahead: one due within waitHere, or
// that the server's scheduler already fired (its clock and ours differ), waits here; any
// other is stored as a scheduled message (README "Campaigns") and acked, so that it costs
// nothing while it waits. It returns true when the job is due and goes on.
func (w *Worker) untilDue(soft, hard context.Context, j *job) bool {
	wait := time.Until(j.d.NotBefore)
	if wait > waitHere && j.msg.Headers().Get("Nats-Scheduler") == "" {
		m := nats.NewMsg(j.subject)
		m.Data, m.Header = j.data, j.msg.Headers()
		if _, err := jobs.Schedule(hard, w.js, w.c.SubjectPrefix, j.d.Type, j.d.RequestID, "", m, j.d.NotBefore); err != nil {
			w.log.Warn().Err(err).Str("request_id", j.d.RequestID).Msg("could not schedule the job; handing it back")
			w.handBack(j, min(wait, 5*time.Second))
			return false
		}
		w.m.waits.WithLabelValues(j.d.Type, "scheduled").Inc()
		w.settle(j, false)
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	beat := time.NewTicker(w.ackWait / 3)
	defer beat.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-beat.C:
			j.heartbeat()
		case <-soft.Done():
			w.handBack(j, 0)
			return false
		}
	}
}
