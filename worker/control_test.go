package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/control"
	"github.com/pushworker/pushworker/jobs"
)

func (e *env) controls() control.Store {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), "PUSH_CONTROL")
	if err != nil {
		e.t.Fatal(err)
	}
	return control.Store{KV: kv}
}

// results collects n results (or fails).
func (e *env) resultsN(n int, timeout time.Duration) map[string]*jobs.Result {
	e.t.Helper()
	out := map[string]*jobs.Result{}
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		r, _ := e.result(time.Until(deadline))
		out[r.RequestID] = r
	}
	return out
}

// A pause of a job type holds its jobs in the stream (the consumer is paused: no
// deliveries, no attempts), on every replica and across a restart; resume sends them.
func TestOperatorPauseAcrossReplicasAndRestart(t *testing.T) {
	e := newEnv(t, nil)
	stopFirst, firstDone := e.stop, e.done
	e.startWorker(noLimit{}) // a second replica
	ctl := e.controls()
	ctx := context.Background()
	if err := ctl.Pause(ctx, control.Pause{Target: "p2p"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the consumer to be paused", func() bool {
		c, err := e.js.Consumer(ctx, "PUSH_JOBS", "pushworker-p2p")
		return err == nil && c.CachedInfo().Paused
	})
	time.Sleep(time.Second) // every replica obeys within a second
	for i := range 10 {
		e.publish("p2p", p2pJob(fmt.Sprintf("paused-%d", i)))
	}
	e.publish("p2t", map[string]any{"request_id": "other-type", "payload": map[string]any{"fromAccount": "shop", "topicId": "12", "msg": "hi"}})
	if r, _ := e.result(5 * time.Second); r.RequestID != "other-type" || r.Status != jobs.StatusSent {
		t.Fatalf("another type must not be paused: %+v", r)
	}
	e.noResult(1500 * time.Millisecond)

	// Both replicas stop; a new one starts: the pause holds.
	e.stopWorker()
	stopFirst()
	<-firstDone
	e.startWorker(noLimit{})
	e.noResult(1500 * time.Millisecond)
	c, err := e.js.Consumer(ctx, "PUSH_JOBS", "pushworker-p2p")
	if err != nil {
		t.Fatal(err)
	}
	if info := c.CachedInfo(); !info.Paused || info.NumPending != 10 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Fatalf("paused jobs must stay in the stream untouched: paused=%v pending=%d ack_pending=%d redelivered=%d",
			info.Paused, info.NumPending, info.NumAckPending, info.NumRedelivered)
	}
	if n := len(e.up.requests()); n != 1 {
		t.Fatalf("upstream got %d requests, want 1 (the p2t job)", n)
	}

	if ok, err := ctl.Resume(ctx, "", "p2p"); err != nil || !ok {
		t.Fatalf("resume: %v %v", ok, err)
	}
	got := e.resultsN(10, 10*time.Second)
	for id, r := range got {
		if r.Status != jobs.StatusSent || !strings.HasPrefix(id, "paused-") {
			t.Fatalf("after resume: %+v", r)
		}
	}
}

// A pause of one app's rate class holds that app's jobs only; it lapses at its end.
func TestOperatorPauseOfOneAppLapses(t *testing.T) {
	e := newEnv(t, nil)
	ctl := e.controls()
	ctx := context.Background()
	until := time.Now().Add(2 * time.Second)
	if err := ctl.Pause(ctx, control.Pause{Target: "p2p", App: "default", Until: until}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	e.publish("p2p_more", map[string]any{"request_id": "app-paused", "payload": map[string]any{"fromAccount": "shop", "toAccounts": []string{"a"}, "msg": "hi"}})
	r, _ := e.result(10 * time.Second)
	if r.Status != jobs.StatusSent || time.Now().Before(until) {
		t.Fatalf("job went before the pause ended (%v): %+v", time.Until(until), r)
	}
	if err := ctl.Pause(ctx, control.Pause{Target: "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("pause of an unknown target: %v", err)
	}
}

// A cancel of a partly drained campaign: what was sent stays sent, every job not yet sent
// ends cancelled (not sent, not in the DLQ), other jobs are unaffected.
func TestOperatorCancelPartlyDrainedCampaign(t *testing.T) {
	e := newEnv(t, nil)
	ctl := e.controls()
	ctx := context.Background()
	for i := range 20 {
		e.publish("p2p", p2pJob(fmt.Sprintf("camp-7/%d", i)))
	}
	e.resultsN(20, 10*time.Second)
	// The rest of the campaign waits behind a pause, then is cancelled.
	if err := ctl.Pause(ctx, control.Pause{Target: "p2p"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	for i := 20; i < 50; i++ {
		e.publish("p2p", p2pJob(fmt.Sprintf("camp-7/%d", i)))
	}
	for i := range 5 {
		e.publish("p2p", p2pJob(fmt.Sprintf("camp-8/%d", i)))
	}
	if err := ctl.Cancel(ctx, control.Cancel{Prefix: "camp-7/"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Resume(ctx, "", "p2p"); err != nil {
		t.Fatal(err)
	}
	got := e.resultsN(35, 15*time.Second)
	sent, cancelled := 0, 0
	for id, r := range got {
		switch {
		case strings.HasPrefix(id, "camp-7/") && r.Status == jobs.StatusCancelled && r.Error != nil && r.Error.Kind == jobs.KindCancelled:
			cancelled++
		case strings.HasPrefix(id, "camp-8/") && r.Status == jobs.StatusSent:
			sent++
		default:
			t.Fatalf("unexpected result %+v", r)
		}
	}
	if sent != 5 || cancelled != 30 {
		t.Fatalf("sent %d cancelled %d, want 5 and 30", sent, cancelled)
	}
	if n := len(e.up.requests()); n != 25 {
		t.Fatalf("upstream got %d requests, want 25", n)
	}
	if d := e.dlq(); len(d) != 0 {
		t.Fatalf("cancelled jobs must not be in the DLQ: %d entries", len(d))
	}
}
