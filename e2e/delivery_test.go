package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/upstream/sandbox"
)

// decodeJSON decodes with numbers kept as their digits.
func decodeJSON(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return v
}

// mimcCreds is what the worker adds to a MIMC payload for the default app (§4).
const mimcCreds = `"appId":` + sandbox.DefaultMIMCAppID + `,"appKey":"` + sandbox.DefaultMIMCAppKey + `","appSecret":"` + sandbox.DefaultMIMCAppSecret + `"`

// TestHappyPathEveryType sends one job of each type through the binary and checks the
// result (§5) and the exact upstream request (§4), 64-bit topic ids included.
func TestHappyPathEveryType(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start()
	res := e.results()

	cases := []struct {
		typ, path, payload string
		// upstream is the body the sandbox must receive, credentials excluded.
		upstream string
		ids      int // 0: packet_id; n: n packet_ids
	}{
		{"p2p", "/api/push/p2p/",
			`{"fromAccount":"shop","fromResource":"srv1","toAccount":"u42","msg":"hp-p2p","isStore":true,"bizType":"order"}`,
			`{"fromAccount":"shop","fromResource":"srv1","toAccount":"u42","msg":"hp-p2p","isStore":true,"bizType":"order"}`, 0},
		{"p2p_more", "/api/push/p2p/more",
			`{"fromAccount":"shop","toAccounts":["u1","u2","u3"],"msg":"aHAtcDJwX21vcmU=","msgType":"base64"}`,
			`{"fromAccount":"shop","toAccounts":["u1","u2","u3"],"msg":"aHAtcDJwX21vcmU=","msgType":"base64"}`, 0},
		{"p2t", "/api/push/p2t/",
			`{"fromAccount":"shop","topicId":9223372036854775807,"msg":"hp-p2t","isStore":false}`,
			`{"fromAccount":"shop","topicId":9223372036854775807,"msg":"hp-p2t","isStore":false}`, 0},
		{"p2t_more", "/api/push/p2t/more",
			`{"fromAccount":"shop","topicIds":[9007199254740993,"9007199254740995"],"msg":"hp-p2t_more"}`,
			`{"fromAccount":"shop","topicIds":[9007199254740993,9007199254740995],"msg":"hp-p2t_more"}`, 0},
		{"ucs", "/api/push/ucs/singleMsgPush",
			`{"fromAccount":"shop","topicId":"9007199254740997","message":"hp-ucs","msgType":""}`,
			`{"fromAccount":"shop","topicId":9007199254740997,"message":"hp-ucs","msgType":""}`, 0},
		{"ucs_multi_msg", "/api/push/ucs/multiMsgPush",
			`{"fromAccount":"shop","topicId":1234567890123456789,"messages":["m1","m2","m3"]}`,
			`{"fromAccount":"shop","topicId":1234567890123456789,"messages":["m1","m2","m3"]}`, 1},
		{"ucs_multi_topic", "/api/push/ucs/multiTopicPush",
			`{"fromAccount":"shop","topicIds":[9007199254740999,"1152921504606846977"],"message":"hp-ucs_multi_topic"}`,
			`{"fromAccount":"shop","topicIds":[9007199254740999,1152921504606846977],"message":"hp-ucs_multi_topic"}`, 2},
	}
	seqs := map[string]uint64{}
	before := time.Now()
	for _, c := range cases {
		seqs[c.typ] = e.publish("push.jobs."+c.typ, []byte(`{"request_id":"hp-`+c.typ+`","payload":`+c.payload+`}`))
	}
	after := time.Now()
	packetIDs := map[string]string{}
	for _, c := range cases {
		t.Run(c.typ, func(t *testing.T) {
			id := "hp-" + c.typ
			r := res.waitResult(id, 15*time.Second)
			checkResultShape(t, r)
			if r.Subject != "push.results."+c.typ || r.Type != c.typ || r.App != "default" || r.Status != "sent" ||
				r.Attempts != 1 || r.Duplicate || r.Error != nil || r.JobSeq != seqs[c.typ] {
				t.Fatalf("result %s, want sent on push.results.%s, attempts 1, job_seq %d", r, c.typ, seqs[c.typ])
			}
			if r.Upstream == nil || r.Upstream.HTTPStatus != 200 || r.Upstream.Code != 200 {
				t.Fatalf("upstream answer in result: %s", r)
			}
			if r.EnqueuedAt.Before(before.Add(-time.Second)) || r.EnqueuedAt.After(after.Add(time.Second)) || r.CompletedAt.Before(r.EnqueuedAt) {
				t.Fatalf("enqueued_at %v / completed_at %v, published between %v and %v", r.EnqueuedAt, r.CompletedAt, before, after)
			}
			if c.ids == 0 {
				if r.PacketID == "" || len(r.PacketIDs) != 0 {
					t.Fatalf("want packet_id only: %s", r)
				}
				packetIDs[id] = r.PacketID
			} else {
				if len(r.PacketIDs) != c.ids || r.PacketID != "" {
					t.Fatalf("want %d packet_ids: %s", c.ids, r)
				}
				for _, p := range r.PacketIDs {
					if p == "" {
						t.Fatalf("empty packet id: %s", r)
					}
				}
				packetIDs[id] = strings.Join(r.PacketIDs, ",")
			}
			if len(r.FailTopicIDs) != 0 {
				t.Fatalf("fail_topic_ids without a failure: %s", r)
			}

			var got [][]byte
			for _, q := range e.sb.Requests() {
				if q.Path == c.path {
					if q.Method != "POST" || !strings.HasPrefix(q.Header.Get("Content-Type"), "application/json") {
						t.Fatalf("%s %s with Content-Type %q", q.Method, q.Path, q.Header.Get("Content-Type"))
					}
					got = append(got, q.Body)
				}
			}
			if len(got) != 1 {
				t.Fatalf("the sandbox saw %d requests on %s, want 1", len(got), c.path)
			}
			want := "{" + mimcCreds + "," + c.upstream[1:]
			if !reflect.DeepEqual(decodeJSON(t, got[0]), decodeJSON(t, []byte(want))) {
				t.Fatalf("upstream body\n got %s\nwant %s", got[0], want)
			}
		})
	}
	seen := map[string]string{}
	for id, p := range packetIDs {
		if other, ok := seen[p]; ok {
			t.Fatalf("%s and %s have the same packet id %s", id, other, p)
		}
		seen[p] = id
	}
}

