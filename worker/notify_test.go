package worker_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

func notifyVars(url string) map[string]string {
	return map[string]string{"PUSH_NOTIFY_APP_ID": "n-app", "PUSH_NOTIFY_ACCESS_TOKEN": "tok-S3CRET-42", "PUSH_NOTIFY_URL": url}
}

func newNotifyEnv(t *testing.T) *env {
	up := newFakeUpstream(t)
	e := newEnvWith(t, up, notifyVars(up.URL))
	return e
}

type notifyBody struct {
	Audience map[string][]string `json:"audience"`
	Setting  struct {
		RequestID string `json:"request_id"`
	} `json:"setting"`
}

func tokens(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("tk%04d", i)
	}
	return out
}

func TestNotifySplitsLargeAudience(t *testing.T) {
	e := newNotifyEnv(t)
	task := 100
	e.up.setAnswer(func(r recorded) (int, string) {
		task++
		return 200, fmt.Sprintf(`{"code":200,"message":null,"data":{"task_id":%d}}`, task)
	})
	job := map[string]any{"request_id": "big-1", "payload": map[string]any{
		"audience": map[string]any{"push_token": tokens(1200)},
		"message":  map[string]any{"type": "text", "title": "t", "body": "b"},
	}}
	e.publish("notify", job)
	res, m := e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || len(res.TaskIDs) != 3 || res.TaskID != nil || m.Subject != "push.results.notify" {
		t.Fatalf("result = %+v", res)
	}
	seen := map[string]int{}
	reqs := e.up.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d calls", len(reqs))
	}
	for i, r := range reqs {
		if r.Path != "/push/notify" || r.Header.Get("access-token") != "tok-S3CRET-42" || r.Header.Get("app_id") != "n-app" {
			t.Fatalf("call %d: %s %v", i, r.Path, r.Header)
		}
		var b notifyBody
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("big-1#%d", i); b.Setting.RequestID != want {
			t.Fatalf("call %d request_id %q, want %q", i, b.Setting.RequestID, want)
		}
		if len(b.Audience["push_token"]) > 500 {
			t.Fatalf("chunk of %d", len(b.Audience["push_token"]))
		}
		for _, tk := range b.Audience["push_token"] {
			seen[tk]++
		}
	}
	if len(seen) != 1200 {
		t.Fatalf("%d distinct tokens sent", len(seen))
	}
	for tk, n := range seen {
		if n != 1 {
			t.Fatalf("%s sent %d times", tk, n)
		}
	}
}

func TestNotifyRetryDoesNotResendAcceptedChunks(t *testing.T) {
	e := newNotifyEnv(t)
	calls := 0
	e.up.setAnswer(func(r recorded) (int, string) {
		calls++
		if calls == 2 { // second chunk fails once
			return 503, ""
		}
		return 200, fmt.Sprintf(`{"code":200,"data":{"task_id":%d}}`, calls)
	})
	e.publish("notify", map[string]any{"request_id": "rt-1", "payload": map[string]any{
		"audience": map[string]any{"alias": tokens(700)}, "message": map[string]any{"body": "b"},
	}})
	res, _ := e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || res.Attempts != 2 || len(res.TaskIDs) != 2 {
		t.Fatalf("result = %+v", res)
	}
	ids := map[string]int{}
	for _, r := range e.up.requests() {
		var b notifyBody
		_ = json.Unmarshal(r.Body, &b)
		ids[b.Setting.RequestID]++
	}
	if ids["rt-1#0"] != 1 || ids["rt-1#1"] != 2 {
		t.Fatalf("calls per chunk = %v", ids)
	}
}

