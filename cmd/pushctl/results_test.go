package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

func TestResults(t *testing.T) {
	h := newHarness(t, true)
	task := int64(778899)
	at := time.Date(2026, 11, 23, 9, 59, 59, 131e6, time.UTC)
	h.publishResult("push.results.p2p", jobs.Result{RequestID: "r-1", Type: "p2p", Status: jobs.StatusSent, PacketID: "pk-1", Attempts: 1, JobSeq: 11, CompletedAt: at})
	h.publishResult("push.results.p2p", jobs.Result{RequestID: "r-2", Type: "p2p", Status: jobs.StatusRejected, Attempts: 1,
		Error: &jobs.Error{Kind: jobs.KindUpstreamRejected, Detail: "toAccount unknown"}, CompletedAt: at})
	h.publishResult("push.results.orders", jobs.Result{RequestID: "r-3", Type: "p2p", Status: jobs.StatusSent, PacketID: "pk-3"})
	h.publishResult("push.results.notify", jobs.Result{RequestID: "r-4", Type: "notify", Status: jobs.StatusSent, TaskID: &task})
	stats, _ := json.Marshal(jobs.NotifyStats{TaskID: task, RequestID: "r-4", Channels: map[string]jobs.ChannelStats{
		"xiaomi": {Target: 10, Sent: 9, Received: 7}, "huawei": {Target: 5, Sent: 5, Received: 5}}})
	if _, err := h.js.Publish(h.ctx(), "push.results.notify_stats", stats); err != nil {
		t.Fatal(err)
	}

	t.Run("all, without notify stats", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "results")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || strings.Contains(out, "channels") || strings.Contains(out, "xiaomi") {
			t.Fatalf("results:\n%s", out)
		}
		want := "2026-11-23T09:59:59.131Z  r-1  p2p  sent  packet_id=pk-1  attempts=1  job_seq=11"
		if lines[0] != want {
			t.Fatalf("line %q, want %q", lines[0], want)
		}
		if !strings.Contains(lines[3], "task_id=778899") {
			t.Fatalf("notify line %q", lines[3])
		}
	})

	t.Run("--request-id", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "results", "--request-id", "r-2")
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, "  r-2  p2p  rejected") || !strings.Contains(out, "error=upstream_rejected: toAccount unknown") {
			t.Fatalf("%q", out)
		}
		out, _ = h.mustPushctl(exitOK, "results", "--request-id", "nobody")
		if out != "" {
			t.Fatalf("%q", out)
		}
	})

	t.Run("--type includes reply subjects, --json is raw lines", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "results", "--type", "p2p", "--status", "sent", "--json")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s", out)
		}
		for i, want := range []string{"r-1", "r-3"} {
			var r jobs.Result
			if err := json.Unmarshal([]byte(lines[i]), &r); err != nil || r.RequestID != want {
				t.Fatalf("line %q (%v)", lines[i], err)
			}
		}
	})

	t.Run("notify stats", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "stats")
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, "task=778899  request=r-4  huawei target=5 sent=5 received=5  xiaomi target=10 sent=9 received=7") {
			t.Fatalf("%q", out)
		}
		out2, _ := h.mustPushctl(exitOK, "results", "--type", "notify_stats")
		if out2 != out {
			t.Fatalf("results --type notify_stats %q, stats %q", out2, out)
		}
	})

	t.Run("--since excludes older results", func(t *testing.T) {
		out, _ := h.mustPushctl(exitOK, "results", "--since", time.Now().Add(time.Hour).Format(time.RFC3339))
		if out != "" {
			t.Fatalf("%q", out)
		}
	})

	t.Run("--follow prints new results", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errs syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"--server", h.url, "results", "--follow", "--request-id", "f-1"}, &out, &errs)
		}()
		h.publishResult("push.results.p2p", jobs.Result{RequestID: "f-0", Type: "p2p", Status: jobs.StatusSent})
		h.publishResult("push.results.p2p", jobs.Result{RequestID: "f-1", Type: "p2p", Status: jobs.StatusExpired,
			Error: &jobs.Error{Kind: jobs.KindExpired, Detail: "not_after passed"}})
		waitFor(t, 5*time.Second, "the followed result", func() bool { return strings.Contains(out.String(), "f-1  p2p  expired") })
		cancel()
		select {
		case code := <-done:
			if code != exitOK || strings.Contains(out.String(), "f-0") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errs.String())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("--follow did not stop when its context ended")
		}
	})
}
