package limiter

import (
	"encoding/json"
	"testing"
	"time"
)

// TestDecodeHeartbeat reads what publish writes: the claim is the share displays show.
func TestDecodeHeartbeat(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	data, err := json.Marshal(&heartbeat{Replica: "r1", At: at, EveryMS: 1000, Budgets: []budget{
		{App: "default", Class: "p2p", Used: 0.25, Hungry: true, Claim: 0.5},
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
	if b := hb.Budgets[0]; b != (BudgetReport{App: "default", Class: "p2p", Used: 0.25, Hungry: true, Share: 0.5}) {
		t.Fatalf("budget %+v", b)
	}
	if !hb.Alive(at, at.Add(3*time.Second)) || hb.Alive(at, at.Add(3*time.Second+time.Millisecond)) {
		t.Fatal("a replica counts as gone after three silent intervals, not before")
	}
	if _, err := DecodeHeartbeat([]byte(`{"budgets":`)); err == nil {
		t.Fatal("a broken value must be an error")
	}
}
