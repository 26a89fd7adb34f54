package e2e

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func streamInfo(t testing.TB, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return info
}

// checkStreams checks the three streams of §2 under the given prefixes.
func checkStreams(t *testing.T, js jetstream.JetStream, subj, strm string, dupWindow, resultsAge, dlqAge time.Duration) {
	t.Helper()
	jobs := streamInfo(t, js, strm+"_JOBS").Config
	// Exactly <prefix>.jobs.> (§2): jobs due later wait inside it, on <prefix>.jobs._sched.>,
	// as message schedules (README "Campaigns").
	if !slices.Equal(jobs.Subjects, []string{subj + ".jobs.>"}) || !jobs.AllowMsgSchedules || jobs.Retention != jetstream.WorkQueuePolicy ||
		jobs.Storage != jetstream.FileStorage || jobs.Duplicates != dupWindow || jobs.Replicas != 1 {
		t.Fatalf("%s_JOBS: subjects %v retention %v storage %v duplicates %v replicas %d; want [%s.jobs.>] work queue, file, %v, 1, schedules",
			strm, jobs.Subjects, jobs.Retention, jobs.Storage, jobs.Duplicates, jobs.Replicas, subj, dupWindow)
	}
	results := streamInfo(t, js, strm+"_RESULTS").Config
	if !slices.Equal(results.Subjects, []string{subj + ".results.>"}) || results.Retention != jetstream.LimitsPolicy || results.MaxAge != resultsAge {
		t.Fatalf("%s_RESULTS: subjects %v retention %v max age %v; want [%s.results.>] limits %v",
			strm, results.Subjects, results.Retention, results.MaxAge, subj, resultsAge)
	}
	dlq := streamInfo(t, js, strm+"_DLQ").Config
	if !slices.Equal(dlq.Subjects, []string{subj + ".dlq.>"}) || dlq.Retention != jetstream.LimitsPolicy || dlq.MaxAge != dlqAge {
		t.Fatalf("%s_DLQ: subjects %v retention %v max age %v; want [%s.dlq.>] limits %v",
			strm, dlq.Subjects, dlq.Retention, dlq.MaxAge, subj, dlqAge)
	}

	// Durable pull consumers named pushworker*, which together take every job type. The
	// admin server may answer before the worker created them all: wait for them.
	types := []string{"p2p", "p2p_more", "p2t", "p2t_more", "ucs", "ucs_multi_msg", "ucs_multi_topic", "notify"}
	var consumers []*jetstream.ConsumerInfo
	var missing []string
	eventually(t, 10*time.Second, "consumers filtering every job type", func() bool {
		consumers, missing = listConsumers(t, js, strm+"_JOBS"), nil
		covered := map[string]bool{}
		for _, ci := range consumers {
			for _, f := range append(slices.Clone(ci.Config.FilterSubjects), ci.Config.FilterSubject) {
				covered[f] = true
			}
		}
		for _, typ := range types {
			if !covered[subj+".jobs."+typ] && !covered[subj+".jobs.>"] {
				missing = append(missing, typ)
			}
		}
		return len(missing) == 0
	})
	for _, ci := range consumers {
		c := ci.Config
		if !strings.HasPrefix(ci.Name, "pushworker") || c.Durable != ci.Name || c.DeliverSubject != "" || c.AckPolicy != jetstream.AckExplicitPolicy {
			t.Fatalf("consumer %q: durable %q deliver subject %q ack policy %v; want a durable pull consumer named pushworker*",
				ci.Name, c.Durable, c.DeliverSubject, c.AckPolicy)
		}
	}
}

