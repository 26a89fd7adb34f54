package jobs_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/jobs"
)

func TestPublishSetsMsgIDAndDeduplicates(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, natstest.JetStream(t, "")))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PUSH_JOBS", Subjects: []string{"push.jobs.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	job, err := jobs.NewJob("order-1", jobs.P2TPayload{FromAccount: "shop", TopicID: 9223372036854775807, Msg: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	a1, err := jobs.Publish(ctx, js, "", jobs.P2T, job)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := jobs.Publish(ctx, js, "", jobs.P2T, job)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || !a2.Duplicate {
		t.Fatalf("duplicate flags %v %v", a1.Duplicate, a2.Duplicate)
	}
	st, _ := js.Stream(ctx, "PUSH_JOBS")
	m, err := st.GetMsg(ctx, a1.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "push.jobs.p2t" || m.Header.Get(nats.MsgIdHdr) != "order-1" {
		t.Fatalf("subject %s header %v", m.Subject, m.Header)
	}
	d, jerr := jobs.Decode(jobs.Meta{Subject: m.Subject, Seq: m.Sequence}, m.Data, jobs.Options{})
	if jerr != nil {
		t.Fatal(jerr)
	}
	if got := string(d.Calls[0].Body); got != `{"fromAccount":"shop","topicId":9223372036854775807,"msg":"hi"}` {
		t.Fatalf("body %s", got)
	}
	var env map[string]any
	_ = json.Unmarshal(m.Data, &env)
	if env["request_id"] != "order-1" {
		t.Fatalf("envelope %s", m.Data)
	}
}
