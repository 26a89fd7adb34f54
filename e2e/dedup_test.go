package e2e

import (
	"testing"
	"time"
)

// TestDuplicatesAndReplies: at most once to the upstream per request id, stored results
// replayed with duplicate true where the new copy asks (§6); reply_subject (§3); not_after.
func TestDuplicatesAndReplies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	w := e.start()
	res := e.results()

	t.Run("same request id twice", func(t *testing.T) {
		seq1 := e.publish("push.jobs.p2p", p2pJob("dup-1"))
		r1 := res.waitResult("dup-1", 15*time.Second)
		if r1.Status != "sent" || r1.Duplicate || r1.JobSeq != seq1 || r1.PacketID == "" {
			t.Fatalf("first result %s", r1)
		}
		seq2 := e.publish("push.jobs.p2p", p2pJob("dup-1"))
		r2 := res.waitResults("dup-1", 2, 15*time.Second)[1]
		checkResultShape(t, r2)
		if r2.Status != "sent" || !r2.Duplicate || r2.PacketID != r1.PacketID || r2.JobSeq != seq2 || r2.Subject != "push.results.p2p" {
			t.Fatalf("second result %s, want a duplicate of %s with job_seq %d", r2, r1, seq2)
		}
		// A copy asking for another subject gets the stored result there.
		seq3 := e.publish("push.jobs.p2p", []byte(`{"request_id":"dup-1","reply_subject":"push.results.orders","payload":{"fromAccount":"e2e","toAccount":"u1","msg":"dup-1"}}`))
		r3 := res.waitResults("dup-1", 3, 15*time.Second)[2]
		if r3.Subject != "push.results.orders" || !r3.Duplicate || r3.PacketID != r1.PacketID || r3.JobSeq != seq3 {
			t.Fatalf("third result %s, want a duplicate on push.results.orders with job_seq %d", r3, seq3)
		}
		if n := callsByID(e.sb, p2pPath)["dup-1"]; n != 1 {
			t.Fatalf("the upstream saw dup-1 %d times, want 1", n)
		}
	})

	t.Run("reply_subject", func(t *testing.T) {
		e.publish("push.jobs.p2t", []byte(`{"request_id":"reply-1","reply_subject":"push.results.orders.eu","payload":{"fromAccount":"a","topicId":5,"msg":"reply-1"}}`))
		r := res.waitResult("reply-1", 15*time.Second)
		if r.Subject != "push.results.orders.eu" || r.Status != "sent" || r.Type != "p2t" {
			t.Fatalf("result %s, want sent on push.results.orders.eu", r)
		}
		if n := len(res.resultsOf("reply-1")); n != 1 {
			t.Fatalf("%d results of reply-1, want 1", n)
		}
	})

	t.Run("not_after", func(t *testing.T) {
		e.publish("push.jobs.p2p", []byte(`{"request_id":"late-1","not_after":"2001-02-03T04:05:06Z","payload":{"fromAccount":"a","toAccount":"b","msg":"late-1"}}`))
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		e.publish("push.jobs.p2p", []byte(`{"request_id":"early-1","not_after":"`+future+`","payload":{"fromAccount":"a","toAccount":"b","msg":"early-1"}}`))
		r := res.waitResult("late-1", 15*time.Second)
		checkResultShape(t, r)
		if r.Status != "expired" || r.kind() != "expired" {
			t.Fatalf("result %s, want expired", r)
		}
		if r := res.waitResult("early-1", 15*time.Second); r.Status != "sent" {
			t.Fatalf("result %s, want sent", r)
		}
		if n := callsByID(e.sb, p2pPath)["late-1"]; n != 0 {
			t.Fatalf("an expired job reached the upstream %d times", n)
		}
		// Expired leaves no record: the same request id is processed afresh.
		e.publish("push.jobs.p2p", p2pJob("late-1"))
		r2 := res.waitResults("late-1", 2, 15*time.Second)[1]
		if r2.Status != "sent" || r2.Duplicate {
			t.Fatalf("late-1 sent again: %s, want sent, not a duplicate", r2)
		}
	})

	t.Run("rejected leaves no record", func(t *testing.T) {
		e.sb.FailNext(p2pPath, 1, 400, `{"code":400,"message":"bad","data":null}`)
		e.publish("push.jobs.p2p", p2pJob("again-1"))
		if r := res.waitResult("again-1", 15*time.Second); r.Status != "rejected" {
			t.Fatalf("result %s, want rejected", r)
		}
		e.publish("push.jobs.p2p", p2pJob("again-1"))
		r2 := res.waitResults("again-1", 2, 15*time.Second)[1]
		if r2.Status != "sent" || r2.Duplicate || r2.Attempts != 1 {
			t.Fatalf("again-1 sent again: %s, want sent, not a duplicate", r2)
		}
		if n := callsByID(e.sb, p2pPath)["again-1"]; n != 2 {
			t.Fatalf("the upstream saw again-1 %d times, want 2", n)
		}
	})

	t.Run("copies in flight wait for the outcome", func(t *testing.T) {
		e.sb.SetLatency(300 * time.Millisecond)
		defer e.sb.SetLatency(0)
		const copies = 4
		for range copies {
			e.publish("push.jobs.p2p", p2pJob("conc-1"))
		}
		rs := res.waitResults("conc-1", copies, 20*time.Second)
		originals := 0
		for _, r := range rs {
			if r.Status != "sent" || r.PacketID != rs[0].PacketID {
				t.Fatalf("results %v", rs)
			}
			if !r.Duplicate {
				originals++
			}
		}
		if originals != 1 {
			t.Fatalf("%d non-duplicate results of %d copies, want 1: %v", originals, copies, rs)
		}
		if n := callsByID(e.sb, p2pPath)["conc-1"]; n != 1 {
			t.Fatalf("the upstream saw conc-1 %d times, want 1", n)
		}
	})

	t.Run("duplicates across types", func(t *testing.T) {
		// Request ids are global (README): a ucs job reusing a p2p job's id is a duplicate.
		e.publish("push.jobs.p2p", p2pJob("cross-1"))
		r1 := res.waitResult("cross-1", 15*time.Second)
		e.publish("push.jobs.ucs", []byte(`{"request_id":"cross-1","payload":{"fromAccount":"a","topicId":1,"message":"cross-1"}}`))
		r2 := res.waitResults("cross-1", 2, 15*time.Second)[1]
		if !r2.Duplicate || r2.PacketID != r1.PacketID {
			t.Fatalf("second result %s, want a duplicate of %s", r2, r1)
		}
		if n := callsByID(e.sb, "/api/push/")["cross-1"]; n != 1 {
			t.Fatalf("the upstream saw cross-1 %d times, want 1", n)
		}
	})
	if w.exited() {
		t.Fatal("the worker exited")
	}
}
