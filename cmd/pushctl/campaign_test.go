package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pushworker/pushworker/control"
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
