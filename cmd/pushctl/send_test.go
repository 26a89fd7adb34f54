package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

func TestSendOne(t *testing.T) {
	h := newHarness(t, true)

	t.Run("p2t with a 64-bit topic id and every envelope field", func(t *testing.T) {
		before := time.Now()
		out, _ := h.mustPushctl(exitOK, "send", "p2t", "--from", "shop", "--topic", "9223372036854775807", "--msg", "hello",
			"--request-id", "order-1", "--app", "shop", "--not-after", "10m", "--reply-subject", "push.results.orders", "--is-store")
		if !strings.Contains(out, "published p2t job order-1 to PUSH_JOBS") {
			t.Fatalf("output: %q", out)
		}
		m := h.lastJob("push.jobs.p2t")
		if got := m.Header.Get("Nats-Msg-Id"); got != "order-1" {
			t.Fatalf("Nats-Msg-Id = %q", got)
		}
		var job jobs.Job
		if err := json.Unmarshal(m.Data, &job); err != nil {
			t.Fatal(err)
		}
		if job.RequestID != "order-1" || job.App != "shop" || job.ReplySubject != "push.results.orders" || job.NotAfter == nil {
			t.Fatalf("envelope: %+v", job)
		}
		if na := *job.NotAfter; na.Before(before.Add(10*time.Minute-time.Second)) || na.After(time.Now().Add(10*time.Minute+time.Second)) {
			t.Fatalf("not_after = %v, want 10m from now", na)
		}
		var p jobs.P2TPayload
		if err := json.Unmarshal(job.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.TopicID != jobs.TopicID(math.MaxInt64) || p.FromAccount != "shop" || p.Msg != "hello" || p.IsStore == nil || !*p.IsStore {
			t.Fatalf("payload: %+v", p)
		}
		if !strings.Contains(string(job.Payload), `"topicId":"9223372036854775807"`) {
			t.Fatalf("topic id must travel as a decimal string: %s", job.Payload)
		}
		if _, jerr := jobs.Decode(jobs.Meta{Subject: m.Subject, Seq: m.Sequence}, m.Data, jobs.Options{}); jerr != nil {
			t.Fatalf("the worker would reject it: %v", jerr)
		}
	})

	cases := []struct {
		name    string
		args    []string
		subject string
		check   func(t *testing.T, payload json.RawMessage)
	}{
		{
			name:    "p2p_more with repeated and comma separated --to",
			args:    []string{"send", "p2p_more", "--from", "shop", "--to", "u1,u2", "--to", "u3", "--msg", "hi"},
			subject: "push.jobs.p2p_more",
			check: func(t *testing.T, raw json.RawMessage) {
				var p jobs.P2PMorePayload
				if err := json.Unmarshal(raw, &p); err != nil || strings.Join(p.ToAccounts, ",") != "u1,u2,u3" {
					t.Fatalf("payload %s (%v)", raw, err)
				}
			},
		},
		{
			name:    "ucs_multi_topic topic list stays exact",
			args:    []string{"send", "ucs_multi_topic", "--from", "shop", "--topic", "1234567890123456789,2", "--message", "m"},
			subject: "push.jobs.ucs_multi_topic",
			check: func(t *testing.T, raw json.RawMessage) {
				var p jobs.UCSMultiTopicPayload
				if err := json.Unmarshal(raw, &p); err != nil || len(p.TopicIDs) != 2 || p.TopicIDs[0] != 1234567890123456789 || p.Message != "m" {
					t.Fatalf("payload %s (%v)", raw, err)
				}
			},
		},
		{
			name:    "ucs_multi_msg with --messages",
			args:    []string{"send", "ucs_multi_msg", "--from", "shop", "--topic", "7", "--messages", "a,b", "--messages", "c"},
			subject: "push.jobs.ucs_multi_msg",
			check: func(t *testing.T, raw json.RawMessage) {
				var p jobs.UCSMultiMsgPayload
				if err := json.Unmarshal(raw, &p); err != nil || len(p.Messages) != 2 || p.Messages[0] != "a,b" {
					t.Fatalf("payload %s (%v)", raw, err)
				}
			},
		},
		{
			name:    "notify from flags",
			args:    []string{"send", "notify", "--audience", "user_id:9007199254740993,5", "--title", "T", "--body", "B", "--type", "image", "--attachment-url", "https://x/a.png"},
			subject: "push.jobs.notify",
			check: func(t *testing.T, raw json.RawMessage) {
				if !strings.Contains(string(raw), `"user_id":[9007199254740993,5]`) || !strings.Contains(string(raw), `"type":"image"`) {
					t.Fatalf("payload %s", raw)
				}
			},
		},
		{
			name:    "--payload with a flag on top",
			args:    []string{"send", "p2p", "--payload", `{"fromAccount":"a","toAccount":"b","msg":"x","bizType":"k"}`, "--to", "c"},
			subject: "push.jobs.p2p",
			check: func(t *testing.T, raw json.RawMessage) {
				var p jobs.P2PPayload
				if err := json.Unmarshal(raw, &p); err != nil || p.ToAccount != "c" || p.BizType == nil || *p.BizType != "k" {
					t.Fatalf("payload %s (%v)", raw, err)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, _ := h.mustPushctl(exitOK, append(c.args, "--json")...)
			var ack struct {
				RequestID string `json:"request_id"`
				Subject   string `json:"subject"`
				Seq       uint64 `json:"seq"`
			}
			if err := json.Unmarshal([]byte(out), &ack); err != nil || ack.RequestID == "" || ack.Subject != c.subject {
				t.Fatalf("--json output %q (%v)", out, err)
			}
			m := h.lastJob(c.subject)
			if m.Sequence != ack.Seq || m.Header.Get("Nats-Msg-Id") != ack.RequestID {
				t.Fatalf("stored seq %d msg id %q, ack %+v", m.Sequence, m.Header.Get("Nats-Msg-Id"), ack)
			}
			var job jobs.Job
			if err := json.Unmarshal(m.Data, &job); err != nil || job.RequestID != ack.RequestID {
				t.Fatalf("job %s (%v): the generated request id must be in the job", m.Data, err)
			}
			if _, jerr := jobs.Decode(jobs.Meta{Subject: m.Subject, Seq: m.Sequence}, m.Data, jobs.Options{}); jerr != nil {
				t.Fatalf("the worker would reject it: %v", jerr)
			}
			c.check(t, job.Payload)
		})
	}

	t.Run("usage errors publish nothing", func(t *testing.T) {
		before := h.msgCount(h.names.JobsStream())
		for _, args := range [][]string{
			{"send", "p2p", "--from", "a", "--msg", "m"},                         // no toAccount: invalid job
			{"send", "p2p", "--from", "a", "--to", "b,c", "--msg", "m"},          // several --to for p2p
			{"send", "p2t", "--from", "a", "--topic", "x1", "--msg", "m"},        // not a topic id
			{"send", "nope", "--from", "a"},                                      // unknown type
			{"send", "notify", "--audience", "color:red", "--title", "t"},        // bad audience
			{"send", "p2p", "--from", "a", "--to", "b", "--msg", "m", "--title"}, // flag without value
		} {
			code, _, errs := h.pushctl(args...)
			if code == exitOK || errs == "" {
				t.Errorf("%v: exit %d, stderr %q", args, code, errs)
			}
		}
		if after := h.msgCount(h.names.JobsStream()); after != before {
			t.Fatalf("%d jobs published by failing commands", after-before)
		}
	})
}

func TestSendWait(t *testing.T) {
	h := newHarness(t, true)

	// sendAndAnswer runs send --wait, and once the job is on the stream (so pushctl has
	// subscribed), publishes a result for another request id and then the answer.
	sendAndAnswer := func(t *testing.T, reqID string, status jobs.Status, extra ...string) (int, string, string) {
		t.Helper()
		type res struct {
			code     int
			out, err string
		}
		done := make(chan res, 1)
		go func() {
			args := append([]string{"send", "p2p", "--from", "a", "--to", "b", "--msg", "m", "--request-id", reqID, "--wait", "10s"}, extra...)
			code, out, errs := h.pushctl(args...)
			done <- res{code, out, errs}
		}()
		waitFor(t, 5*time.Second, "the job on the stream", func() bool {
			m, err := h.stream(h.names.JobsStream()).GetLastMsgForSubject(context.Background(), "push.jobs.p2p")
			return err == nil && m.Header.Get("Nats-Msg-Id") == reqID
		})
		h.publishResult("push.results.p2p", jobs.Result{RequestID: "someone-else", Type: "p2p", Status: jobs.StatusFailed})
		r := jobs.Result{RequestID: reqID, Type: "p2p", App: "default", Status: status, PacketID: "pk-1", Attempts: 1}
		if status != jobs.StatusSent {
			r.Error = &jobs.Error{Kind: jobs.KindUpstreamRejected, Detail: "no such account"}
		}
		h.publishResult("push.results.p2p", r)
		select {
		case r := <-done:
			return r.code, r.out, r.err
		case <-time.After(10 * time.Second):
			t.Fatal("send --wait did not return")
		}
		return 0, "", ""
	}

	t.Run("sent", func(t *testing.T) {
		code, out, errs := sendAndAnswer(t, "wait-1", jobs.StatusSent)
		if code != exitOK {
			t.Fatalf("exit %d, stderr %s", code, errs)
		}
		var r jobs.Result
		if err := json.Unmarshal([]byte(out), &r); err != nil || r.RequestID != "wait-1" || r.PacketID != "pk-1" {
			t.Fatalf("stdout must be the result only: %q (%v)", out, err)
		}
		if !strings.Contains(out, "\n  \"request_id\": \"wait-1\"") {
			t.Fatalf("result not pretty-printed: %q", out)
		}
		if !strings.Contains(errs, "published p2p job wait-1") {
			t.Fatalf("stderr %q", errs)
		}
	})

	t.Run("rejected exits 3", func(t *testing.T) {
		code, out, _ := sendAndAnswer(t, "wait-2", jobs.StatusRejected)
		if code != exitNotSent || !strings.Contains(out, "upstream_rejected") {
			t.Fatalf("exit %d, stdout %q", code, out)
		}
	})

	t.Run("timeout exits 4", func(t *testing.T) {
		start := time.Now()
		code, _, errs := h.pushctl("send", "p2p", "--from", "a", "--to", "b", "--msg", "m", "--wait=300ms")
		if code != exitNoResult || !strings.Contains(errs, "no result") {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the wait did not honour its timeout")
		}
	})

	t.Run("a duplicate finds the stored result", func(t *testing.T) {
		// wait-1 was published and answered above: sending it again is a duplicate
		// publish whose result is already in the results stream.
		code, out, errs := h.pushctl("send", "p2p", "--from", "a", "--to", "b", "--msg", "m", "--request-id", "wait-1", "--wait", "3s")
		if code != exitOK || !strings.Contains(out, `"wait-1"`) || !strings.Contains(errs, "duplicate") {
			t.Fatalf("exit %d\nstdout %q\nstderr %q", code, out, errs)
		}
	})

	t.Run("reply subject", func(t *testing.T) {
		done := make(chan int, 1)
		var out string
		go func() {
			code, o, _ := h.pushctl("send", "p2p", "--from", "a", "--to", "b", "--msg", "m", "--request-id", "wait-3",
				"--reply-subject", "push.results.orders", "--wait", "10s", "--json")
			out = o
			done <- code
		}()
		waitFor(t, 5*time.Second, "the job", func() bool {
			m, err := h.stream(h.names.JobsStream()).GetLastMsgForSubject(context.Background(), "push.jobs.p2p")
			return err == nil && m.Header.Get("Nats-Msg-Id") == "wait-3"
		})
		h.publishResult("push.results.p2p", jobs.Result{RequestID: "wait-3", Type: "p2p", Status: jobs.StatusFailed}) // wrong subject
		h.publishResult("push.results.orders", jobs.Result{RequestID: "wait-3", Type: "p2p", Status: jobs.StatusPartial})
		if code := <-done; code != exitOK || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"status":"partial"`) {
			t.Fatalf("exit %d, stdout %q", code, out)
		}
	})
}

func TestSendFile(t *testing.T) {
	h := newHarness(t, true)
	var b strings.Builder
	const lines = 2000
	p2tLines := 0
	for i := 1; i <= lines; i++ {
		switch {
		case i == 500: // the same request id as line 10: a duplicate publish
			b.WriteString(`{"request_id":"job-10","payload":{"fromAccount":"a","toAccount":"u","msg":"again"}}` + "\n")
		case i == 777:
			b.WriteString("{this is not json\n")
		case i == 900: // no request id: pushctl makes one and writes it into the job
			b.WriteString(`{"payload":{"fromAccount":"a","toAccount":"u","msg":"no id"}}` + "\n")
		case i%100 == 0: // a line that picks its own type
			p2tLines++
			fmt.Fprintf(&b, `{"type":"p2t","request_id":"job-%d","payload":{"fromAccount":"a","topicId":"9223372036854775806","msg":"m"}}`+"\n", i)
		default:
			fmt.Fprintf(&b, `{"request_id":"job-%d","payload":{"fromAccount":"a","toAccount":"u%d","msg":"m"}}`+"\n", i, i)
		}
		if i == 1000 {
			b.WriteString("\n") // blank lines are skipped
		}
	}
	path := filepath.Join(t.TempDir(), "jobs.ndjson")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	code, out, errs := h.pushctl("send", "--file", path, "--type", "p2p", "--json")
	if code != exitError { // a bad line makes the exit code 1
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	t.Logf("2000 lines in %v", time.Since(start))
	var sum fileSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	if sum.Lines != lines || sum.Accepted != lines-2 || sum.Duplicate != 1 || sum.Failed != 0 || sum.BadLines != 1 {
		t.Fatalf("summary %+v", sum)
	}
	if len(sum.BadList) != 1 || sum.BadList[0].Line != 777 {
		t.Fatalf("bad lines %+v (line 1000's blank line follows, so the numbers are file lines)", sum.BadList)
	}
	if got := h.msgCount(h.names.JobsStream()); got != lines-2 {
		t.Fatalf("%d jobs in the stream, want %d", got, lines-2)
	}

	// The typed lines went to their own subject, without their "type" field.
	if info, err := h.stream(h.names.JobsStream()).Info(h.ctx(), jetstream.WithSubjectFilter("push.jobs.p2t")); err != nil || info.State.Subjects["push.jobs.p2t"] != uint64(p2tLines) {
		t.Fatalf("p2t jobs: %v (%v), want %d", info.State.Subjects, err, p2tLines)
	}
	m := h.lastJob("push.jobs.p2t")
	if m.Header.Get("Nats-Msg-Id") != "job-2000" || strings.Contains(string(m.Data), `"type"`) {
		t.Fatalf("p2t job: %s %s", m.Header.Get("Nats-Msg-Id"), m.Data)
	}
	// Every job carries its Nats-Msg-Id as its request id, also the generated one.
	// (A work-queue stream takes no ordered consumer: read it message by message.)
	st := h.stream(h.names.JobsStream())
	generated := 0
	for seq := st.CachedInfo().State.FirstSeq; seq <= st.CachedInfo().State.LastSeq; seq++ {
		msg, err := st.GetMsg(h.ctx(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var job jobs.Job
		if err := json.Unmarshal(msg.Data, &job); err != nil || job.RequestID == "" || job.RequestID != msg.Header.Get("Nats-Msg-Id") {
			t.Fatalf("job %s with Nats-Msg-Id %q", msg.Data, msg.Header.Get("Nats-Msg-Id"))
		}
		if !strings.HasPrefix(job.RequestID, "job-") {
			generated++
		}
	}
	if generated != 1 {
		t.Fatalf("%d jobs with a generated request id, want 1", generated)
	}

	t.Run("human summary", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "two.ndjson")
		os.WriteFile(p, []byte(`{"type":"p2p","request_id":"h-1","payload":{"fromAccount":"a","toAccount":"u","msg":"m"}}`+"\n"+
			`{"type":"p2p","request_id":"h-2","payload":{"fromAccount":"a","msg":"m"}}`+"\n"), 0o600)
		code, out, _ := h.pushctl("send", "--file", p, "--quiet")
		if code != exitError || !strings.Contains(out, "2 lines: 1 accepted, 0 duplicate, 0 failed, 1 bad lines") ||
			!strings.Contains(out, "bad line 2: invalid p2p job: payload.toAccount is required") {
			t.Fatalf("exit %d, stdout %q", code, out)
		}
	})

	t.Run("missing type", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "untyped.ndjson")
		os.WriteFile(p, []byte(`{"request_id":"u-1","payload":{}}`+"\n"), 0o600)
		code, out, _ := h.pushctl("send", "--file", p, "--json")
		if code != exitError || !strings.Contains(out, "no job type") {
			t.Fatalf("exit %d, stdout %q", code, out)
		}
	})
}

func TestUnreachableNATS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	url := "nats://" + addr
	for _, args := range [][]string{
		{"status"},
		{"send", "p2p", "--from", "a", "--to", "b", "--msg", "m"},
		{"results"},
		{"dlq", "list"},
	} {
		var out, errs syncBuffer
		code := run(context.Background(), append([]string{"--server", url}, args...), &out, &errs)
		want := "pushctl: cannot reach NATS at " + url + ": "
		if code != exitError || !strings.HasPrefix(errs.String(), want) || strings.Count(errs.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q, want one line starting %q", args, code, errs.String(), want)
		}
	}
}

func TestMissingStreams(t *testing.T) {
	h := newHarness(t, false)
	for _, c := range []struct {
		args   []string
		stream string
	}{
		{[]string{"dlq", "list"}, "PUSH_DLQ"},
		{[]string{"dlq", "replay"}, "PUSH_DLQ"},
		{[]string{"results"}, "PUSH_RESULTS"},
		{[]string{"send", "p2p", "--from", "a", "--to", "b", "--msg", "m"}, "PUSH_JOBS"},
		{[]string{"status"}, "PUSH_JOBS"},
	} {
		code, _, errs := h.pushctl(c.args...)
		want := "pushctl: stream " + c.stream + " not found: is pushworker running with PUSH_MANAGE_STREAMS=true?\n"
		if code != exitError || !strings.HasPrefix(errs, want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errs, want)
		}
	}
}
