package limiter

import (
	"context"
	"testing"
	"time"
)

// TestReleasedWindow checks the window of actual releases: callers trying every
// millisecond never put more than the rate into a sliding second (the burst is left for the
// way to the upstream), yet get nearly the rate; a release heavier than that goes alone once
// the window is empty.
func TestReleasedWindow(t *testing.T) {
	var r released
	t0 := time.Now().UnixNano()
	ms := int64(time.Millisecond)
	const rate, burst = 10, 10
	var at []int64
	for now := t0; now < t0+5*window; now += ms {
		if ok, _ := r.take(now, 1, rate, burst); ok {
			at = append(at, now)
		}
	}
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j] < at[i]+window; j++ {
			n++
		}
		if n > rate {
			t.Fatalf("%d releases in the second from +%d ms, limit %d", n, (at[i]-t0)/ms, rate)
		}
	}
	if len(at) < 5*rate-1 {
		t.Fatalf("%d releases in 5 s at %d/s", len(at), rate)
	}

	var h released
	if ok, _ := h.take(t0, 1, rate, burst); !ok {
		t.Fatal("first release refused")
	}
	ok, retry := h.take(t0+ms, 25, rate, burst)
	if ok {
		t.Fatal("a release heavier than the limit went into a non-empty window")
	}
	if want := t0 + window + 1; retry != want {
		t.Fatalf("heavy release: retry at +%d ms, want +%d ms (when the window is empty)", (retry-t0)/ms, (want-t0)/ms)
	}
	if ok, _ := h.take(retry, 25, rate, burst); !ok {
		t.Fatal("a heavy release did not go once the window was empty")
	}
	if ok, _ := h.take(retry+window/2, 1, rate, burst); ok {
		t.Fatal("a token went into the window of a heavy release")
	}
}

// TestReleasedPaces: callers that all come due at once (their tokens were granted while no
// concurrency slot was free) leave at the rate, one burst ahead at most, not a whole
// second's worth at once.
func TestReleasedPaces(t *testing.T) {
	var r released
	ms := int64(time.Millisecond)
	t0 := time.Now().UnixNano()
	const rate, burst = 100, 5
	sent := 0
	for {
		ok, retry := r.take(t0, 1, rate, burst)
		if !ok {
			// The pacer's clock is burst+1 intervals ahead; the next may go when it is
			// only the burst's time ahead.
			interval := float64(time.Second) / (rate * paceAbove)
			want := t0 + int64(float64(burst+1)*interval) - int64(burst*float64(time.Second)/rate)
			if retry < want-ms || retry > want+ms {
				t.Fatalf("next at +%.1f ms, want +%.1f ms", float64(retry-t0)/float64(ms), float64(want-t0)/float64(ms))
			}
			break
		}
		sent++
	}
	if sent != burst+1 {
		t.Fatalf("%d let go at once, want %d (one ahead of the rate plus the burst)", sent, burst+1)
	}
	// Trying every millisecond for the next half second: they go at the pace, a little
	// above the rate (paceAbove), so that a pile catches up within the window's limit.
	first := sent
	for now := t0 + ms; now < t0+500*ms; now += ms {
		if ok, _ := r.take(now, 1, rate, burst); ok {
			sent++
		}
	}
	if want := 0.5 * rate * paceAbove; float64(sent-first) < want-2 || float64(sent-first) > want+1 {
		t.Fatalf("%d let go in half a second after the burst at 100/s, want about %.0f", sent-first, want)
	}
	if ok, retry := r.take(t0+600*ms, 1, 0, 0); ok || retry != 0 {
		t.Fatalf("a share of 0 let a call go (%v) or named a time (%d)", ok, retry)
	}
}

// TestAdmitHoldsWithoutLease: a replica whose Coordinator has not seen its own heartbeat
// come back for too long (its lease ran out) sends nothing, whatever its share says, until
// the lease is renewed: the others may already count it as gone.
func TestAdmitHoldsWithoutLease(t *testing.T) {
	l := New(Options{Rate: fixedRate(100)})
	if err := l.Admit(context.Background(), "app", "p2p", 1); err != nil {
		t.Fatalf("without a Coordinator Admit: %v", err)
	}
	l.renewLease(time.Now().Add(-time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	go func() {
		time.Sleep(100 * time.Millisecond)
		l.renewLease(time.Now().Add(time.Second))
	}()
	start := time.Now()
	if err := l.Admit(ctx, "app", "p2p", 1); err != nil {
		t.Fatalf("Admit after the lease was renewed: %v", err)
	}
	if took := time.Since(start); took < 90*time.Millisecond {
		t.Fatalf("Admit let a call go %v after it was asked, before the lease was renewed", took)
	}
	l.renewLease(time.Now().Add(-time.Millisecond))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := l.Admit(ctx2, "app", "p2p", 1); err == nil {
		t.Fatal("Admit let a call go with the lease run out")
	}
}
