package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/control"
	"github.com/pushworker/pushworker/jobs"
)

func TestPauseResumeCancel(t *testing.T) {
	h := newHarness(t, true)

	_, errOut := h.mustPushctl(exitUsage, "pause", "nope")
	if !strings.Contains(errOut, `target "nope"`) || !strings.Contains(errOut, "unknown job type or rate class") {
		t.Errorf("pause of an unknown type: %s", errOut)
	}
	h.mustPushctl(exitUsage, "cancel")
	h.mustPushctl(exitOK, "pause", "p2p", "--app", "shop", "--for", "1h", "--reason", "wrong text")
	h.mustPushctl(exitOK, "pause", "ucs")
	h.mustPushctl(exitOK, "cancel", "--request-id-prefix", "camp-7/")

	out, _ := h.mustPushctl(exitOK, "status")
	for _, want := range []string{"paused p2p for app shop", "(wrong text)", "paused ucs for every app", "until resumed", `cancelled request ids "camp-7/"`} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, _ = h.mustPushctl(exitOK, "status", "--json")
	var rep struct{ Controls control.State }
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Controls.Pauses) != 2 || len(rep.Controls.Cancels) != 1 || rep.Controls.Pauses[0].App != "" || rep.Controls.Pauses[1].Until.IsZero() {
		t.Errorf("status --json controls: %+v", rep.Controls)
	}

	h.mustPushctl(exitOK, "resume", "ucs")
	_, errOut = h.mustPushctl(exitError, "resume", "ucs")
	if !strings.Contains(errOut, "not paused") {
		t.Errorf("resume of what is not paused: %s", errOut)
	}
	out, _ = h.mustPushctl(exitOK, "status")
	if strings.Contains(out, "paused ucs") {
		t.Errorf("ucs still paused:\n%s", out)
	}
}

func TestSendScheduledAndPriority(t *testing.T) {
	h := newHarness(t, true)
	h.mustPushctl(exitOK, "send", "p2p", "--from", "a", "--to", "b", "--msg", "m", "--request-id", "sched-1", "--in", "1h", "--priority", "low")
	subj := "push.jobs._sched.p2p." + jobs.ScheduleID("sched-1")
	m := h.lastJob(subj)
	if got := m.Header.Get("Nats-Schedule-Target"); got != "push.jobs.p2p.low" { // the low lane
		t.Fatalf("Nats-Schedule-Target = %q", got)
	}
	sched := m.Header.Get("Nats-Schedule")
	at, err := time.Parse(time.RFC3339, strings.TrimPrefix(sched, "@at "))
	if err != nil || time.Until(at) < 59*time.Minute || time.Until(at) > 61*time.Minute {
		t.Fatalf("Nats-Schedule = %q", sched)
	}
	var job jobs.Job
	if err := json.Unmarshal(m.Data, &job); err != nil || job.NotBefore == nil || job.Priority != jobs.PriorityLow {
		t.Fatalf("job %+v %v", job, err)
	}
	if h.msgCount(h.names.JobsStream()) != 1 {
		t.Fatal("a scheduled job must not be on the job subject yet")
	}
	h.mustPushctl(exitOK, "send", "p2p", "--from", "a", "--to", "b", "--msg", "m", "--request-id", "sched-2", "--at", "2020-01-01T00:00:00Z")
	h.lastJob("push.jobs.p2p") // due already: published as usual

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--at", "tomorrow"}, "--at"},
		{[]string{"--in", "-5m"}, "--in"},
		{[]string{"--at", "2030-01-01T00:00:00Z", "--in", "1h"}, "give one of them"},
		{[]string{"--priority", "urgent"}, "--priority"},
		{[]string{"--in", "2h", "--not-after", "1h"}, "not_before"},
	} {
		_, _, errOut := h.pushctl(append([]string{"send", "p2p", "--from", "a", "--to", "b", "--msg", "m"}, c.args...)...)
		if !strings.Contains(errOut, c.want) {
			t.Errorf("%v: %s", c.args, errOut)
		}
	}
}
