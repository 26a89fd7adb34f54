package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

func (e *env) scheduledCount() uint64 {
	e.t.Helper()
	st, err := e.js.Stream(context.Background(), "PUSH_JOBS")
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("push.jobs._sched.>"))
	if err != nil {
		e.t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// A scheduled job waits in the stream as a scheduled message, survives a restart of the
// worker, and is sent at its time (within a second); its result says when it was due and
// when it went.
func TestScheduledJobSentAtItsTimeAfterRestart(t *testing.T) {
	e := newEnv(t, nil)
	due := time.Now().Add(3 * time.Second)
	job, _ := jobs.NewJob("sched-1", jobs.P2PPayload{FromAccount: "shop", ToAccount: "u1", Msg: "at nine"})
	job.NotBefore = &due
	if _, err := jobs.Publish(context.Background(), e.js, "", jobs.P2P, job); err != nil {
		t.Fatal(err)
	}
	// Also a producer that publishes a job due later straight on the job subject: the
	// worker stores it as a scheduled message.
	due2 := due.Add(500 * time.Millisecond)
	e.publish("p2p", map[string]any{"request_id": "sched-2", "not_before": due2.Format(time.RFC3339Nano),
		"payload": map[string]any{"fromAccount": "shop", "toAccount": "u2", "msg": "hi"}}, "Nats-Msg-Id", "sched-2")
	waitFor(t, 2*time.Second, "both jobs to wait as scheduled messages", func() bool { return e.scheduledCount() == 2 })
	e.stopWorker()
	time.Sleep(500 * time.Millisecond)
	e.startWorker(noLimit{})

	got := e.resultsN(2, 10*time.Second)
	for id, want := range map[string]time.Time{"sched-1": due, "sched-2": due2} {
		r := got[id]
		if r == nil || r.Status != jobs.StatusSent || r.DueAt == nil || r.SentAt == nil {
			t.Fatalf("%s: %+v", id, r)
		}
		if !r.DueAt.Equal(want.UTC()) {
			t.Errorf("%s: due_at %v, want %v", id, r.DueAt, want)
		}
		if late := r.SentAt.Sub(want); late < 0 || late > time.Second {
			t.Errorf("%s: sent %v after its time (want 0 to 1s)", id, late)
		}
	}
	if n := e.scheduledCount(); n != 0 {
		t.Errorf("%d scheduled messages left", n)
	}
	if n := len(e.up.requests()); n != 2 {
		t.Errorf("upstream got %d requests, want 2", n)
	}
}

// 10,000 jobs scheduled for later hold nothing: an unscheduled job of the same type goes
// at once.
func TestScheduledJobsDoNotSlowOthers(t *testing.T) {
	e := newEnv(t, nil)
	ajs, err := jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	for i := range 10000 {
		job, _ := jobs.NewJob(fmt.Sprintf("later-%d", i), jobs.P2PPayload{FromAccount: "shop", ToAccount: "u", Msg: "m"})
		job.NotBefore = &later
		data, _ := json.Marshal(job)
		m := nats.NewMsg(jobs.ScheduleSubject("push", "p2p", jobs.ScheduleID(job.RequestID)))
		m.Data = data
		m.Header.Set("Nats-Schedule", "@at "+jobs.ScheduleAt(later).Format(time.RFC3339))
		m.Header.Set("Nats-Schedule-Target", "push.jobs.p2p")
		if i%100 == 0 { // some straight on the job subject: the worker schedules those
			m = nats.NewMsg("push.jobs.p2p")
			m.Data = data
		}
		if _, err := ajs.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
		if i%2000 == 1999 {
			select {
			case <-ajs.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("publishing took too long")
			}
		}
	}
	waitFor(t, 10*time.Second, "every job to wait as a scheduled message", func() bool { return e.scheduledCount() == 10000 })
	start := time.Now()
	e.publish("p2p", p2pJob("now-1"))
	r, _ := e.result(5 * time.Second)
	if r.RequestID != "now-1" || r.Status != jobs.StatusSent {
		t.Fatalf("%+v", r)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("the unscheduled job took %v", took)
	}
	waitFor(t, 2*time.Second, "the consumer to hold nothing (the last job's ack)", func() bool {
		c, err := e.js.Consumer(context.Background(), "PUSH_JOBS", "pushworker-p2p")
		return err == nil && c.CachedInfo().NumAckPending == 0 && c.CachedInfo().NumPending == 0
	})
	if n := e.scheduledCount(); n != 10000 {
		t.Errorf("%d scheduled messages, want 10000", n)
	}
}