// checkResultShape checks the fields and headers every result has (§5).
func checkResultShape(t testing.TB, r result) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.Raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"request_id", "type", "app", "status", "attempts", "duplicate", "job_seq", "enqueued_at", "completed_at"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("result without %q: %s", k, r)
		}
	}
	if r.Status == "sent" || r.Status == "partial" {
		if _, ok := m["upstream"]; !ok {
			t.Fatalf("accepted result without \"upstream\": %s", r)
		}
	}
	if (r.Status == "sent") != (r.Error == nil) {
		t.Fatalf("error must be present exactly when the status is not sent: %s", r)
	}
	if r.Error != nil && (r.Error.Kind == "" || r.Error.Detail == "") {
		t.Fatalf("error without kind or detail: %s", r)
	}
	if got := r.Header.Get("Push-Request-Id"); got != r.RequestID {
		t.Fatalf("Push-Request-Id %q, request_id %q", got, r.RequestID)
	}
	if got := r.Header.Get("Push-Status"); got != r.Status {
		t.Fatalf("Push-Status %q, status %q", got, r.Status)
	}
	for _, s := range []string{sandbox.DefaultMIMCAppKey, sandbox.DefaultMIMCAppSecret, sandbox.DefaultNotifyToken} {
		if bytes.Contains(r.Raw, []byte(s)) {
			t.Fatalf("result holds the credential %q: %s", s, r)
		}
	}
}

// TestNotifyHappyPath sends a notify job and checks the headers, the body with the
// worker's setting.request_id, and the task id in the result.
func TestNotifyHappyPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"PUSH_NOTIFY_STATS_INTERVAL": "0"})
	e.start()
	res := e.results()
	payload := `{"audience":{"alias":["a1","a2"]},"message":{"type":"text","title":"Hi","body":"hp-notify"}}`
	seq := e.publish("push.jobs.notify", []byte(`{"request_id":"hp-notify","payload":`+payload+`}`))
	r := res.waitResult("hp-notify", 15*time.Second)
	checkResultShape(t, r)
	if r.Status != "sent" || r.Type != "notify" || r.Subject != "push.results.notify" || r.JobSeq != seq || r.TaskID == nil || r.Attempts != 1 {
		t.Fatalf("result %s", r)
	}
	var calls int
	for _, q := range e.sb.Requests() {
		if q.Path != "/push/notify" {
			continue
		}
		calls++
		if q.Header.Get("access-token") != sandbox.DefaultNotifyToken || q.Header.Get("app_id") != sandbox.DefaultNotifyAppID {
			t.Fatalf("notify headers %v", q.Header)
		}
		want := `{"audience":{"alias":["a1","a2"]},"setting":{"request_id":"hp-notify"},"message":{"type":"text","title":"Hi","body":"hp-notify"}}`
		if !reflect.DeepEqual(decodeJSON(t, q.Body), decodeJSON(t, []byte(want))) {
			t.Fatalf("notify body\n got %s\nwant %s", q.Body, want)
		}
	}
	if calls != 1 {
		t.Fatalf("%d notify calls, want 1", calls)
	}
}

