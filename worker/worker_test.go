package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/limiter"
	"github.com/pushworker/pushworker/worker"
)

func TestSendP2PRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	seq := e.publish("p2p", p2pJob("order-1"))
	res, m := e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || res.RequestID != "order-1" || res.Type != "p2p" || res.App != "default" {
		t.Fatalf("result = %+v", res)
	}
	if res.PacketID == "" || res.Attempts != 1 || res.Duplicate || res.JobSeq != seq {
		t.Fatalf("result = %+v", res)
	}
	if res.Upstream == nil || res.Upstream.HTTPStatus != 200 || res.Upstream.Code != 200 || res.Upstream.Message != "success" {
		t.Fatalf("upstream = %+v", res.Upstream)
	}
	if m.Subject != "push.results.p2p" || m.Header.Get("Push-Request-Id") != "order-1" || m.Header.Get("Push-Status") != "sent" {
		t.Fatalf("subject %s headers %v", m.Subject, m.Header)
	}
	if res.EnqueuedAt.IsZero() || res.CompletedAt.Before(res.EnqueuedAt) {
		t.Fatalf("times %v %v", res.EnqueuedAt, res.CompletedAt)
	}
	reqs := e.up.requests()
	if len(reqs) != 1 || reqs[0].Path != "/api/push/p2p/" || reqs[0].Header.Get("Content-Type") != "application/json" {
		t.Fatalf("requests = %+v", reqs)
	}
	var body map[string]any
	dec := json.NewDecoder(strings.NewReader(string(reqs[0].Body)))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body["appId"] != json.Number(testAppID) || body["appKey"] != testKey || body["appSecret"] != testSecret ||
		body["fromAccount"] != "shop" || body["toAccount"] != "u42" || body["msg"] != "hello" {
		t.Fatalf("upstream body = %s", reqs[0].Body)
	}
	if strings.Contains(string(m.Data), testKey) || strings.Contains(e.logs.String(), testKey) || strings.Contains(e.logs.String(), testSecret) {
		t.Fatal("a secret leaked into a result or the logs")
	}
}

func TestEveryMIMCTypeAndTopicIDs(t *testing.T) {
	e := newEnv(t, nil)
	big := "9223372036854775807"
	cases := []struct {
		typ, path string
		payload   string
		wantBody  []string
	}{
		{"p2p_more", "/api/push/p2p/more", `{"fromAccount":"a","toAccounts":["b","c"],"msg":"aGk=","msgType":"base64","isStore":false,"bizType":"x"}`,
			[]string{`"toAccounts":["b","c"]`, `"msgType":"base64"`, `"isStore":false`, `"bizType":"x"`}},
		{"p2t", "/api/push/p2t/", `{"fromAccount":"a","topicId":"` + big + `","msg":"m"}`, []string{`"topicId":` + big}},
		{"p2t_more", "/api/push/p2t/more", `{"fromAccount":"a","topicIds":[` + big + `,"12"],"msg":"m"}`, []string{`"topicIds":[` + big + `,12]`}},
		{"ucs", "/api/push/ucs/singleMsgPush", `{"fromAccount":"a","topicId":123456789012345678,"message":"m","fromResource":"r"}`,
			[]string{`"topicId":123456789012345678`, `"fromResource":"r"`}},
		{"ucs_multi_msg", "/api/push/ucs/multiMsgPush", `{"fromAccount":"a","topicId":5,"messages":["x","y"]}`, []string{`"messages":["x","y"]`}},
		{"ucs_multi_topic", "/api/push/ucs/multiTopicPush", `{"fromAccount":"a","topicIds":["7","8"],"message":"m"}`, []string{`"topicIds":[7,8]`}},
	}
	for i, c := range cases {
		e.up.setAnswer(nil)
		if c.typ == "ucs_multi_msg" {
			e.up.setAnswer(func(recorded) (int, string) {
				return 200, `{"code":200,"message":"success","data":{"packetIds":["p1"]}}`
			})
		}
		if c.typ == "ucs_multi_topic" {
			e.up.setAnswer(func(recorded) (int, string) {
				return 200, `{"code":200,"message":"success","data":{"succPacketIds":["p7"],"failTopicIds":[8]}}`
			})
		}
		e.publish(c.typ, fmt.Sprintf(`{"request_id":"t-%d","payload":%s}`, i, c.payload))
		res, _ := e.result(10 * time.Second)
		reqs := e.up.requests()
		last := reqs[len(reqs)-1]
		if last.Path != c.path {
			t.Fatalf("%s: path %s", c.typ, last.Path)
		}
		for _, w := range c.wantBody {
			if !strings.Contains(string(last.Body), w) {
				t.Fatalf("%s: body %s lacks %s", c.typ, last.Body, w)
			}
		}
		switch c.typ {
		case "ucs_multi_msg":
			if res.Status != jobs.StatusSent || len(res.PacketIDs) != 1 || res.PacketIDs[0] != "p1" {
				t.Fatalf("%s: %+v", c.typ, res)
			}
		case "ucs_multi_topic":
			if res.Status != jobs.StatusPartial || res.PacketIDs[0] != "p7" || res.FailTopicIDs[0] != "8" || res.Error == nil {
				t.Fatalf("%s: %+v", c.typ, res)
			}
		default:
			if res.Status != jobs.StatusSent || res.PacketID == "" {
				t.Fatalf("%s: %+v", c.typ, res)
			}
		}
	}
}

