package api

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/control"
	"github.com/pushworker/pushworker/internal/natstest"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

func TestControlEndpoints(t *testing.T) {
	ns := natstest.Start(t, natstest.JetStream(t, ""))
	nc, js := natstest.Connect(t, ns)
	ctx := context.Background()
	store, err := control.Open(ctx, js, "PUSH_CONTROL")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := Start(nc, Options{Config: config.Config{SubjectPrefix: "push"}, Client: &upstream.Client{}, Breakers: upstream.NewBreakers(upstream.BreakerSettings{}),
		Logger: zerolog.Nop(), Controls: &store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	h := &harness{t: t, nc: nc, prefix: "push"}

	mustOK(t, "pause", h.ask("pause", map[string]any{"target": "p2t", "app": "shop", "for": "1h"}))
	mustOK(t, "cancel", h.ask("cancel", map[string]any{"request_id_prefix": "camp-1/"}))
	st, err := store.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pauses) != 1 || st.Pauses[0].App != "shop" || time.Until(st.Pauses[0].Until) < 59*time.Minute || len(st.Cancels) != 1 || st.Cancels[0].Prefix != "camp-1/" {
		t.Fatalf("controls: %+v", st)
	}
	r := h.ask("resume", map[string]any{"target": "p2t", "app": "shop"})
	mustOK(t, "resume", r)
	var res struct{ Resumed bool }
	if json.Unmarshal(r.Data, &res); !res.Resumed {
		t.Fatalf("resume: %s", r.Data)
	}
	if _, err := store.KV.Get(ctx, "nothing"); err != jetstream.ErrKeyNotFound {
		t.Fatal(err)
	}

	mustFail(t, "pause", h.ask("pause", map[string]any{"target": "nope"}), CodeInvalid, jobs.KindInvalidJob, `target "nope"`)
	mustFail(t, "pause", h.ask("pause", map[string]any{"target": "p2p", "for": "soon"}), CodeInvalid, jobs.KindInvalidJob, "for must be")
	mustFail(t, "cancel", h.ask("cancel", map[string]any{}), CodeInvalid, jobs.KindInvalidJob, "request_id_prefix is required")
	mustFail(t, "pause", h.ask("pause", `{"target":"p2p","bogus":1}`), CodeInvalid, jobs.KindInvalidJob, "bogus")
}