// TestMetricsAndHealth checks the admin endpoints (§7 PUSH_ADMIN_ADDR).
func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"PUSH_RATE_P2P": "250"})
	w := e.start()
	res := e.results()
	for _, p := range []string{"/healthz", "/readyz"} {
		eventually(t, 10*time.Second, p+" 200", func() bool { code, _, _ := w.get(p); return code == 200 })
	}
	for i := range 3 {
		e.publish("push.jobs.p2p", p2pJob(fmt.Sprint("metrics-", i)))
	}
	e.publish("push.jobs.p2p", []byte(`not json`))
	for i := range 3 {
		res.waitResult(fmt.Sprint("metrics-", i), 15*time.Second)
	}
	sent := regexp.MustCompile(`(?m)^pushworker_jobs_total\{[^}]*\} (\d+)`)
	eventually(t, 10*time.Second, "pushworker_jobs_total with 3 sent p2p jobs and 1 rejected", func() bool {
		code, body, err := w.get("/metrics")
		if err != nil || code != 200 {
			return false
		}
		var sentP2P, rejected bool
		for _, line := range strings.Split(body, "\n") {
			if !sent.MatchString(line) {
				continue
			}
			if strings.Contains(line, `status="sent"`) && strings.Contains(line, `type="p2p"`) && strings.HasSuffix(line, " 3") {
				sentP2P = true
			}
			if strings.Contains(line, `status="rejected"`) && strings.HasSuffix(line, " 1") {
				rejected = true
			}
		}
		return sentP2P && rejected
	})
	// The rate budget and its use, and the dead-letter stream, which the alerts of
	// deploy/components/monitoring read. The gauges are sampled every 5 s.
	want := []string{
		`pushworker_limiter_tokens_total{app="default",class="p2p"} 3`,
		`pushworker_limiter_rate{app="default",class="p2p"} 250`,
		`pushworker_limiter_rate{app="default",class="notify"} 100`,
		`pushworker_dlq_messages{type="p2p"} 1`,
		`pushworker_dlq_messages{type="notify"} 0`,
	}
	eventually(t, 10*time.Second, strings.Join(want, ", "), func() bool {
		_, body, err := w.get("/metrics")
		if err != nil {
			return false
		}
		lines := strings.Split(body, "\n")
		for _, s := range want {
			if !slices.Contains(lines, s) {
				return false
			}
		}
		return true
	})
	if code, body, _ := w.get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d: %s", code, body)
	}
	if code, _, _ := w.get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
}

// TestReadyzWhenAStreamIsMissing: /readyz fails (naming the stream) while a stream the
// worker needs is gone, and both health endpoints answer within 100 ms.
func TestReadyzWhenAStreamIsMissing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"PUSH_MANAGE_STREAMS": "true"})
	w := e.start()
	eventually(t, 10*time.Second, "/readyz 200", func() bool { code, _, _ := w.get("/readyz"); return code == 200 })
	for _, p := range []string{"/healthz", "/readyz"} {
		t0 := time.Now()
		if code, _, err := w.get(p); err != nil || code != 200 {
			t.Fatalf("%s: %d %v", p, code, err)
		}
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Fatalf("%s took %v", p, d)
		}
	}
	if err := e.js.DeleteStream(context.Background(), "PUSH_DLQ"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "/readyz 503 naming PUSH_DLQ", func() bool {
		code, body, _ := w.get("/readyz")
		return code == 503 && strings.Contains(body, "PUSH_DLQ")
	})
	t0 := time.Now()
	if code, _, _ := w.get("/readyz"); code != 503 || time.Since(t0) > 100*time.Millisecond {
		t.Fatalf("/readyz %d in %v", code, time.Since(t0))
	}
	if code, _, _ := w.get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d: a missing stream is not a reason to restart", code)
	}
}
