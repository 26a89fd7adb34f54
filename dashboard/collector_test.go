package dashboard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

func resultJSON(i int, status jobs.Status) []byte {
	return fmt.Appendf(nil, `{"request_id":"r-%d","type":"p2p","app":"default","status":%q,"attempts":1,"duplicate":false,"job_seq":%d,"enqueued_at":"2026-11-24T10:00:00Z","completed_at":"2026-11-24T10:00:00Z"}`, i, status, i)
}

// TestCollectorIsBounded pushes 20 seconds of 10,000 results per second (one failure in
// a hundred) through the collector: every result is counted, at most the per-second
// sample is kept, the ring never grows, failures are not crowded out by the sent ones,
// and the heap stays small.
func TestCollectorIsBounded(t *testing.T) {
	var c collector
	t0 := time.Unix(1_800_000_000, 0)
	c.reset(t0)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const perSecond, seconds = 10000, 20
	sent, failed := resultJSON(1, jobs.StatusSent), resultJSON(2, jobs.StatusFailed)
	for s := range seconds {
		for i := range perSecond {
			now := t0.Add(time.Duration(s)*time.Second + time.Duration(i)*time.Second/perSecond)
			if i%100 == 0 {
				c.add(now, "push.results.p2p", "failed", failed)
			} else {
				c.add(now, "push.results.p2p", "sent", sent)
			}
		}
	}
	end := t0.Add(seconds * time.Second)
	v := c.view(end, resultFilter{}, recentLimit, 0)
	if v.Seen != perSecond*seconds || v.Totals[0] != perSecond*seconds*99/100 || v.Totals[3] != perSecond*seconds/100 {
		t.Fatalf("counted seen %d totals %v", v.Seen, v.Totals)
	}
	if c.n != ringSize {
		t.Fatalf("ring holds %d, want %d", c.n, ringSize)
	}
	if !v.Sampled || len(v.Recent) != recentLimit {
		t.Fatalf("sampled %v, %d recent", v.Sampled, len(v.Recent))
	}
	if got := v.PerSec[0] + v.PerSec[3]; got < perSecond*0.99 || got > perSecond*1.01 {
		t.Fatalf("rate %.0f/s, want %d", got, perSecond)
	}
	// Per second the ring takes 20 sent and all 100 failures up to 50: over the last
	// seconds it holds failures at a ratio of 50:20, not 1:99.
	failures := c.recent(resultFilter{status: "failed"}, ringSize)
	if len(failures) < ringSize/2 {
		t.Fatalf("%d failures kept of %d", len(failures), ringSize)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Fatalf("the heap grew by %d bytes", grew)
	}
}

// BenchmarkCollectorAdd is the cost of one result at 10k/s: mostly counted, not kept.
func BenchmarkCollectorAdd(b *testing.B) {
	var c collector
	data := resultJSON(1, jobs.StatusSent)
	t0 := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.add(t0.Add(time.Duration(i)*100*time.Microsecond), "push.results.p2p", "sent", data)
	}
}

// TestBacklogRing keeps ten minutes, one sample per second at most, and puts unknown
// types under "other".
func TestBacklogRing(t *testing.T) {
	var b backlogRing
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 1500 { // 25 minutes, a sample every second
		b.add(BacklogSample{At: t0.Add(time.Duration(i) * time.Second), Types: []TypeBacklog{{Type: "p2p", Stored: uint64(i)}, {Type: "sms", Stored: 3}}})
		b.add(BacklogSample{At: t0.Add(time.Duration(i)*time.Second + 100*time.Millisecond), Types: []TypeBacklog{{Type: "p2p", Stored: uint64(i)}, {Type: "sms", Stored: 3}}})
	}
	v := b.view([]string{"p2p", "notify"})
	if n := len(v.Series); n < 599 || n > 601 {
		t.Fatalf("%d samples kept, want about 600", n)
	}
	last := v.Series[len(v.Series)-1]
	if last[1] != 1499 || last[2] != 0 || last[3] != 3 || v.Types[2] != "other" {
		t.Fatalf("last row %v types %v", last, v.Types)
	}
}

// TestNotifyStatsBounded keeps the most recently changed tasks only.
func TestNotifyStatsBounded(t *testing.T) {
	var n notifyStats
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 5000 {
		n.add(t0.Add(time.Duration(i)*time.Millisecond), fmt.Appendf(nil, `{"task_id":%d,"request_id":"r","channels":{"fcm":{"target":1,"sent":1,"received":0}}}`, i))
	}
	if len(n.tasks) > notifyKeep {
		t.Fatalf("%d tasks kept", len(n.tasks))
	}
	v := n.view(3)
	if len(v) != 3 || v[0].TaskID != 4999 || v[2].TaskID != 4997 || v[0].Channels["fcm"].Target != 1 {
		t.Fatalf("%+v", v)
	}
}

// TestWriteAuth: nobody writes without a token; with one, the bearer token or a session
// cookie from the page's own origin.
func TestWriteAuth(t *testing.T) {
	now := time.Now()
	req := func(mod func(r *http.Request)) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/ui/api/dlq/replay", nil)
		mod(r)
		return r
	}
	none := func(*http.Request) {}
	ro := newAuth("")
	if st, msg := ro.allowWrite(req(none), now); st != http.StatusForbidden || !strings.Contains(msg, "PUSH_UI_ADMIN_TOKEN") {
		t.Fatalf("read-only: %d %s", st, msg)
	}
	if st, _ := ro.allowWrite(req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }), now); st != http.StatusForbidden {
		t.Fatal("an empty bearer token passed a dashboard without a token")
	}
	a := newAuth("the-admin-token-0123")
	good := a.session(now)
	cases := []struct {
		name string
		mod  func(r *http.Request)
		want int
	}{
		{"nothing", none, http.StatusUnauthorized},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer the-admin-token-0123") }, 0},
		{"bearer wrong", func(r *http.Request) { r.Header.Set("Authorization", "Bearer the-admin-token-0124") }, http.StatusUnauthorized},
		{"bearer prefix", func(r *http.Request) { r.Header.Set("Authorization", "Bearer the-admin") }, http.StatusUnauthorized},
		{"cookie", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: cookieName, Value: good})
			r.Header.Set(uiHeader, "1")
			r.Header.Set("Origin", "http://127.0.0.1:8080")
		}, 0},
		{"cookie without the page's header", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: cookieName, Value: good}) }, http.StatusForbidden},
		{"cookie from another origin", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: cookieName, Value: good})
			r.Header.Set(uiHeader, "1")
			r.Header.Set("Origin", "http://evil.example")
		}, http.StatusForbidden},
		{"cookie tampered", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: cookieName, Value: "9999999999." + strings.SplitN(good, ".", 2)[1]})
			r.Header.Set(uiHeader, "1")
		}, http.StatusUnauthorized},
		{"cookie expired", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: cookieName, Value: a.session(now.Add(-sessionFor - time.Minute))})
			r.Header.Set(uiHeader, "1")
		}, http.StatusUnauthorized},
		{"cookie of another token", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: cookieName, Value: newAuth("another-token-0123456").session(now)})
			r.Header.Set(uiHeader, "1")
		}, http.StatusUnauthorized},
	}
	for _, c := range cases {
		if st, msg := a.allowWrite(req(c.mod), now); st != c.want {
			t.Errorf("%s: %d (%s), want %d", c.name, st, msg, c.want)
		}
	}
}
