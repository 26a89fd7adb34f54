package e2e

import (
	"strings"
	"testing"
	"time"
)

const p2pPath = "/api/push/p2p/"

// TestRetriesAndUpstreamAnswers: retryable answers are retried up to PUSH_MAX_ATTEMPTS
// (§6), permanent ones reject at once, configuration errors pause the app without using
// attempts.
func TestRetriesAndUpstreamAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{
		"PUSH_MAX_ATTEMPTS": "3", "PUSH_RETRY_INITIAL": "50ms", "PUSH_RETRY_MAX": "200ms", "PUSH_HTTP_TIMEOUT": "500ms",
	})
	w := e.start()
	res, dlq := e.results(), e.dlq()
	sb := e.sb

	// retried runs one job against injected answers and checks it ends sent after calls
	// upstream calls with attempts = calls.
	retried := func(t *testing.T, id string, calls int) {
		t.Helper()
		e.publish("push.jobs.p2p", p2pJob(id))
		r := res.waitResult(id, 20*time.Second)
		checkResultShape(t, r)
		if r.Status != "sent" || r.Attempts != calls || r.Duplicate {
			t.Fatalf("result %s, want sent with attempts %d", r, calls)
		}
		if n := callsByID(sb, p2pPath)[id]; n != calls {
			t.Fatalf("%d upstream calls, want %d", n, calls)
		}
	}

	t.Run("500 twice then sent", func(t *testing.T) {
		sb.FailNext(p2pPath, 2, 500, "")
		retried(t, "retry-500", 3)
	})
	t.Run("503 outage then sent", func(t *testing.T) {
		sb.FailNext(p2pPath, 1, 503, `{"code":503,"message":"service unavailable","data":null}`)
		retried(t, "retry-503", 2)
	})
	t.Run("429 then sent", func(t *testing.T) {
		sb.FailNext(p2pPath, 1, 429, `{"code":429,"message":"rate limit exceeded","data":null}`)
		retried(t, "retry-429", 2)
	})
	t.Run("body code not 200 then sent", func(t *testing.T) {
		sb.FailNext(p2pPath, 1, 200, `{"code":500,"message":"internal error","data":null}`)
		retried(t, "retry-code", 2)
	})
	t.Run("malformed answer then sent", func(t *testing.T) {
		sb.FailNext(p2pPath, 1, 200, `<html>bad gateway</html>`)
		retried(t, "retry-malformed", 2)
	})
	t.Run("timeout then sent", func(t *testing.T) {
		sb.SetLatency(2 * time.Second)
		e.publish("push.jobs.p2p", p2pJob("retry-timeout"))
		eventually(t, 10*time.Second, "the first call of retry-timeout", func() bool { return callsByID(sb, p2pPath)["retry-timeout"] == 1 })
		sb.SetLatency(0)
		r := res.waitResult("retry-timeout", 20*time.Second)
		if r.Status != "sent" || r.Attempts != 2 {
			t.Fatalf("result %s, want sent with attempts 2", r)
		}
	})
	t.Run("400 rejected at once", func(t *testing.T) {
		sb.FailNext(p2pPath, 1, 400, `{"code":400,"message":"toAccount is invalid","data":null}`)
		data := p2pJob("reject-400")
		seq := e.publish("push.jobs.p2p", data)
		r := res.waitResult("reject-400", 20*time.Second)
		checkResultShape(t, r)
		if r.Status != "rejected" || r.kind() != "upstream_rejected" || r.Attempts != 1 || r.JobSeq != seq {
			t.Fatalf("result %s, want rejected upstream_rejected after 1 attempt", r)
		}
		if r.Upstream == nil || r.Upstream.HTTPStatus != 400 || r.Upstream.Code != 400 {
			t.Fatalf("upstream answer of the result: %s", r)
		}
		if n := callsByID(sb, p2pPath)["reject-400"]; n != 1 {
			t.Fatalf("%d upstream calls, want 1", n)
		}
		d := dlq.waitDLQ("reject-400", 10*time.Second)
		if d.MsgSubject != "push.dlq.p2p" || string(d.Data) != string(data) || d.Result.Status != "rejected" {
			t.Fatalf("DLQ entry %s", d.Raw)
		}
	})
	t.Run("always 500 fails after max attempts", func(t *testing.T) {
		sb.FailNext(p2pPath, 1000, 500, "")
		defer sb.FailNext(p2pPath, 0, 0, "")
		data := p2pJob("always-500")
		e.publish("push.jobs.p2p", data)
		r := res.waitResult("always-500", 20*time.Second)
		checkResultShape(t, r)
		if r.Status != "failed" || r.kind() != "upstream_unavailable" || r.Attempts != 3 {
			t.Fatalf("result %s, want failed upstream_unavailable after 3 attempts", r)
		}
		if r.Upstream == nil || r.Upstream.HTTPStatus != 500 {
			t.Fatalf("upstream answer of the result: %s", r)
		}
		if n := callsByID(sb, p2pPath)["always-500"]; n != 3 {
			t.Fatalf("%d upstream calls, want 3", n)
		}
		d := dlq.waitDLQ("always-500", 10*time.Second)
		if d.MsgSubject != "push.dlq.p2p" || string(d.Data) != string(data) || d.Result.Status != "failed" || d.Result.Attempts != 3 {
			t.Fatalf("DLQ entry %s", d.Raw)
		}
		if n := len(res.resultsOf("always-500")); n != 1 {
			t.Fatalf("%d results, want 1", n)
		}
	})
	t.Run("401 pauses the app", func(t *testing.T) {
		if code, body, _ := w.get("/readyz"); code != 200 {
			t.Fatalf("/readyz %d before the 401: %s", code, body)
		}
		sb.FailNext(p2pPath, 1, 401, `{"code":401,"message":"appKey is wrong","data":null}`)
		e.publish("push.jobs.p2p", p2pJob("paused-401"))
		var body string
		eventually(t, 10*time.Second, "/readyz 503 naming the app", func() bool {
			var code int
			code, body, _ = w.get("/readyz")
			return code == 503 && strings.Contains(body, "default")
		})
		if n := len(res.resultsOf("paused-401")); n != 0 {
			t.Fatalf("a paused job got a result while /readyz says %q: %v", body, res.resultsOf("paused-401"))
		}
		if !hasErrorLog(w.output(), "default", "401") {
			t.Fatalf("no error log line names the app and the code 401")
		}
		// The injected 401 is used up: the sandbox is fixed, the next probe succeeds.
		r := res.waitResult("paused-401", 30*time.Second)
		if r.Status != "sent" || r.Attempts != 1 {
			t.Fatalf("result %s, want sent with attempts 1", r)
		}
		eventually(t, 10*time.Second, "/readyz 200 again", func() bool { code, _, _ := w.get("/readyz"); return code == 200 })
	})
	if w.exited() {
		t.Fatalf("the worker exited")
	}
}

// hasErrorLog reports whether a log line at level error holds every word.
func hasErrorLog(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `"level":"error"`) && !strings.Contains(line, "ERR") {
			continue
		}
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return true
		}
	}
	return false
}
