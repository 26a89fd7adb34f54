package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/jobs"
)

// TestNoCallWhileAnswersCannotBeRecorded: while NATS does not take a finished job's writes
// (here its results stream is gone; in the chaos soak a cluster electing leaders after a
// node's kill -9), every further call would be one more job that a worker's death sends
// twice (the soak saw 93 when a worker was killed 4 s into a failover). So once no such
// write has gone through for a second, no new upstream call goes out until one does; then
// every job is sent once.
func TestNoCallWhileAnswersCannotBeRecorded(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.js.DeleteStream(ctx, "PUSH_RESULTS"); err != nil {
		t.Fatal(err)
	}
	e.publish("p2p", map[string]any{"request_id": "first", "payload": map[string]any{"fromAccount": "a", "toAccount": "b", "msg": "first"}})
	waitFor(t, 10*time.Second, "the first call", func() bool { return upstreamCallsByID(e)["first"] == 1 })
	time.Sleep(1500 * time.Millisecond) // its result write has been under way for over a second
	if _, err := e.js.Stream(ctx, "PUSH_RESULTS"); err == nil {
		t.Fatal("PUSH_RESULTS is back")
	}
	for _, id := range []string{"second", "third"} {
		e.publish("p2p", map[string]any{"request_id": id, "payload": map[string]any{"fromAccount": "a", "toAccount": "b", "msg": id}})
	}
	time.Sleep(2 * time.Second)
	if calls := upstreamCallsByID(e); calls["second"]+calls["third"] != 0 {
		t.Fatalf("calls made while the first job's answer could not be recorded: %v", calls)
	}
	if err := broker.EnsureStreams(ctx, e.js, e.cfg); err != nil {
		t.Fatal(err)
	}
	got := e.collect(3, 20*time.Second)
	for id, rs := range got {
		if rs[0].Status != jobs.StatusSent {
			t.Fatalf("%s: %+v", id, rs[0])
		}
	}
	for id, n := range upstreamCallsByID(e) {
		if n != 1 {
			t.Fatalf("%s reached the upstream %d times", id, n)
		}
	}
}
