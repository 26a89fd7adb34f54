package jobs

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeCampaignFields(t *testing.T) {
	payload := `"payload":{"fromAccount":"a","toAccount":"b","msg":"m"}`
	for _, c := range []struct {
		name, job, detail string
		check             func(d *Decoded) bool
	}{
		{"scheduled", `{"not_before":"2026-11-23T09:00:00+08:00","not_after":"2026-11-23T02:00:00Z",` + payload + `}`, "",
			func(d *Decoded) bool {
				return d.NotBefore.Equal(time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)) && d.Priority == PriorityNormal
			}},
		{"high", `{"priority":"high",` + payload + `}`, "", func(d *Decoded) bool { return d.Priority == PriorityHigh && d.Priority.Lane() == 0 }},
		{"low", `{"priority":"low",` + payload + `}`, "", func(d *Decoded) bool { return d.Priority.Lane() == 2 }},
		{"bad not_before", `{"not_before":"tomorrow",` + payload + `}`, "not_before must be an RFC 3339 time", nil},
		{"not_before after not_after", `{"not_before":"2026-11-23T10:00:00Z","not_after":"2026-11-23T09:00:00Z",` + payload + `}`, "not_before 2026-11-23T10:00:00Z is after not_after", nil},
		{"bad priority", `{"priority":"urgent",` + payload + `}`, `priority "urgent" must be high, normal or low`, nil},
		{"priority not a string", `{"priority":1,` + payload + `}`, "priority", nil},
	} {
		d, jerr := Decode(Meta{Subject: "push.jobs.p2p", Seq: 1}, []byte(c.job), Options{})
		switch {
		case c.detail == "" && jerr != nil:
			t.Errorf("%s: %v", c.name, jerr)
		case c.detail == "" && !c.check(d):
			t.Errorf("%s: %+v", c.name, d)
		case c.detail != "" && (jerr == nil || jerr.Kind != KindInvalidJob || !strings.Contains(jerr.Detail, c.detail)):
			t.Errorf("%s: want invalid_job %q, got %v", c.name, c.detail, jerr)
		}
	}
}

func TestScheduleAtNeverEarly(t *testing.T) {
	at := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	if got := ScheduleAt(at); !got.Equal(at) {
		t.Errorf("whole second: %v", got)
	}
	if got := ScheduleAt(at.Add(time.Millisecond)); !got.Equal(at.Add(time.Second)) {
		t.Errorf("rounded up: %v", got)
	}
	if ScheduleID("a") != ScheduleID("a") || ScheduleID("a") == ScheduleID("b") || strings.ContainsAny(ScheduleID("x.y z"), ". *>") {
		t.Error("schedule ids")
	}
}

// A schedule subject is inside <prefix>.jobs.> but is no job subject: no type is named
// like its token, and no consumer's filter (a type's subject or lane subject) matches it.
func TestScheduleSubjectIsNoJobSubject(t *testing.T) {
	if IsType(ScheduleToken) {
		t.Fatalf("%q is a job type", ScheduleToken)
	}
	for _, spec := range Specs() {
		typ := string(spec.Type)
		subj := ScheduleSubject("push", typ, ScheduleID("r-1"))
		tail, ok := strings.CutPrefix(subj, "push.jobs.")
		if !ok || !IsScheduleTail(tail) {
			t.Errorf("%s: schedule subject %q", typ, subj)
		}
		if got, _ := SplitLane(tail); IsType(got) {
			t.Errorf("%s: schedule subject %q reads as type %q", typ, subj, got)
		}
		for _, p := range []Priority{PriorityHigh, PriorityNormal, PriorityLow} {
			js := JobSubject("push", typ, p)
			if js == subj || IsScheduleTail(strings.TrimPrefix(js, "push.jobs.")) {
				t.Errorf("%s %s: job subject %q is a schedule subject", typ, p, js)
			}
		}
	}
}
