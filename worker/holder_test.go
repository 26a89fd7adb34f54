package worker_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// TestMessageHeldElsewhereIsNotSentAgain: JetStream can hand a message to a second replica
// while the first still works on it (a consumer leader that fails over loses the delivery;
// the chaos soak saw 30 jobs accepted twice after a NATS node's kill -9, no worker killed).
// The second copy finds the in-flight record of the very same message: while its holder
// may be alive (the record is younger than the ack wait) it must wait for that holder's
// outcome instead of calling the upstream. A record whose holder handed it back, or that
// is older than the ack wait and 30 s (the holder died), is taken over and sent.
func TestMessageHeldElsewhereIsNotSentAgain(t *testing.T) {
	cases := []struct {
		name    string
		holder  string
		age     time.Duration
		wantNow bool // sent without waiting for the other holder
	}{
		{"held by a live replica", "other-replica.1", 0, false},
		{"handed back", "", 0, true},
		{"held by a replica stuck for longer than the ack wait", "other-replica.1", 10 * time.Second, false},
		{"holder gone for longer than 30 s", "other-replica.1", 31 * time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.stopWorker()
			seq := e.publish("p2p", map[string]any{"request_id": "held-1", "payload": map[string]any{"fromAccount": "a", "toAccount": "b", "msg": "held-1"}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := e.js.Stream(ctx, "PUSH_JOBS")
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			kv, err := e.js.KeyValue(ctx, "PUSH_DEDUP")
			if err != nil {
				t.Fatal(err)
			}
			key := base64.RawURLEncoding.EncodeToString([]byte("held-1"))
			holder := ""
			if tc.holder != "" {
				holder = fmt.Sprintf(`"holder":%q,`, tc.holder)
			}
			rec := fmt.Sprintf(`{"state":"inflight","seq":%d,"ts":%d,"failures":0,"calls":[{}],%s"updated":%q}`,
				seq, m.Time.UnixNano(), holder, time.Now().Add(-tc.age).UTC().Format(time.RFC3339Nano))
			if _, err := kv.Put(ctx, key, []byte(rec)); err != nil {
				t.Fatal(err)
			}
			e.startWorker(noLimit{})
			if !tc.wantNow {
				e.noResult(1500 * time.Millisecond)
				if n := upstreamCallsByID(e)["held-1"]; n != 0 {
					t.Fatalf("the upstream got %d calls for a message another replica holds", n)
				}
				// The holder finishes: its outcome is the job's result, without a call.
				done := fmt.Sprintf(`{"state":"done","seq":%d,"ts":%d,"failures":0,"result":{"request_id":"held-1","type":"p2p","app":"default","status":"sent","packet_id":"p-1","attempts":1,"duplicate":false,"job_seq":%d},"updated":%q}`,
					seq, m.Time.UnixNano(), seq, time.Now().UTC().Format(time.RFC3339Nano))
				if _, err := kv.Put(ctx, key, []byte(done)); err != nil {
					t.Fatal(err)
				}
			}
			r, _ := e.result(10 * time.Second)
			if r.RequestID != "held-1" || r.Status != jobs.StatusSent || r.Duplicate || r.JobSeq != seq {
				t.Fatalf("result %+v", r)
			}
			want := 0
			if tc.wantNow {
				want = 1
			}
			if n := upstreamCallsByID(e)["held-1"]; n != want {
				t.Fatalf("the upstream got %d calls, want %d", n, want)
			}
		})
	}
}
