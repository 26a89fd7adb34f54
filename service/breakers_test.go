package service

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/upstream"
)

// TestBreakerSharedAcrossReplicas opens a breaker on one replica and checks that another
// stops calling within a second, does not probe itself, and resumes when the first closes.
func TestBreakerSharedAcrossReplicas(t *testing.T) {
	s := natstest.Start(t)
	replica := func(id string) *upstream.Breakers {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		bus := &breakerBus{nc: nc, subject: "push.internal.breaker", replica: id, log: zerolog.Nop()}
		b := upstream.NewBreakers(upstream.BreakerSettings{TripAfter: 2, OpenFor: 300 * time.Millisecond, OnChange: bus.publish})
		bus.breakers, bus.hold = b, 10*time.Second
		if _, err := bus.subscribe(); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := replica("a"), replica("b")
	fail := upstream.Outcome{Kind: upstream.Retryable}
	for range 2 {
		done, _, err := a.For("app", "mimc", "h").Allow()
		if err != nil {
			t.Fatal(err)
		}
		done(fail)
	}
	if _, blocked := a.For("app", "mimc", "h").Blocked(); !blocked {
		t.Fatal("breaker did not open on a")
	}
	deadline := time.Now().Add(time.Second)
	for {
		if _, blocked := b.For("app", "mimc", "h").Blocked(); blocked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica b still calls the upstream 1 s after a's breaker opened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, blocked := b.For("other", "mimc", "h").Blocked(); blocked {
		t.Fatal("another app's upstream was blocked")
	}
	// After the open period, a probes (half-open) while b keeps waiting for a's verdict.
	time.Sleep(400 * time.Millisecond)
	if _, _, err := b.For("app", "mimc", "h").Allow(); err == nil {
		t.Fatal("b probed while a owns the probe")
	}
	done, _, err := a.For("app", "mimc", "h").Allow()
	if err != nil {
		t.Fatalf("a cannot probe: %v", err)
	}
	done(upstream.Outcome{Kind: upstream.Sent})
	deadline = time.Now().Add(time.Second)
	for {
		if _, blocked := b.For("app", "mimc", "h").Blocked(); !blocked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b did not resume after a's probe succeeded")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
