package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/worker"
)

// TestOrphanedJobIsDeliveredAgain: a job still in PUSH_JOBS below its consumer's ack floor
// will never be delivered by JetStream (the chaos soak saw a consumer leader change lose
// delayed redeliveries that way). Here the consumer's floor is moved past a waiting job with
// the server's own reset API, the same state; the worker's sweep must find the job and have
// it delivered, once, with its own stream sequence.
func TestOrphanedJobIsDeliveredAgain(t *testing.T) {
	e := newEnv(t, nil)
	sweep := func(o *worker.Options) { o.OrphanSweep = 200 * time.Millisecond }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := broker.EnsureConsumer(ctx, e.js, broker.NamesFrom(e.cfg), "p2p", broker.ConsumerSettings{AckWait: 5 * time.Second, MaxAckPending: 256}); err != nil {
		t.Fatal(err)
	}
	job := func(id string) map[string]any {
		return map[string]any{"request_id": id, "payload": map[string]any{"fromAccount": "shop", "toAccount": "u42", "msg": id}}
	}
	lost := e.publish("p2p", job("lost"))
	next := e.publish("p2p", job("next"))
	// Reset pushworker-p2p to the second job: its ack floor is now the first job's sequence.
	req, _ := json.Marshal(map[string]uint64{"seq": next})
	if _, err := e.nc.Request("$JS.API.CONSUMER.RESET.PUSH_JOBS.pushworker-p2p", req, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	cons, err := e.js.Consumer(ctx, "PUSH_JOBS", "pushworker-p2p")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The floor is now at least the first job's sequence (the server may also move it past
	// the second): JetStream will not deliver the first job again by itself.
	if info.AckFloor.Stream < lost {
		t.Fatalf("ack floor %d, want at least %d (the job left behind)", info.AckFloor.Stream, lost)
	}

	e.startWorker(noLimit{}, sweep)
	got := e.collect(2, 20*time.Second)
	for _, id := range []string{"lost", "next"} {
		rs := got[id]
		if len(rs) != 1 || rs[0].Status != jobs.StatusSent {
			t.Fatalf("%s: %+v", id, rs)
		}
	}
	if got["lost"][0].JobSeq != lost {
		t.Fatalf("lost job's result has job_seq %d, want %d", got["lost"][0].JobSeq, lost)
	}
	// No second result for either in PUSH_RESULTS. (A reset while "next" was not yet
	// acknowledged delivers it again; the worker then publishes its stored result again under
	// the same Nats-Msg-Id, which the stream drops: a core subscriber may see it twice.)
	time.Sleep(time.Second)
	rs, err := e.js.Stream(ctx, "PUSH_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	ri, err := rs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ri.State.Msgs != 2 {
		t.Fatalf("PUSH_RESULTS holds %d results, want 2", ri.State.Msgs)
	}
	for id, n := range upstreamCallsByID(e) {
		if n != 1 {
			t.Fatalf("%s reached the upstream %d times", id, n)
		}
	}
	waitFor(t, 10*time.Second, "an empty PUSH_JOBS", func() bool {
		s, err := e.js.Stream(ctx, "PUSH_JOBS")
		if err != nil {
			return false
		}
		i, err := s.Info(ctx)
		return err == nil && i.State.Msgs == 0
	})
}
