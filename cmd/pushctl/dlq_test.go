package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/pushworker/pushworker/jobs"
)

// dlqJob is one job written to the DLQ by the test as the worker would.
type dlqJob struct {
	typ, reqID string
	data       []byte
	seq        uint64 // its DLQ stream sequence
}

func (h *harness) addDLQ(j *dlqJob, kind jobs.ErrorKind) {
	h.t.Helper()
	e := jobs.DLQEntry{
		Subject: h.names.JobSubject(j.typ),
		Data:    j.data,
		Result: jobs.Result{RequestID: j.reqID, Type: j.typ, App: "default", Status: jobs.StatusFailed,
			Error: &jobs.Error{Kind: kind, Detail: "upstream answered 503 eight times"}},
	}
	if json.Valid(j.data) {
		e.Job = j.data
	}
	data, err := json.Marshal(e)
	if err != nil {
		h.t.Fatal(err)
	}
	m := nats.NewMsg(h.names.DLQSubject(j.typ))
	m.Data = data
	m.Header.Set(jobs.HeaderRequestID, j.reqID)
	ack, err := h.js.PublishMsg(h.ctx(), m)
	if err != nil {
		h.t.Fatal(err)
	}
	j.seq = ack.Sequence
}

func TestDLQ(t *testing.T) {
	h := newHarness(t, true)
	// Original bytes with odd spacing: a replay must send them byte for byte.
	entries := []*dlqJob{
		{typ: "p2p", reqID: "d-1", data: []byte(`{ "request_id":"d-1",  "payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`)},
		{typ: "notify", reqID: "d-2", data: []byte(`{"request_id":"d-2","payload":{"audience":"all","message":{"title":"t"}}}`)},
		{typ: "p2p", reqID: "d-3", data: []byte(`{"request_id":"d-3","payload":{"fromAccount":"a","toAccount":"c","msg":"m2"}}` + "\n")},
		{typ: "notify", reqID: "d-4", data: []byte(`{"request_id":"d-4","payload":{"audience":"all","message":{"title":"u"}}}`)},
		{typ: "ucs", reqID: "d-5", data: []byte{0xff, 0x00, 'x'}}, // not even text
	}
	kinds := []jobs.ErrorKind{jobs.KindUpstreamUnavailable, jobs.KindUpstreamUnavailable, jobs.KindUpstreamRejected, jobs.KindUpstreamUnavailable, jobs.KindInvalidJob}
	for i, e := range entries {
		h.addDLQ(e, kinds[i])
	}
	// d-1 was first published minutes ago with its request id as Nats-Msg-Id: its replay
	// must not be taken for a duplicate by the jobs stream.
	orig := nats.NewMsg("push.jobs.p2p")
	orig.Data = entries[0].data
	orig.Header.Set(nats.MsgIdHdr, "d-1")
	if _, err := h.js.PublishMsg(h.ctx(), orig); err != nil {
		t.Fatal(err)
	}

	t.Run("list", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "dlq", "list")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(entries) {
			t.Fatalf("%d lines:\n%s", len(lines), out)
		}
		for i, e := range entries {
			if !strings.HasPrefix(lines[i], fmt.Sprintf("%d  ", e.seq)) || !strings.Contains(lines[i], "  "+e.typ+"  "+e.reqID+"  failed  "+string(kinds[i])) {
				t.Errorf("line %q for %+v", lines[i], e)
			}
		}
		out, _ = h.mustPushctl(exitOK, "dlq", "list", "--type", "notify", "--json")
		if n := strings.Count(out, "\n"); n != 2 || !strings.Contains(out, `"seq":`+fmt.Sprint(entries[1].seq)) {
			t.Fatalf("--type notify --json:\n%s", out)
		}
		out, _ = h.mustPushctl(exitOK, "dlq", "list", "--kind", "upstream_rejected")
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, "d-3") {
			t.Fatalf("--kind:\n%s", out)
		}
	})

	t.Run("show", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "dlq", "show", fmt.Sprint(entries[0].seq))
		var shown struct {
			Subject string          `json:"subject"`
			Data    json.RawMessage `json:"data"`
			Result  jobs.Result     `json:"result"`
		}
		if err := json.Unmarshal([]byte(out), &shown); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		if shown.Subject != "push.jobs.p2p" || shown.Result.RequestID != "d-1" || !strings.Contains(out, `"toAccount": "b"`) {
			t.Fatalf("the job bytes must be shown decoded:\n%s", out)
		}
		out, _ = h.mustPushctl(exitOK, "dlq", "show", fmt.Sprint(entries[4].seq))
		if !strings.Contains(out, `"data_base64"`) {
			t.Fatalf("binary job data:\n%s", out)
		}
		h.mustPushctl(exitError, "dlq", "show", "999")
	})

	t.Run("dry run changes nothing", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "dlq", "replay", "--type", "p2p", "--dry-run")
		if !strings.Contains(out, "would replay 2, failed 0") {
			t.Fatalf("%s", out)
		}
		if h.msgCount(h.names.DLQStream()) != uint64(len(entries)) || h.msgCount(h.names.JobsStream()) != 1 {
			t.Fatal("dry run changed the streams")
		}
	})

	t.Run("replay --type moves the entries back", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "dlq", "replay", "--type", "p2p")
		if !strings.Contains(out, "replayed 2, failed 0") {
			t.Fatalf("%s", out)
		}
		jobsStream := h.stream(h.names.JobsStream())
		if n := jobsStream.CachedInfo().State.Msgs; n != 3 {
			t.Fatalf("%d jobs in the stream, want the original d-1 and 2 replays", n)
		}
		for i, e := range []*dlqJob{entries[0], entries[2]} {
			m, err := jobsStream.GetMsg(h.ctx(), uint64(2+i))
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != "push.jobs.p2p" || !bytes.Equal(m.Data, e.data) || m.Header.Get(nats.MsgIdHdr) != "" {
				t.Fatalf("replayed %s %q (msg id %q), want %q", m.Subject, m.Data, m.Header.Get(nats.MsgIdHdr), e.data)
			}
		}
		dlq := h.stream(h.names.DLQStream())
		if n := dlq.CachedInfo().State.Msgs; n != 3 {
			t.Fatalf("%d DLQ entries left, want 3", n)
		}
		for _, e := range []*dlqJob{entries[0], entries[2]} {
			if _, err := dlq.GetMsg(h.ctx(), e.seq); err == nil {
				t.Fatalf("DLQ entry %d still there", e.seq)
			}
		}
	})

	t.Run("replay --seq", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "dlq", "replay", "--seq", fmt.Sprint(entries[1].seq), "--json")
		var sum replaySummary
		if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Replayed != 1 || sum.Failed != 0 {
			t.Fatalf("%s (%v)", out, err)
		}
		m := h.lastJob("push.jobs.notify")
		if !bytes.Equal(m.Data, entries[1].data) {
			t.Fatalf("replayed %q", m.Data)
		}
	})

	t.Run("an entry stays when its publish fails", func(t *testing.T) {
		if err := h.js.DeleteStream(h.ctx(), h.names.JobsStream()); err != nil {
			t.Fatal(err)
		}
		code, out, errs := h.pushctl("dlq", "replay", "--type", "notify")
		if code != exitError || !strings.Contains(out, "replayed 0, failed 1") || !strings.Contains(errs, "stream PUSH_JOBS not found") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errs)
		}
		if _, err := h.stream(h.names.DLQStream()).GetMsg(h.ctx(), entries[3].seq); err != nil {
			t.Fatalf("the DLQ entry of a failed replay was deleted: %v", err)
		}
	})
}