func listConsumers(t testing.TB, js jetstream.JetStream, stream string) []*jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	lister := s.ListConsumers(ctx)
	var out []*jetstream.ConsumerInfo
	for ci := range lister.Info() {
		out = append(out, ci)
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStreamsAndConsumers: the streams of §2 exist after start, honour the variables, and
// are updated by a later start.
func TestStreamsAndConsumers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{
		"PUSH_DUPLICATE_WINDOW": "90s", "PUSH_RESULTS_MAX_AGE": "5h", "PUSH_DLQ_MAX_AGE": "10h",
	})
	w := e.start()
	checkStreams(t, e.js, "push", "PUSH", 90*time.Second, 5*time.Hour, 10*time.Hour)

	// Producers setting Nats-Msg-Id are deduplicated on publish.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, wantDup := range []bool{false, true} {
		ack, err := e.js.Publish(ctx, "push.jobs.p2p", p2pJob("msgid-1"), jetstream.WithMsgID("msgid-1"))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate != wantDup {
			t.Fatalf("publish %d with the same Nats-Msg-Id: duplicate %v, want %v", i+1, ack.Duplicate, wantDup)
		}
	}
	res := e.results()
	res.waitResult("msgid-1", 15*time.Second)

	// A later start updates the streams.
	w.stop(15 * time.Second)
	e.vars["PUSH_RESULTS_MAX_AGE"] = "6h"
	e.vars["PUSH_DLQ_MAX_AGE"] = "11h"
	e.vars["PUSH_DUPLICATE_WINDOW"] = "1m"
	e.start()
	checkStreams(t, e.js, "push", "PUSH", time.Minute, 6*time.Hour, 11*time.Hour)
	if got := len(res.resultsOf("msgid-1")); got != 1 {
		t.Fatalf("%d results of msgid-1 after a restart, want 1", got)
	}
}

// TestStreamDefaults: without the variables, the defaults of §2 and §7.
func TestStreamDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start()
	checkStreams(t, e.js, "push", "PUSH", 2*time.Minute, 168*time.Hour, 720*time.Hour)
}

// TestPrefixesMoveEverything: PUSH_SUBJECT_PREFIX and PUSH_STREAM_PREFIX move every
// subject and stream.
func TestPrefixesMoveEverything(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"PUSH_SUBJECT_PREFIX": "acme", "PUSH_STREAM_PREFIX": "ACME"})
	e.start()
	checkStreams(t, e.js, "acme", "ACME", 2*time.Minute, 168*time.Hour, 720*time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range []string{"PUSH_JOBS", "PUSH_RESULTS", "PUSH_DLQ"} {
		if _, err := e.js.Stream(ctx, s); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("stream %s with prefix ACME: %v, want not found", s, err)
		}
	}
	res := watchStream(t, e.js, "ACME_RESULTS")
	dlq := watchStream(t, e.js, "ACME_DLQ")
	seq := publish(t, e.js, "acme.jobs.p2p", p2pJob("acme-1"), "")
	publish(t, e.js, "acme.jobs.p2p", []byte(`{"request_id":"acme-2","reply_subject":"acme.results.mine","payload":{"fromAccount":"a","toAccount":"b","msg":"acme-2"}}`), "")
	publish(t, e.js, "acme.jobs.p2p", []byte(`{"request_id":"acme-bad","payload":{"fromAccount":"a"}}`), "")
	publish(t, e.js, "acme.jobs.sms", []byte(`{"request_id":"acme-sms","payload":{}}`), "")

	r := res.waitResult("acme-1", 15*time.Second)
	if r.Subject != "acme.results.p2p" || r.Status != "sent" || r.JobSeq != seq {
		t.Fatalf("result %s, want sent on acme.results.p2p", r)
	}
	if r := res.waitResult("acme-2", 15*time.Second); r.Subject != "acme.results.mine" || r.Status != "sent" {
		t.Fatalf("result %s, want sent on acme.results.mine", r)
	}
	if r := res.waitResult("acme-bad", 15*time.Second); r.Subject != "acme.results.p2p" || r.Status != "rejected" {
		t.Fatalf("result %s, want rejected on acme.results.p2p", r)
	}
	if r := res.waitResult("acme-sms", 15*time.Second); r.Subject != "acme.results.sms" || r.kind() != "unknown_type" {
		t.Fatalf("result %s, want unknown_type on acme.results.sms", r)
	}
	if d := dlq.waitDLQ("acme-bad", 10*time.Second); d.MsgSubject != "acme.dlq.p2p" || d.Subject != "acme.jobs.p2p" {
		t.Fatalf("DLQ entry on %s with subject %s, want acme.dlq.p2p / acme.jobs.p2p", d.MsgSubject, d.Subject)
	}
	if d := dlq.waitDLQ("acme-sms", 10*time.Second); d.MsgSubject != "acme.dlq.sms" {
		t.Fatalf("DLQ entry on %s, want acme.dlq.sms", d.MsgSubject)
	}
	// Nothing left behind in the jobs stream.
	eventually(t, 10*time.Second, "ACME_JOBS empty", func() bool { return streamInfo(t, e.js, "ACME_JOBS").State.Msgs == 0 })
}
