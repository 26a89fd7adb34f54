package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/jobs"
)

func TestStatus(t *testing.T) {
	h := newHarness(t, true)

	t.Run("before any worker", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "status")
		for _, want := range []string{"PUSH_JOBS", "PUSH_RESULTS", "PUSH_DLQ", "no pushworker has started", "bucket not found", "none answered"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
	})

	for _, spec := range broker.ConsumerTypes() {
		if _, err := broker.EnsureConsumer(h.ctx(), h.js, h.names, string(spec.Type), broker.ConsumerSettings{AckWait: 30 * time.Second, MaxAckPending: 100}); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"send", "p2p", "--from", "a", "--to", "b", "--msg", "m"},
		{"send", "p2p", "--from", "a", "--to", "c", "--msg", "m"},
		{"send", "ucs", "--from", "a", "--topic", "5", "--msg", "m"},
	} {
		h.mustPushctl(exitOK, args...)
	}
	kv, err := h.js.CreateKeyValue(h.ctx(), jetstream.KeyValueConfig{Bucket: h.names.LimiterBucket()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(h.ctx(), "replica-a", []byte(`{"p2p":{"rate":1000,"share":500}}`)); err != nil { // any shape: shown raw
		t.Fatal(err)
	}
	if _, err := kv.Put(h.ctx(), "replica-b", []byte(`{"replica":"replica-b","peers":["replica-a","replica-b"],`+
		`"budgets":[{"app":"default","class":"p2p","used":0.25,"hungry":true,"claim":0.5}]}`)); err != nil { // the limiter's heartbeat
		t.Fatal(err)
	}
	svc, err := micro.AddService(h.nc, micro.Config{Name: "pushworker", Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()

	out, _ := h.mustPushctl(exitOK, "status")
	want := []string{"PUSH_JOBS", "PUSH_RESULTS", "PUSH_DLQ", "replica-a", `"share":500`, "replica-b",
		"app default class p2p: share 50%, used 25%, hungry", svc.Info().ID, "version 1.2.3"}
	for _, spec := range jobs.Specs() {
		want = append(want, h.names.Consumer(string(spec.Type)))
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}

	out, _ = h.mustPushctl(exitOK, "status", "--json")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(rep.Streams) != 3 || rep.Streams[0].Messages != 3 || len(rep.Consumers) != len(jobs.Specs()) {
		t.Fatalf("streams %+v consumers %+v", rep.Streams, rep.Consumers)
	}
	if rep.Pending["p2p"] != 2 || rep.Pending["ucs"] != 1 {
		t.Fatalf("pending by type %v", rep.Pending)
	}
	for _, c := range rep.Consumers {
		wantPending := map[string]uint64{"pushworker-p2p": 2, "pushworker-ucs": 1}[c.Name]
		if c.NumPending != wantPending {
			t.Errorf("consumer %s pending %d, want %d", c.Name, c.NumPending, wantPending)
		}
	}
	if !rep.Limiter.Found || len(rep.Limiter.Replicas) != 2 || len(rep.Services) != 1 || rep.Services[0].Version != "1.2.3" {
		t.Fatalf("limiter %+v services %+v", rep.Limiter, rep.Services)
	}
}
