package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/internal/natstest"
)

// TestOutboxBatchSharesOneDeadline: when NATS answers none of a batch's publishes (a node
// lost), every job of the batch gets its error once ackTimeout has passed, not one
// ackTimeout after another (six unanswered publishes held the last job for a minute).
func TestOutboxBatchSharesOneDeadline(t *testing.T) {
	s := natstest.Start(t, natstest.JetStream(t, ""))
	nc, js := natstest.Connect(t, s)
	// A subscriber that never answers: the publishes get no "no responders" and no ack.
	if _, err := nc.Subscribe("blackhole.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	o := newOutbox(js, zerolog.Nop(), NewMetrics(nil), time.Millisecond, 0)
	defer o.stop()
	start := time.Now()
	errs := make(chan []error, 3)
	for range 3 {
		go func() {
			_, e := o.publish(context.Background(), outMsg{m: nats.NewMsg("blackhole.a")}, outMsg{m: nats.NewMsg("blackhole.b")})
			errs <- e
		}()
	}
	for range 3 {
		for _, err := range <-errs {
			if err == nil {
				t.Fatal("an unanswered publish reported success")
			}
		}
	}
	if took := time.Since(start); took > ackTimeout+3*time.Second {
		t.Fatalf("the batch's errors took %v, want about %v", took, ackTimeout)
	}
}
