package upstream

import (
	"errors"
	"testing"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// TestGateStateKeepsTheLastFailure: State reports the last failed call's detail and answer
// (what the dashboard shows beside an open breaker or a pause), and an opening that came
// from another replica.
func TestGateStateKeepsTheLastFailure(t *testing.T) {
	b := NewBreakers(BreakerSettings{TripAfter: 2, OpenFor: time.Minute})
	g := b.For("default", "mimc", "h")
	call := func(o Outcome) {
		t.Helper()
		done, _, err := g.Allow()
		if err != nil {
			t.Fatal(err)
		}
		done(o)
	}
	call(Outcome{Kind: Sent})
	if st := g.State(); st.LastFailure != "" || st.LastAnswer != nil || !st.LastFailureAt.IsZero() {
		t.Fatalf("no failure yet: %+v", st)
	}
	call(Outcome{Kind: Retryable, Err: jobs.Errorf(jobs.KindUpstreamUnavailable, "HTTP 503"), Answer: &jobs.UpstreamAnswer{HTTPStatus: 503, Code: 503, Message: "busy"}})
	call(Outcome{Kind: Retryable, Err: jobs.Errorf(jobs.KindUpstreamUnavailable, "timeout")})
	st := g.State()
	if !st.Open || st.LastFailure != "timeout" || st.LastAnswer != nil || st.LastFailureAt.IsZero() {
		t.Fatalf("after two failures: %+v", st)
	}
	if _, _, err := g.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("Allow on an open breaker: %v", err)
	}

	other := b.For("shop", "notify", "h")
	other.OpenUntil(time.Now().Add(time.Hour))
	if st := other.State(); st.RemoteUntil.IsZero() || st.Open {
		t.Fatalf("opened by another replica: %+v", st)
	}
	other.ClearRemote()
	if st := other.State(); !st.RemoteUntil.IsZero() {
		t.Fatalf("cleared: %+v", st)
	}
	done, _, err := other.Allow()
	if err != nil {
		t.Fatal(err)
	}
	done(Outcome{Kind: Configuration, Err: jobs.Errorf(jobs.KindUpstreamUnavailable, "notify code 10008: invalid token"), Answer: &jobs.UpstreamAnswer{HTTPStatus: 200, Code: 10008}})
	if st := other.State(); !st.Paused || st.Detail != "notify code 10008: invalid token" || st.LastAnswer == nil || st.LastAnswer.Code != 10008 {
		t.Fatalf("paused: %+v", st)
	}
}
