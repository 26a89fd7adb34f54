package control

import (
	"errors"
	"testing"
	"time"
)

func TestState(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	st := &State{
		Pauses: []Pause{
			{Target: "p2p", App: "shop", Until: now.Add(time.Hour)},
			{Target: "ucs"}, // every app, open-ended
			{Target: "p2t", Until: now.Add(-time.Minute)},     // lapsed
			{Target: "notify", Until: now.Add(2 * time.Hour)}, // every app, for a while
		},
		Cancels: []Cancel{{Prefix: "camp-1/", Until: now.Add(time.Hour)}, {Prefix: "old-", Until: now.Add(-time.Second)}},
	}
	for _, c := range []struct {
		app, typ, class string
		paused          bool
	}{
		{"shop", "p2p_more", "p2p", true}, // class pause of one app
		{"other", "p2p", "p2p", false},
		{"other", "ucs_multi_msg", "ucs", true},
		{"shop", "p2t", "p2t", false}, // lapsed
	} {
		if _, got := st.Paused(c.app, c.typ, c.class, now); got != c.paused {
			t.Errorf("Paused(%s, %s) = %v", c.app, c.typ, got)
		}
	}
	if got := st.ConsumerPause("ucs", "ucs", now); !got.Equal(OpenEnded) {
		t.Errorf("ucs consumer pause %v", got)
	}
	if got := st.ConsumerPause("notify", "notify", now); !got.Equal(now.Add(2 * time.Hour)) {
		t.Errorf("notify consumer pause %v", got)
	}
	if got := st.ConsumerPause("p2p", "p2p", now); !got.IsZero() {
		t.Errorf("a pause of one app must not pause the consumer: %v", got)
	}
	if _, ok := st.Cancelled("camp-1/u42", now); !ok {
		t.Error("camp-1/u42 not cancelled")
	}
	if _, ok := st.Cancelled("camp-10/u42", now); ok {
		t.Error("camp-10/u42 cancelled")
	}
	if _, ok := st.Cancelled("old-1", now); ok {
		t.Error("a lapsed cancellation holds")
	}
	if a := st.Active(now); len(a.Pauses) != 3 || len(a.Cancels) != 1 {
		t.Errorf("Active: %+v", a)
	}
	var none *State
	if _, ok := none.Paused("a", "p2p", "p2p", now); ok || !none.Empty() {
		t.Error("a nil state holds something")
	}
	if err := CheckTarget("p2p_more"); err != nil {
		t.Error(err)
	}
	if err := CheckTarget("sms"); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("CheckTarget(sms) = %v", err)
	}
}
