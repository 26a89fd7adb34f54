package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// TestRecordMarshal: the directly appended records are byte for byte what json.Marshal
// writes, and they read back.
func TestRecordMarshal(t *testing.T) {
	now := time.Date(2026, 11, 24, 9, 59, 59, 120_000_000, time.FixedZone("CST", 8*3600))
	id := int64(7)
	result, _ := json.Marshal(jobs.Result{RequestID: "r<1>&", Type: "p2p", App: "default", Status: jobs.StatusSent, PacketID: "p-1"})
	for name, r := range map[string]*record{
		"claim, one call":    {State: stateInFlight, Seq: 1187, TS: 1763891999120000000, Calls: make([]callState, 1), Updated: now},
		"claim, three calls": {State: stateInFlight, Seq: 1, TS: -1, Calls: make([]callState, 3), Updated: now.UTC()},
		"done":               {State: stateDone, Seq: 18446744073709551615, TS: 5, Result: result, Updated: now},
		"no calls":           {State: stateInFlight, Updated: time.Time{}},
		"with outcomes":      {State: stateInFlight, Failures: 2, Calls: []callState{{Done: true, TaskID: &id}, {}}, LastErr: jobs.Errorf(jobs.KindUpstreamUnavailable, "x"), Updated: now},
		"done chunk":         {State: stateInFlight, Calls: []callState{{Done: true}, {}}, Updated: now},
	} {
		want, _ := json.Marshal(r)
		if got := r.marshal(); string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
		var back record
		if err := json.Unmarshal(r.marshal(), &back); err != nil || back.Seq != r.Seq || !back.Updated.Equal(r.Updated) {
			t.Errorf("%s: reads back as %+v (%v)", name, back, err)
		}
	}
}
