package jobs

import (
	"encoding/json"
	"testing"
	"time"
)

// TestResultAppendJSON: AppendJSON writes the very bytes json.Marshal writes.
func TestResultAppendJSON(t *testing.T) {
	id := int64(-77)
	at := time.Date(2026, 11, 23, 9, 59, 59, 120_000_000, time.UTC)
	for name, r := range map[string]Result{
		"empty": {},
		"sent": {RequestID: "order-8812-shipped", Type: "p2p", App: "default", Status: StatusSent, PacketID: "Z9vR2k1-0000042",
			Attempts: 1, Upstream: &UpstreamAnswer{HTTPStatus: 200, Code: 200, Message: "success"}, JobSeq: 1187, EnqueuedAt: at, CompletedAt: at.Add(11 * time.Millisecond)},
		"partial, escapes": {RequestID: `a"b\c<d>&e` + "\u2028\x01\xff", Type: "ucs_multi_topic", App: "商店", Status: StatusPartial,
			PacketIDs: []string{"p1", "p<2>"}, FailTopicIDs: []string{"9223372036854775807"}, Attempts: 3, Duplicate: true,
			Upstream: &UpstreamAnswer{HTTPStatus: 200}, Error: Errorf(KindUpstreamRejected, "1 of 2 topics: \"x\""), JobSeq: 1<<64 - 1,
			EnqueuedAt: at.In(time.FixedZone("CST", 8*3600)), CompletedAt: at},
		"notify":    {RequestID: "n", Type: "notify", App: "default", Status: StatusSent, TaskID: &id, TaskIDs: []int64{1, 2, 3}, Attempts: 1},
		"scheduled": {RequestID: "s", Type: "p2p", Status: StatusSent, DueAt: &at, SentAt: &at},
		"cancelled": {RequestID: "c", Status: StatusCancelled, Error: Errorf(KindCancelled, "cancelled"), DueAt: &at},
		"failed":    {RequestID: "f", Status: StatusFailed, Error: Errorf(KindUpstreamUnavailable, ""), Upstream: &UpstreamAnswer{HTTPStatus: 502, Message: "bad gateway"}},
	} {
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}