func TestNotifyPartialAndShapes(t *testing.T) {
	e := newNotifyEnv(t)
	e.up.setAnswer(func(r recorded) (int, string) {
		var b notifyBody
		_ = json.Unmarshal(r.Body, &b)
		if strings.HasSuffix(b.Setting.RequestID, "#1") {
			return 200, `{"code":10002,"message":"bad parameter"}`
		}
		return 200, `{"code":200,"data":{"task_id":7}}`
	})
	e.publish("notify", map[string]any{"request_id": "pa-1", "payload": map[string]any{
		"audience": map[string]any{"tag": tokens(600)}, "message": map[string]any{"body": "b"},
	}})
	res, m := e.result(10 * time.Second)
	if res.Status != jobs.StatusPartial || res.Error == nil || res.Error.Kind != jobs.KindUpstreamRejected || len(res.TaskIDs) != 1 || m.Header.Get("Push-Status") != "partial" {
		t.Fatalf("result = %+v %+v", res, res.Error)
	}
	// data: true has no task id; a single call reports task_id, not task_ids.
	e.up.setAnswer(func(recorded) (int, string) { return 200, `{"code":200,"data":true}` })
	e.publish("notify", map[string]any{"request_id": "bool-1", "payload": map[string]any{"audience": "all", "message": map[string]any{"body": "b"}}})
	res, _ = e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || res.TaskID != nil || res.TaskIDs != nil {
		t.Fatalf("data:true result = %+v", res)
	}
	e.up.setAnswer(func(recorded) (int, string) { return 200, `{"code":200,"data":{"task_id":99}}` })
	e.publish("notify", map[string]any{"request_id": "one-1", "payload": map[string]any{"audience": "all", "message": map[string]any{"body": "b"}}})
	res, _ = e.result(10 * time.Second)
	if res.Status != jobs.StatusSent || res.TaskID == nil || *res.TaskID != 99 {
		t.Fatalf("single result = %+v", res)
	}
	reqs := e.up.requests()
	var b notifyBody
	_ = json.Unmarshal(reqs[len(reqs)-1].Body, &b)
	if b.Setting.RequestID != "one-1" {
		t.Fatalf("request id not defaulted: %s", reqs[len(reqs)-1].Body)
	}
}

func TestNotifyCodesClassify(t *testing.T) {
	e := newNotifyEnv(t)
	for _, c := range []struct {
		code   int
		status jobs.Status
		kind   jobs.ErrorKind
	}{
		{10002, jobs.StatusRejected, jobs.KindUpstreamRejected},
		{12002, jobs.StatusRejected, jobs.KindUpstreamRejected},
		{12001, jobs.StatusFailed, jobs.KindUpstreamUnavailable},
		{20000, jobs.StatusFailed, jobs.KindUpstreamUnavailable},
		{55555, jobs.StatusFailed, jobs.KindUpstreamUnavailable},
	} {
		code := c.code
		e.up.setAnswer(func(recorded) (int, string) { return 200, fmt.Sprintf(`{"code":%d,"message":"m"}`, code) })
		e.publish("notify", map[string]any{"request_id": fmt.Sprint("c-", code), "payload": map[string]any{"audience": "all", "message": map[string]any{"body": "b"}}})
		res, _ := e.result(10 * time.Second)
		if res.Status != c.status || res.Error.Kind != c.kind || res.Upstream.Code != code {
			t.Fatalf("code %d: %+v %+v", code, res, res.Error)
		}
	}
	// Configuration codes pause the app instead of failing the job.
	for _, code := range []int{10003, 10008, 10010, 12006, 30021, 30022, 30023, 40000} {
		code := code
		e.up.setAnswer(func(recorded) (int, string) { return 200, fmt.Sprintf(`{"code":%d,"message":"config"}`, code) })
		e.publish("notify", map[string]any{"request_id": fmt.Sprint("cfg-", code), "payload": map[string]any{"audience": "all", "message": map[string]any{"body": "b"}}})
		e.noResult(700 * time.Millisecond)
		e.up.setAnswer(nil)
		e.up.setAnswer(func(recorded) (int, string) { return 200, `{"code":200,"data":{"task_id":1}}` })
		res, _ := e.result(10 * time.Second)
		if res.Status != jobs.StatusSent || res.Attempts != 1 {
			t.Fatalf("code %d: after the fix %+v", code, res)
		}
	}
	if strings.Contains(e.logs.String(), "tok-S3CRET-42") {
		t.Fatal("notify token in the logs")
	}
}
