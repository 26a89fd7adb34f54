package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestInvalidJobsAreRejected sends bad input of every kind of §6: each gets a rejected
// result with the right error kind and a DLQ entry holding the original bytes, the upstream
// is never called, and the worker keeps running.
func TestInvalidJobsAreRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"PUSH_MAX_JOB_BYTES": "600"})
	w := e.start()
	res, dlq := e.results(), e.dlq()

	big := strings.Repeat("x", 700)
	cases := []struct {
		name, typ, data, kind string
		json                  bool // the data is JSON, so the DLQ entry has "job"
	}{
		{"not-json", "p2p", `{"request_id":"not-json", "payload":`, "invalid_job", false},
		{"not-json-binary", "p2p", "\x00\xff\xfe garbage", "invalid_job", false},
		{"json-array", "p2p", `["not","an","object"]`, "invalid_job", true},
		{"unknown-type", "sms", `{"request_id":"unknown-type","payload":{"to":"+1555"}}`, "unknown_type", true},
		{"no-payload", "p2p", `{"request_id":"no-payload"}`, "invalid_job", true},
		{"no-toAccount", "p2p", `{"request_id":"no-toAccount","payload":{"fromAccount":"a","msg":"m"}}`, "invalid_job", true},
		{"no-fromAccount", "p2t", `{"request_id":"no-fromAccount","payload":{"topicId":1,"msg":"m"}}`, "invalid_job", true},
		{"no-msg", "ucs", `{"request_id":"no-msg","payload":{"fromAccount":"a","topicId":1}}`, "invalid_job", true},
		{"empty-toAccounts", "p2p_more", `{"request_id":"empty-toAccounts","payload":{"fromAccount":"a","toAccounts":[],"msg":"m"}}`, "invalid_job", true},
		{"empty-messages", "ucs_multi_msg", `{"request_id":"empty-messages","payload":{"fromAccount":"a","topicId":1,"messages":[]}}`, "invalid_job", true},
		{"bad-topic-id", "p2t", `{"request_id":"bad-topic-id","payload":{"fromAccount":"a","topicId":"12x","msg":"m"}}`, "invalid_job", true},
		{"topic-id-overflow", "p2t", `{"request_id":"topic-id-overflow","payload":{"fromAccount":"a","topicId":92233720368547758070,"msg":"m"}}`, "invalid_job", true},
		{"bad-base64", "p2p", `{"request_id":"bad-base64","payload":{"fromAccount":"a","toAccount":"b","msg":"*not base64*","msgType":"base64"}}`, "invalid_job", true},
		{"bad-msgType", "p2p", `{"request_id":"bad-msgType","payload":{"fromAccount":"a","toAccount":"b","msg":"m","msgType":"hex"}}`, "invalid_job", true},
		{"bad-not-after", "p2p", `{"request_id":"bad-not-after","not_after":"tomorrow","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "invalid_job", true},
		{"bad-notify-audience", "notify", `{"request_id":"bad-notify-audience","payload":{"audience":{"tag":["a"],"alias":["b"]},"message":{"body":"b"}}}`, "invalid_job", true},
		{"bad-notify-image", "notify", `{"request_id":"bad-notify-image","payload":{"audience":"all","message":{"type":"image","body":"b","attachment_url":"http://x/y.gif"}}}`, "invalid_job", true},
		{"creds-appSecret", "p2p", `{"request_id":"creds-appSecret","payload":{"fromAccount":"a","toAccount":"b","msg":"m","appSecret":"s"}}`, "credentials_in_job", true},
		{"creds-appId", "p2t", `{"request_id":"creds-appId","payload":{"fromAccount":"a","topicId":1,"msg":"m","appId":1}}`, "credentials_in_job", true},
		{"creds-appKey", "ucs", `{"request_id":"creds-appKey","payload":{"fromAccount":"a","topicId":1,"message":"m","appKey":"k"}}`, "credentials_in_job", true},
		{"creds-access-token", "notify", `{"request_id":"creds-access-token","payload":{"audience":"all","message":{"body":"b"},"access-token":"t"}}`, "credentials_in_job", true},
		{"creds-access_token", "notify", `{"request_id":"creds-access_token","payload":{"audience":"all","message":{"body":"b"},"access_token":"t"}}`, "credentials_in_job", true},
		{"creds-token", "p2p", `{"request_id":"creds-token","payload":{"fromAccount":"a","toAccount":"b","msg":"m","token":"t"}}`, "credentials_in_job", true},
		{"too-large", "p2p", `{"request_id":"too-large","payload":{"fromAccount":"a","toAccount":"b","msg":"` + big + `"}}`, "too_large", true},
		{"reply-elsewhere", "p2p", `{"request_id":"reply-elsewhere","reply_subject":"orders.done","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "invalid_job", true},
		{"reply-wildcard", "p2p", `{"request_id":"reply-wildcard","reply_subject":"push.results.*","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "invalid_job", true},
		{"reply-gt", "p2p", `{"request_id":"reply-gt","reply_subject":"push.results.>","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "invalid_job", true},
		{"reply-empty-token", "p2p", `{"request_id":"reply-empty-token","reply_subject":"push.results..x","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "invalid_job", true},
		{"reply-space", "p2p", `{"request_id":"reply-space","reply_subject":"push.results.a b","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "invalid_job", true},
		{"reply-prefix-only", "p2p", `{"request_id":"reply-prefix-only","reply_subject":"push.results.","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "invalid_job", true},
		{"unknown-app", "p2p", `{"request_id":"unknown-app","app":"nosuch","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "unknown_app", true},
		{"unknown-app-notify", "notify", `{"request_id":"unknown-app-notify","app":"nosuch","payload":{"audience":"all","message":{"body":"b"}}}`, "unknown_app", true},
		{"request-id-too-long", "p2p", `{"request_id":"` + strings.Repeat("r", 129) + `","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "invalid_job", true},
		{"request-id-unprintable", "p2p", `{"request_id":"a\u0001b","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "invalid_job", true},
	}
	// Every job carries its case name as Nats-Msg-Id: where its data has no usable
	// request_id, the result's request id is the header (§3).
	seqs := map[string]uint64{}
	for _, c := range cases {
		seqs[c.name] = publish(t, e.js, "push.jobs."+c.typ, []byte(c.data), c.name)
	}
	// Without request_id and Nats-Msg-Id the request id is seq-<n>.
	anonSeq := publish(t, e.js, "push.jobs.p2p", []byte(`{"payload":{"fromAccount":"a"}}`), "")
	anonID := fmt.Sprintf("seq-%d", anonSeq)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := c.name
			if strings.HasPrefix(c.name, "request-id-") {
				id = "" // found by job_seq below
			}
			var r result
			if id != "" {
				r = res.waitResult(id, 15*time.Second)
			} else {
				eventually(t, 15*time.Second, "the result of job "+fmt.Sprint(seqs[c.name]), func() bool {
					for _, x := range res.results() {
						if x.JobSeq == seqs[c.name] {
							r = x
							return true
						}
					}
					return false
				})
			}
			checkResultShape(t, r)
			if r.Status != "rejected" || r.kind() != c.kind || r.JobSeq != seqs[c.name] || r.Attempts > 1 {
				t.Fatalf("result %s, want rejected with kind %s, job_seq %d", r, c.kind, seqs[c.name])
			}
			if r.Subject != "push.results."+c.typ {
				t.Fatalf("result on %s, want push.results.%s", r.Subject, c.typ)
			}
			var d dlqEntry
			eventually(t, 10*time.Second, "the DLQ entry of "+c.name, func() bool {
				for _, x := range dlq.dlq() {
					if x.Result.JobSeq == seqs[c.name] {
						d = x
						return true
					}
				}
				return false
			})
			if d.MsgSubject != "push.dlq."+c.typ || d.Subject != "push.jobs."+c.typ {
				t.Fatalf("DLQ entry on %s with subject %q, want push.dlq.%s / push.jobs.%s", d.MsgSubject, d.Subject, c.typ, c.typ)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(d.Raw, &raw); err != nil {
				t.Fatal(err)
			}
			var dataStr string
			if err := json.Unmarshal(raw["data"], &dataStr); err != nil {
				t.Fatalf("DLQ data is not a base64 string: %s", raw["data"])
			}
			if strings.HasPrefix(c.kind, "credentials") {
				// The credential may be redacted (README), but the rest is there.
				if !bytes.Contains(d.Data, []byte(`"request_id":"`+c.name+`"`)) {
					t.Fatalf("DLQ data %q does not hold the job", d.Data)
				}
			} else if !bytes.Equal(d.Data, []byte(c.data)) {
				t.Fatalf("DLQ data\n got %q\nwant %q", d.Data, c.data)
			}
			// A JSON array is JSON but no job; a job over the size limit need not be parsed.
			lenient := c.name == "json-array" || c.kind == "too_large"
			if !lenient && c.json != (len(d.Job) > 0 && string(d.Job) != "null") {
				t.Fatalf("DLQ job %s for data %q", d.Job, c.data)
			}
			if c.json && !lenient && !strings.HasPrefix(c.kind, "credentials") && !reflect.DeepEqual(decodeJSON(t, d.Job), decodeJSON(t, []byte(c.data))) {
				t.Fatalf("DLQ job\n got %s\nwant %s", d.Job, c.data)
			}
			if d.Result.Status != r.Status || d.Result.kind() != r.kind() || d.Result.RequestID != r.RequestID {
				t.Fatalf("DLQ result %s differs from the result %s", d.Result.Raw, r)
			}
		})
	}
	t.Run("seq-id", func(t *testing.T) {
		r := res.waitResult(anonID, 15*time.Second)
		if r.Status != "rejected" || r.kind() != "invalid_job" || r.JobSeq != anonSeq {
			t.Fatalf("result %s", r)
		}
	})

	if n := e.sb.Stats().Requests; n != 0 {
		t.Fatalf("the upstream was called %d times for invalid jobs", n)
	}
	// Every bad job was terminated: nothing stays in the work queue.
	eventually(t, 10*time.Second, "PUSH_JOBS empty", func() bool { return streamInfo(t, e.js, "PUSH_JOBS").State.Msgs == 0 })
	// The worker is still running and still delivering.
	if w.exited() {
		t.Fatalf("the worker exited with code %d", w.exitCode())
	}
	e.publish("push.jobs.p2p", p2pJob("after-bad"))
	if r := res.waitResult("after-bad", 15*time.Second); r.Status != "sent" {
		t.Fatalf("job after the bad ones: %s", r)
	}
	if code, body, _ := w.get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d: %s", code, body)
	}
	if strings.Contains(w.output(), "panic") {
		t.Fatalf("the worker panicked:\n%s", tail(w.output(), 4000))
	}
}

// TestRequestIDFromHeader: the Nats-Msg-Id header is the request id of a job without
// request_id, also for jobs that are not JSON.
func TestRequestIDFromHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start()
	res := e.results()
	ctx := t.Context()
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: "push.jobs.p2p", Data: []byte(`{"payload":{"fromAccount":"a","toAccount":"b","msg":"hdr"}}`),
		Header: nats.Header{nats.MsgIdHdr: []string{"from-header-1"}}}); err != nil {
		t.Fatal(err)
	}
	if r := res.waitResult("from-header-1", 15*time.Second); r.Status != "sent" {
		t.Fatalf("result %s", r)
	}
	// request_id in the data wins over the header.
	if _, err := e.js.Publish(ctx, "push.jobs.p2p", p2pJob("in-data-1"), jetstream.WithMsgID("header-2")); err != nil {
		t.Fatal(err)
	}
	if r := res.waitResult("in-data-1", 15*time.Second); r.Status != "sent" {
		t.Fatalf("result %s", r)
	}
	if n := len(res.resultsOf("header-2")); n != 0 {
		t.Fatalf("%d results under the header's id", n)
	}
}
