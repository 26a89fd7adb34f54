package limiter

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestDecodeHeartbeat reads what publish writes: the claim is the share displays show.
func TestDecodeHeartbeat(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	data, err := json.Marshal(&heartbeat{Replica: "r1", At: at, EveryMS: 1000, Budgets: []budget{
		{App: "default", Class: "p2p", Used: 0.25, Sent: 0.2, Hungry: true, Claim: 0.5},
		{App: "shop", Class: "notify", Claim: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	hb, err := DecodeHeartbeat(data)
	if err != nil {
		t.Fatal(err)
	}
	if hb.Replica != "r1" || !hb.At.Equal(at) || hb.Every != time.Second || len(hb.Budgets) != 2 {
		t.Fatalf("%+v", hb)
	}
	if b := hb.Budgets[0]; b != (BudgetReport{App: "default", Class: "p2p", Used: 0.25, Sent: 0.2, Hungry: true, Share: 0.5}) {
		t.Fatalf("budget %+v", b)
	}
	if !hb.Alive(at, at.Add(3*time.Second)) || hb.Alive(at, at.Add(3*time.Second+time.Millisecond)) {
		t.Fatal("a replica counts as gone after three silent intervals, not before")
	}
	if _, err := DecodeHeartbeat([]byte(`{"budgets":`)); err == nil {
		t.Fatal("a broken value must be an error")
	}
}

// TestHeartbeatReportsWhatWasSent: a replica's heartbeat says which fraction of the rate it
// sent in the last second, as the dashboard shows it.
func TestHeartbeatReportsWhatWasSent(t *testing.T) {
	s := startNATS(t)
	r := startReplica(t, s, "r1", 100, 200*time.Millisecond, nil)
	_, js := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucketName)
	if err != nil {
		t.Fatal(err)
	}
	stopSending := make(chan struct{})
	sent := make(chan struct{})
	go func() { // about 20 tokens a second, for as long as the test looks
		defer close(sent)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSending:
				return
			case <-tick.C:
				if r.l.Wait(ctx, "app", "p2p", 1, nil) == nil {
					_ = r.l.Admit(ctx, "app", "p2p", 1)
				}
			}
		}
	}()
	defer func() { close(stopSending); <-sent }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if e, err := kv.Get(ctx, "r1"); err == nil {
			if hb, err := DecodeHeartbeat(e.Value()); err == nil && len(hb.Budgets) == 1 {
				if b := hb.Budgets[0]; b.Sent >= 0.1 && b.Sent <= 0.3 {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			e, _ := kv.Get(ctx, "r1")
			t.Fatalf("no heartbeat with about 20 %% sent: last %s", e.Value())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