// TestDLQReplayRefusesWhatCannotWork: an entry of a job that carried credentials (held
// redacted) and one whose job bytes were too large to keep are not replayed, with the reason.
func TestDLQReplayRefusesWhatCannotWork(t *testing.T) {
	h := newHarness(t, true)
	creds := &dlqJob{typ: "p2p", reqID: "c-1", data: []byte(`{"request_id":"c-1","payload":{"appKey":"[redacted]"}}`)}
	h.addDLQ(creds, jobs.KindCredentialsInJob)
	big := jobs.DLQEntry{Subject: "push.jobs.p2p", Omitted: "job and data: the job's 900000 bytes do not fit in one DLQ message",
		Result: jobs.Result{RequestID: "b-1", Type: "p2p", Status: jobs.StatusRejected, Error: &jobs.Error{Kind: jobs.KindUpstreamRejected, Detail: "too long"}}}
	data, _ := json.Marshal(big)
	ack, err := h.js.Publish(h.ctx(), h.names.DLQSubject("p2p"), data)
	if err != nil {
		t.Fatal(err)
	}
	_, errs := h.mustPushctl(exitError, "dlq", "replay", "--seq", fmt.Sprint(creds.seq))
	if !strings.Contains(errs, "credentials") {
		t.Errorf("credentials entry: %q", errs)
	}
	_, errs = h.mustPushctl(exitError, "dlq", "replay", "--seq", fmt.Sprint(ack.Sequence))
	if !strings.Contains(errs, "no job data (omitted job and data") {
		t.Errorf("omitted entry: %q", errs)
	}
	if h.msgCount(h.names.JobsStream()) != 0 || h.msgCount(h.names.DLQStream()) != 2 {
		t.Fatal("a refused replay changed the streams")
	}
}
