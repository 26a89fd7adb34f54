package dlq

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/jobs"
)

func setup(t *testing.T) (jetstream.JetStream, broker.Names, jetstream.Stream) {
	t.Helper()
	s := natstest.Start(t, natstest.JetStream(t, ""))
	_, js := natstest.Connect(t, s)
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := broker.EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	n := broker.NamesFrom(cfg)
	st, err := js.Stream(ctx, n.DLQStream())
	if err != nil {
		t.Fatal(err)
	}
	return js, n, st
}

// add writes a DLQ entry as the worker does and returns its sequence.
func add(t *testing.T, js jetstream.JetStream, n broker.Names, typ, reqID string, kind jobs.ErrorKind) uint64 {
	t.Helper()
	job := []byte(fmt.Sprintf(`{"request_id":%q,"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, reqID))
	data, _ := json.Marshal(jobs.DLQEntry{Subject: n.JobSubject(typ), Data: job, Job: job,
		Result: jobs.Result{RequestID: reqID, Type: typ, Status: jobs.StatusFailed, Error: jobs.Errorf(kind, "x")}})
	ack, err := js.Publish(context.Background(), n.DLQSubject(typ), data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func seqs(p Page) []uint64 {
	out := make([]uint64, len(p.Entries))
	for i, e := range p.Entries {
		out[i] = e.Seq
	}
	return out
}

// TestNewest: pages come newest first, by type, kind and before, and never read more than
// maxScan messages, also when the matches are far back in a large stream.
func TestNewest(t *testing.T) {
	js, n, st := setup(t)
	ctx := context.Background()
	for i := 1; i <= 400; i++ {
		typ, kind := "p2p", jobs.KindUpstreamUnavailable
		if i%2 == 0 {
			typ = "notify"
		}
		if i == 5 || i == 7 {
			kind = jobs.KindUpstreamRejected // two rare entries, far back
		}
		add(t, js, n, typ, fmt.Sprintf("r-%d", i), kind)
	}
	p, err := Newest(ctx, st, n, Filter{}, 0, 5, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(seqs(p)); got != "[400 399 398 397 396]" || !p.More || p.Scanned > 64 {
		t.Fatalf("newest: %s more %v scanned %d", got, p.More, p.Scanned)
	}
	p, err = Newest(ctx, st, n, Filter{Type: "notify"}, 396, 3, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(seqs(p)); got != "[394 392 390]" || p.Entries[0].Type() != "notify" {
		t.Fatalf("notify before 396: %s", got)
	}
	p, err = Newest(ctx, st, n, Filter{Kind: string(jobs.KindUpstreamRejected)}, 0, 10, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) != 0 || !p.More || p.Scanned != 100 {
		t.Fatalf("bounded scan: %v more %v scanned %d", seqs(p), p.More, p.Scanned)
	}
	p, err = Newest(ctx, st, n, Filter{Kind: string(jobs.KindUpstreamRejected)}, 0, 10, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(seqs(p)); got != "[7 5]" || p.More || p.Scanned != 400 {
		t.Fatalf("rare kind: %s more %v scanned %d", got, p.More, p.Scanned)
	}
	p, err = Newest(ctx, st, n, Filter{RequestID: "r-3"}, 0, 10, 1000)
	if err != nil || fmt.Sprint(seqs(p)) != "[3]" {
		t.Fatalf("request id: %v %v", seqs(p), err)
	}
}

// TestReplay: the job goes back to its subject with its request id as a header and the
// entry is deleted; entries that cannot work are refused before anything is published.
func TestReplay(t *testing.T) {
	js, n, st := setup(t)
	ctx := context.Background()
	seq := add(t, js, n, "p2p", "again-1", jobs.KindUpstreamUnavailable)
	creds := add(t, js, n, "p2p", "creds-1", jobs.KindCredentialsInJob)
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	e := Decode(raw.Sequence, raw.Time, raw.Subject, raw.Data)
	p, ack, err := Replay(ctx, js, st, n, &e)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "push.jobs.p2p" || p.RequestID != "again-1" || ack.Stream != n.JobsStream() {
		t.Fatalf("plan %+v ack %+v", p, ack)
	}
	jobsSt, _ := js.Stream(ctx, n.JobsStream())
	m, err := jobsSt.GetMsg(ctx, ack.Sequence)
	if err != nil || m.Header.Get(jobs.HeaderRequestID) != "again-1" || string(m.Data) != string(e.Entry.Data) {
		t.Fatalf("replayed %+v %v", m, err)
	}
	if _, err := st.GetMsg(ctx, seq); err == nil {
		t.Fatal("the replayed entry is still in the DLQ")
	}
	raw, _ = st.GetMsg(ctx, creds)
	e = Decode(raw.Sequence, raw.Time, raw.Subject, raw.Data)
	if _, _, err := Replay(ctx, js, st, n, &e); err == nil {
		t.Fatal("an entry of a job with credentials was replayed")
	}
	if info, _ := jobsSt.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("%d jobs, want 1", info.State.Msgs)
	}
}