func TestBadInputIsRejectedWithDLQ(t *testing.T) {
	e := newEnv(t, map[string]string{"PUSH_MAX_JOB_BYTES": "2000"})
	big := `{"payload":{"fromAccount":"a","toAccount":"b","msg":"` + strings.Repeat("x", 3000) + `"}}`
	cases := []struct {
		name, typ, data string
		kind            jobs.ErrorKind
		detail          string
		subject         string
	}{
		{"not json", "p2p", `{not json`, jobs.KindInvalidJob, "JSON", ""},
		{"unknown type", "sms", `{"request_id":"u1","payload":{}}`, jobs.KindUnknownType, "sms", ""},
		{"missing payload", "p2p", `{"request_id":"m1"}`, jobs.KindInvalidJob, "payload", ""},
		{"missing toAccount", "p2p", `{"payload":{"fromAccount":"a","msg":"m"}}`, jobs.KindInvalidJob, "payload.toAccount", ""},
		{"empty toAccounts", "p2p_more", `{"payload":{"fromAccount":"a","toAccounts":[],"msg":"m"}}`, jobs.KindInvalidJob, "payload.toAccounts", ""},
		{"bad base64", "p2p", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"!!","msgType":"base64"}}`, jobs.KindInvalidJob, "base64", ""},
		{"bad msgType", "p2p", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"m","msgType":"hex"}}`, jobs.KindInvalidJob, "msgType", ""},
		{"float topic", "p2t", `{"payload":{"fromAccount":"a","topicId":1.5,"msg":"m"}}`, jobs.KindInvalidJob, "payload.topicId", ""},
		{"credentials", "p2p", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"m","appKey":"leaked-key-999"}}`, jobs.KindCredentialsInJob, "appKey", ""},
		{"too large", "p2p", big, jobs.KindTooLarge, "limit", ""},
		{"bad reply subject", "p2p", `{"reply_subject":"other.subject","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, jobs.KindInvalidJob, "reply_subject", ""},
		{"wildcard reply subject", "p2p", `{"reply_subject":"push.results.*","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, jobs.KindInvalidJob, "reply_subject", ""},
		{"unknown app", "p2p", `{"app":"nope","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, jobs.KindUnknownApp, "nope", ""},
		{"notify not configured", "notify", `{"payload":{"audience":"all","message":{"title":"t","body":"b"}}}`, jobs.KindUnknownApp, "PUSH_NOTIFY_URL", ""},
		{"bad not_after", "p2p", `{"not_after":"tomorrow","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, jobs.KindInvalidJob, "not_after", ""},
		{"long request id", "p2p", `{"request_id":"` + strings.Repeat("r", 129) + `","payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, jobs.KindInvalidJob, "request_id", ""},
		{"nested credentials", "notify", `{"payload":{"audience":"all","setting":{"access_token":"leaked-key-999"},"message":{"title":"t","body":"b"}}}`, jobs.KindCredentialsInJob, "payload.setting.access_token", ""},
		{"unknown field keeps the ids", "p2p", `{"request_id":"kept-1","reply_subject":"push.results.kept","priority":1,"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, jobs.KindInvalidJob, "priority", "push.results.kept"},
	}
	for _, c := range cases {
		seq := e.publish(c.typ, c.data)
		res, m := e.result(10 * time.Second)
		if res.Status != jobs.StatusRejected || res.Error == nil || res.Error.Kind != c.kind || !strings.Contains(res.Error.Detail, c.detail) {
			t.Fatalf("%s: result = %+v error %+v", c.name, res, res.Error)
		}
		if res.JobSeq != seq || m.Header.Get("Push-Status") != "rejected" || res.Attempts != 0 {
			t.Fatalf("%s: seq %d headers %v attempts %d", c.name, res.JobSeq, m.Header, res.Attempts)
		}
		if c.subject == "" && m.Subject != "push.results."+c.typ {
			t.Fatalf("%s: subject %s", c.name, m.Subject)
		}
		if c.subject != "" && (m.Subject != c.subject || res.RequestID != "kept-1" || m.Header.Get("Push-Request-Id") != "kept-1") {
			t.Fatalf("%s: request id %q on %s, want kept-1 on %s", c.name, res.RequestID, m.Subject, c.subject)
		}
	}
	if n := len(e.up.requests()); n != 0 {
		t.Fatalf("upstream called %d times for invalid jobs", n)
	}
	dl := e.dlq()
	if len(dl) != len(cases) {
		t.Fatalf("DLQ has %d entries, want %d", len(dl), len(cases))
	}
	for i, d := range dl {
		c := cases[i]
		if d.Subject != "push.jobs."+c.typ || d.Result.Status != jobs.StatusRejected || d.Result.Error.Kind != c.kind {
			t.Fatalf("DLQ %d: %+v", i, d)
		}
		if c.kind != jobs.KindCredentialsInJob && string(d.Data) != c.data {
			t.Fatalf("DLQ %d data = %q", i, d.Data)
		}
		if c.kind == jobs.KindCredentialsInJob && (strings.Contains(string(d.Data), "leaked-key-999") || strings.Contains(string(d.Job), "leaked-key-999")) {
			t.Fatalf("credential kept in DLQ: %s", d.Data)
		}
	}
	// The stream holds nothing any more: every bad job was taken off.
	waitFor(t, 5*time.Second, "empty jobs stream", func() bool {
		s, err := e.js.Stream(t.Context(), "PUSH_JOBS")
		return err == nil && s.CachedInfo().State.Msgs == 0 || func() bool {
			i, err := s.Info(t.Context())
			return err == nil && i.State.Msgs == 0
		}()
	})
}

func TestRetriesThenSent(t *testing.T) {
	e := newEnv(t, nil)
	calls := 0
	e.up.setAnswer(func(recorded) (int, string) {
		calls++
		switch calls {
		case 1:
			return 503, `{"code":503,"message":"busy"}`
		case 2:
			return 200, `{"code":500,"message":"internal"}`
		}
		return 200, ""
	})
	e.publish("p2p", p2pJob("retry-1"))
	res, _ := e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || res.Attempts != 3 {
		t.Fatalf("result = %+v", res)
	}
}

func TestRetriesExhaustedFail(t *testing.T) {
	e := newEnv(t, nil)
	e.up.setAnswer(func(recorded) (int, string) { return 502, "bad gateway" })
	e.publish("p2p", p2pJob("fail-1"))
	res, m := e.result(10 * time.Second)
	if res.Status != jobs.StatusFailed || res.Attempts != 3 || res.Error.Kind != jobs.KindUpstreamUnavailable || res.Upstream.HTTPStatus != 502 {
		t.Fatalf("result = %+v %+v", res, res.Error)
	}
	if m.Header.Get("Push-Status") != "failed" || len(e.up.requests()) != 3 {
		t.Fatalf("headers %v, %d calls", m.Header, len(e.up.requests()))
	}
	if dl := e.dlq(); len(dl) != 1 || dl[0].Result.Status != jobs.StatusFailed {
		t.Fatalf("dlq = %+v", dl)
	}
	// A failed job leaves no record: the same request id is processed afresh.
	e.up.setAnswer(nil)
	e.publish("p2p", p2pJob("fail-1"))
	res, _ = e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || res.Duplicate {
		t.Fatalf("resend after failure = %+v", res)
	}
}

// TestRetriesOutliveAShortDedupTTL: with PUSH_DEDUP_TTL shorter than the retry wait, the
// attempt count (kept in the dedup record) would expire between attempts and the job would
// retry for ever; the wait is capped at half the TTL instead.
func TestRetriesOutliveAShortDedupTTL(t *testing.T) {
	e := newEnv(t, map[string]string{"PUSH_DEDUP_TTL": "2s", "PUSH_RETRY_INITIAL": "3s", "PUSH_RETRY_MAX": "3s"})
	e.up.setAnswer(func(recorded) (int, string) { return 500, `{"code":500,"message":"boom"}` })
	e.publish("p2p", p2pJob("short-ttl-1"))
	res, _ := e.result(15 * time.Second)
	if res.Status != jobs.StatusFailed || res.Attempts != 3 || len(e.up.requests()) != 3 {
		t.Fatalf("result = %+v %+v, %d calls", res, res.Error, len(e.up.requests()))
	}
}

func TestPermanentRejection(t *testing.T) {
	e := newEnv(t, nil)
	e.up.setAnswer(func(recorded) (int, string) { return 400, `{"code":400,"message":"toAccount invalid"}` })
	e.publish("p2p", p2pJob("perm-1"))
	res, _ := e.result(10 * time.Second)
	if res.Status != jobs.StatusRejected || res.Error.Kind != jobs.KindUpstreamRejected || res.Attempts != 1 || len(e.up.requests()) != 1 {
		t.Fatalf("result = %+v", res)
	}
	if !strings.Contains(res.Error.Detail, "toAccount invalid") {
		t.Fatalf("detail = %q", res.Error.Detail)
	}
}

func TestDuplicateRequestID(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("p2p", p2pJob("dup-1"))
	first, _ := e.result(10 * time.Second)
	job := p2pJob("dup-1")
	job["reply_subject"] = "push.results.mine"
	seq := e.publish("p2p", job)
	second, m := e.result(10 * time.Second)
	if !second.Duplicate || second.PacketID != first.PacketID || second.JobSeq != seq || m.Subject != "push.results.mine" {
		t.Fatalf("second = %+v on %s", second, m.Subject)
	}
	// Request id from Nats-Msg-Id when the job has none; from the sequence otherwise.
	e.publish("p2p", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "Nats-Msg-Id", "hdr-7")
	r3, _ := e.result(10 * time.Second)
	s4 := e.publish("p2p", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`)
	r4, _ := e.result(10 * time.Second)
	if r3.RequestID != "hdr-7" || r4.RequestID != fmt.Sprintf("seq-%d", s4) {
		t.Fatalf("request ids %q %q", r3.RequestID, r4.RequestID)
	}
	// A replayed job (pushctl dlq replay) carries its id in Push-Request-Id.
	e.publish("p2p", `{"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}}`, "Push-Request-Id", "hdr-7")
	if r5, _ := e.result(10 * time.Second); r5.RequestID != "hdr-7" || !r5.Duplicate {
		t.Fatalf("Push-Request-Id header: %+v", r5)
	}
	if n := len(e.up.requests()); n != 3 {
		t.Fatalf("upstream called %d times, want 3", n)
	}
}

func TestExpiredAndReplySubject(t *testing.T) {
	e := newEnv(t, nil)
	job := p2pJob("exp-1")
	job["not_after"] = time.Now().Add(-time.Minute).Format(time.RFC3339)
	e.publish("p2p", job)
	res, m := e.result(10 * time.Second)
	if res.Status != jobs.StatusExpired || res.Error.Kind != jobs.KindExpired || m.Header.Get("Push-Status") != "expired" {
		t.Fatalf("result = %+v", res)
	}
	job = p2pJob("rs-1")
	job["reply_subject"] = "push.results.team.orders"
	job["not_after"] = time.Now().Add(time.Hour).Format(time.RFC3339)
	e.publish("p2p", job)
	res, m = e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || m.Subject != "push.results.team.orders" {
		t.Fatalf("result %+v on %s", res, m.Subject)
	}
	if n := len(e.up.requests()); n != 1 {
		t.Fatalf("upstream called %d times", n)
	}
	if len(e.dlq()) != 0 {
		t.Fatal("expired jobs must not go to the DLQ")
	}
	// An expired job leaves no record either.
	e.publish("p2p", p2pJob("exp-1"))
	if res, _ := e.result(10 * time.Second); res.Status != jobs.StatusSent || res.Duplicate {
		t.Fatalf("after expiry: %+v", res)
	}
}

// TestExpiresAfterAFailedAttempt: a job whose not_after passes while it waits for a retry
// reports the attempts it made and the upstream's last answer.
func TestExpiresAfterAFailedAttempt(t *testing.T) {
	e := newEnv(t, map[string]string{"PUSH_RETRY_INITIAL": "1500ms", "PUSH_RETRY_MAX": "1500ms"})
	e.up.setAnswer(func(recorded) (int, string) { return 500, `{"code":500,"message":"boom"}` })
	job := p2pJob("exp-after-1")
	job["not_after"] = time.Now().Add(700 * time.Millisecond).Format(time.RFC3339Nano)
	e.publish("p2p", job)
	res, _ := e.result(10 * time.Second)
	if res.Status != jobs.StatusExpired || res.Error.Kind != jobs.KindExpired || res.Attempts != 1 || len(e.up.requests()) != 1 {
		t.Fatalf("result = %+v %+v, %d calls", res, res.Error, len(e.up.requests()))
	}
	if res.Upstream == nil || res.Upstream.HTTPStatus != 500 || res.Upstream.Message != "boom" {
		t.Fatalf("upstream = %+v", res.Upstream)
	}
}

// TestMultiTopicAllFailedKeepsFailTopicIDs: a ucs_multi_topic push that no topic took is
// rejected, and the result still lists the failed topics.
func TestMultiTopicAllFailedKeepsFailTopicIDs(t *testing.T) {
	e := newEnv(t, nil)
	e.up.setAnswer(func(recorded) (int, string) {
		return 200, `{"code":200,"message":"success","data":{"succPacketIds":[],"failTopicIds":[9223372036854775807,12]}}`
	})
	e.publish("ucs_multi_topic", `{"request_id":"mt-1","payload":{"fromAccount":"a","topicIds":["9223372036854775807",12],"message":"m"}}`)
	res, _ := e.result(10 * time.Second)
	if res.Status != jobs.StatusRejected || res.Error.Kind != jobs.KindUpstreamRejected || strings.Join(res.FailTopicIDs, ",") != "9223372036854775807,12" {
		t.Fatalf("result = %+v %+v", res, res.Error)
	}
	if dl := e.dlq(); len(dl) != 1 || strings.Join(dl[0].Result.FailTopicIDs, ",") != "9223372036854775807,12" {
		t.Fatalf("dlq = %+v", dl)
	}
}

func TestConfigurationErrorPausesWithoutUsingAttempts(t *testing.T) {
	e := newEnv(t, nil)
	e.up.setAnswer(func(recorded) (int, string) { return 401, `{"code":401,"message":"bad appSecret"}` })
	e.publish("p2p", p2pJob("cfg-1"))
	e.noResult(1500 * time.Millisecond)
	probes := len(e.up.requests())
	if probes < 2 {
		t.Fatalf("expected repeated probes while paused, got %d", probes)
	}
	if !strings.Contains(e.logs.String(), `"app":"default"`) || !strings.Contains(e.logs.String(), "configuration is wrong") {
		t.Fatalf("no error log naming the app: %s", e.logs.String())
	}
	e.up.setAnswer(nil) // configuration fixed
	res, _ := e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || res.Attempts != 1 {
		t.Fatalf("after fix: %+v (probes must not use attempts; max is 3)", res)
	}
}

func TestBreakerDelaysInsteadOfFailing(t *testing.T) {
	e := newEnv(t, map[string]string{"PUSH_MAX_ATTEMPTS": "8"})
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	down := true
	e.up.setAnswer(func(recorded) (int, string) {
		<-mu
		defer func() { mu <- struct{}{} }()
		if down {
			return 500, ""
		}
		return 200, ""
	})
	for i := range 10 {
		e.publish("p2p", p2pJob(fmt.Sprintf("brk-%d", i)))
	}
	time.Sleep(1500 * time.Millisecond)
	<-mu
	down = false
	calls := len(e.up.requests())
	mu <- struct{}{}
	// 10 jobs × 8 attempts would be 80 calls without a breaker; with it, far fewer.
	if calls >= 40 {
		t.Fatalf("breaker did not hold back calls: %d", calls)
	}
	for range 10 {
		res, _ := e.result(15 * time.Second)
		if res.Status != jobs.StatusSent {
			t.Fatalf("result = %+v", res)
		}
	}
}

// slowLimit makes every job wait d for budget.
type slowLimit struct{ d time.Duration }

func (s slowLimit) Wait(ctx context.Context, _, _ string, _ int, hb func()) error {
	select {
	case <-time.After(s.d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (slowLimit) Penalize(string, string, time.Duration)           {}
func (slowLimit) Throttled(string, string) bool                    { return false }
func (slowLimit) Admit(context.Context, string, string, int) error { return nil }

func TestExpiresWhileWaitingForBudget(t *testing.T) {
	e := newEnv(t, nil)
	e.stopWorker()
	e.startWorker(slowLimit{d: 600 * time.Millisecond})
	job := p2pJob("late-1")
	job["not_after"] = time.Now().Add(300 * time.Millisecond).Format(time.RFC3339Nano)
	e.publish("p2p", job)
	res, _ := e.result(10 * time.Second)
	if res.Status != jobs.StatusExpired || len(e.up.requests()) != 0 {
		t.Fatalf("result %+v after %d calls", res, len(e.up.requests()))
	}
}

// TestBacklogOfOneTypeDoesNotDelayAnother: behind a backlog of p2p jobs at 20 per second, a
// p2t job (another class) goes at once and a p2p_more job (the same class, so the same
// budget) within about a quarter second of budget and its turn — not after the backlog, as
// when one consumer took every type of the class.
func TestBacklogOfOneTypeDoesNotDelayAnother(t *testing.T) {
	e := newEnv(t, map[string]string{"PUSH_RATE_P2P": "20"})
	e.stopWorker()
	c := e.cfg
	e.startWorker(limiter.New(limiter.Options{Rate: func(app, class string) float64 { return c.Apps[app].Rate(class) }}))
	const backlog = 60 // 3 s at 20/s
	for i := range backlog {
		e.publish("p2p", p2pJob(fmt.Sprintf("bl-%d", i)))
	}
	e.result(10 * time.Second) // the backlog is being sent
	start := time.Now()
	e.publish("p2p_more", `{"request_id":"more-1","payload":{"fromAccount":"a","toAccounts":["b"],"msg":"m"}}`)
	e.publish("p2t", `{"request_id":"p2t-1","payload":{"fromAccount":"a","topicId":5,"msg":"m"}}`)
	took := map[string]time.Duration{}
	p2pAfter := 0
	for len(took) < 2 {
		res, _ := e.result(10 * time.Second)
		switch res.RequestID {
		case "more-1", "p2t-1":
			took[res.RequestID] = time.Since(start)
		default:
			if _, ok := took["more-1"]; !ok {
				p2pAfter++
			}
		}
	}
	t.Logf("p2t after %v, p2p_more after %v (%d p2p results before it)", took["p2t-1"], took["more-1"], p2pAfter)
	if took["p2t-1"] > 500*time.Millisecond {
		t.Errorf("the p2t job took %v behind a p2p backlog", took["p2t-1"])
	}
	if took["more-1"] > 1500*time.Millisecond || p2pAfter > 30 {
		t.Errorf("the p2p_more job took %v, after %d of the %d backlogged p2p jobs", took["more-1"], p2pAfter, backlog-1)
	}
}

// TestUpgradeFromClassConsumers: a stream still holding the consumers of earlier versions,
// one per rate class with a filter for each type of the class, is taken over: the class
// consumers are narrowed to their type, the other types get their own, and a job waiting
// under the old consumers is delivered.
func TestUpgradeFromClassConsumers(t *testing.T) {
	e := newEnv(t, nil)
	e.stopWorker()
	ctx := t.Context()
	st, err := e.js.Stream(ctx, "PUSH_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	for name := range st.ListConsumers(ctx).Info() {
		if err := st.DeleteConsumer(ctx, name.Name); err != nil {
			t.Fatal(err)
		}
	}
	old := map[string][]string{
		"p2p": {"push.jobs.p2p", "push.jobs.p2p_more"}, "p2t": {"push.jobs.p2t", "push.jobs.p2t_more"},
		"ucs": {"push.jobs.ucs", "push.jobs.ucs_multi_msg", "push.jobs.ucs_multi_topic"}, "notify": {"push.jobs.notify"},
	}
	for class, subjects := range old {
		cc := jetstream.ConsumerConfig{Durable: "pushworker-" + class, AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: subjects}
		if len(subjects) == 1 {
			cc.FilterSubject, cc.FilterSubjects = subjects[0], nil
		}
		if _, err := st.CreateConsumer(ctx, cc); err != nil {
			t.Fatal(err)
		}
	}
	e.publish("p2p_more", `{"request_id":"up-1","payload":{"fromAccount":"a","toAccounts":["b"],"msg":"m"}}`)
	e.startWorker(noLimit{})
	if res, _ := e.result(10 * time.Second); res.RequestID != "up-1" || res.Status != jobs.StatusSent {
		t.Fatalf("result %+v", res)
	}
	for _, s := range jobs.Specs() {
		var c jetstream.Consumer
		waitFor(t, 5*time.Second, "the consumer of "+string(s.Type), func() bool {
			c, err = st.Consumer(ctx, "pushworker-"+string(s.Type))
			return err == nil
		})
		if f := c.CachedInfo().Config; f.FilterSubject != "push.jobs."+string(s.Type) || len(f.FilterSubjects) > 0 {
			t.Errorf("consumer of %s filters %q %v", s.Type, f.FilterSubject, f.FilterSubjects)
		}
	}
}

// TestLargeRejectedJobGetsItsResult: a job too big to fit twice into one DLQ message (the
// entry holds its bytes as data and as job) is still finished at once — rejected by the
// upstream, its result published, its DLQ entry written without the copy that does not fit
// — instead of retrying the DLQ write and calling the upstream again.
func TestLargeRejectedJobGetsItsResult(t *testing.T) {
	natsMaxPayload = 1 << 20
	defer func() { natsMaxPayload = 8 << 20 }()
	e := newEnv(t, map[string]string{"PUSH_MAX_JOB_BYTES": "1000000"})
	e.up.setAnswer(func(recorded) (int, string) { return 400, `{"code":400,"message":"msg too long"}` })
	for i, size := range []int{600 << 10, 900 << 10} {
		id := fmt.Sprintf("big-%d", i)
		e.publish("p2p", `{"request_id":"`+id+`","payload":{"fromAccount":"a","toAccount":"b","msg":"`+strings.Repeat("x", size)+`"}}`)
		res, _ := e.result(10 * time.Second)
		if res.RequestID != id || res.Status != jobs.StatusRejected || res.Error.Kind != jobs.KindUpstreamRejected {
			t.Fatalf("%s: result %+v %+v", id, res, res.Error)
		}
	}
	if n := len(e.up.requests()); n != 2 {
		t.Fatalf("upstream called %d times, want 2", n)
	}
	dl := e.dlq()
	if len(dl) != 2 {
		t.Fatalf("DLQ has %d entries", len(dl))
	}
	if d := dl[0]; len(d.Data) < 600<<10 || d.Job != nil || !strings.HasPrefix(d.Omitted, "job:") {
		t.Errorf("600 KiB job: DLQ data %d bytes, job %d bytes, omitted %q", len(d.Data), len(d.Job), d.Omitted)
	}
	if d := dl[1]; d.Data != nil || d.Job != nil || !strings.HasPrefix(d.Omitted, "job and data:") || d.Result.RequestID != "big-1" {
		t.Errorf("900 KiB job: DLQ data %d bytes, job %d bytes, omitted %q", len(d.Data), len(d.Job), d.Omitted)
	}
}

// TestWeightedBacklogSharesTheClass: a backlog of heavy p2p_more jobs and light p2p jobs at
// 50 tokens per second runs at the rate (the heavy jobs used to cost twice their weight),
// and the light type goes from the start instead of waiting behind the heavy one.
func TestWeightedBacklogSharesTheClass(t *testing.T) {
	e := newEnv(t, map[string]string{"PUSH_RATE_P2P": "50"})
	e.stopWorker()
	c := e.cfg
	lim := limiter.New(limiter.Options{Rate: func(app, class string) float64 { return c.Apps[app].Rate(class) }})
	const heavies, weight, lights = 10, 10, 100 // 200 tokens: 4 s
	accounts := `"a0","a1","a2","a3","a4","a5","a6","a7","a8","a9"`
	for i := range heavies {
		e.publish("p2p_more", fmt.Sprintf(`{"request_id":"h-%d","payload":{"fromAccount":"a","toAccounts":[%s],"msg":"m"}}`, i, accounts))
	}
	for i := range lights {
		e.publish("p2p", p2pJob(fmt.Sprintf("l-%d", i)))
	}
	start := time.Now()
	e.startWorker(lim)
	lightsEarly := 0
	for range heavies + lights {
		res, _ := e.result(15 * time.Second)
		if res.Status != jobs.StatusSent {
			t.Fatalf("result %+v", res)
		}
		if res.Type == "p2p" && time.Since(start) < 2*time.Second {
			lightsEarly++
		}
	}
	took := time.Since(start)
	t.Logf("200 tokens in %v (%.0f/s); %d light jobs in the first 2 s", took, 200/took.Seconds(), lightsEarly)
	if took > 5500*time.Millisecond {
		t.Errorf("200 tokens at 50/s took %v", took)
	}
	if lightsEarly < 3 {
		t.Errorf("only %d light jobs went in the first 2 s, behind the heavy backlog", lightsEarly)
	}
}

// TestConsumerSetupIsRetried: a consumer the worker cannot set up at first (here another
// consumer holds its subject; in production a restarting server or a leader election answers
// with timeouts) is retried instead of stopping the worker.
func TestConsumerSetupIsRetried(t *testing.T) {
	e := newEnv(t, nil)
	e.stopWorker()
	ctx := t.Context()
	st, err := e.js.Stream(ctx, "PUSH_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteConsumer(ctx, "pushworker-p2p_more"); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatal(err)
	}
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "squatter", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "push.jobs.p2p_more"}); err != nil {
		t.Fatal(err)
	}
	e.startWorker(noLimit{})
	time.Sleep(500 * time.Millisecond) // the worker's first attempts fail
	if err := st.DeleteConsumer(ctx, "squatter"); err != nil {
		t.Fatal(err)
	}
	e.publish("p2p_more", `{"request_id":"retried-1","payload":{"fromAccount":"a","toAccounts":["b"],"msg":"m"}}`)
	if res, _ := e.result(10 * time.Second); res.RequestID != "retried-1" || res.Status != jobs.StatusSent {
		t.Fatalf("result %+v", res)
	}
}

// TestThrottledJobsBatchTheirWrites: jobs held by the rate send their NATS writes (claim,
// record and result, ack) in outbox batches, several jobs' at a time, and every job still
// gets exactly one result, copies their stored one; an unthrottled class does not use the
// outbox.
func TestThrottledJobsBatchTheirWrites(t *testing.T) {
	e := newEnv(t, map[string]string{"PUSH_RATE_P2P": "200"})
	e.stopWorker()
	c := e.cfg
	reg := prometheus.NewRegistry()
	e.startWorker(limiter.New(limiter.Options{Rate: func(app, class string) float64 { return c.Apps[app].Rate(class) }}),
		func(o *worker.Options) { o.Metrics = worker.NewMetrics(reg) })
	outbox := func() (batches, writes float64) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "pushworker_outbox_batches_total":
				batches = mf.GetMetric()[0].GetCounter().GetValue()
			case "pushworker_outbox_writes_total":
				writes = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return batches, writes
	}
	// Unthrottled: p2t has no backlog, its job writes at once.
	e.publish("p2t", `{"request_id":"alone","payload":{"fromAccount":"a","topicId":5,"msg":"m"}}`)
	if res, _ := e.result(10 * time.Second); res.Status != jobs.StatusSent {
		t.Fatalf("p2t job: %+v", res)
	}
	if b, n := outbox(); b != 0 || n != 0 {
		t.Fatalf("an unthrottled job used the outbox: %v writes in %v batches", n, b)
	}
	const n = 300 // 1.5 s at 200/s
	for i := range n {
		e.publish("p2p", p2pJob(fmt.Sprintf("thr-%d", i)))
	}
	seen := map[string]bool{}
	for len(seen) < n {
		res, _ := e.result(15 * time.Second)
		if res.Status != jobs.StatusSent || res.Duplicate || seen[res.RequestID] {
			t.Fatalf("result %+v (seen before: %v)", res, seen[res.RequestID])
		}
		seen[res.RequestID] = true
	}
	// Copies while the class is still throttled: their claims meet the stored records
	// through the outbox and they get the stored results back.
	for i := range 20 {
		e.publish("p2p", p2pJob(fmt.Sprintf("thr-%d", i)))
	}
	for range 20 {
		if res, _ := e.result(10 * time.Second); !res.Duplicate || res.Status != jobs.StatusSent {
			t.Fatalf("copy: %+v", res)
		}
	}
	e.noResult(300 * time.Millisecond)
	if got := len(e.up.requests()); got != n+1 {
		t.Fatalf("upstream called %d times, want %d", got, n+1)
	}
	b, w := outbox()
	t.Logf("%v writes in %v batches (%.1f each)", w, b, w/b)
	// Each job writes three times through the outbox (claim, record and result, ack); the
	// first jobs, before the class is throttled, write at once.
	if w < 2*n || w/b < 3 {
		t.Errorf("%v writes in %v batches: throttled jobs do not share their writes", w, b)
	}
}
