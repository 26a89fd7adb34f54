package limiter

import (
	"testing"
	"time"
)

// TestReleasedWindow checks the guard on actual releases: a second of releases never holds
// more than the limit, a late bunch is spread out, and a release heavier than the limit
// goes alone once the window is empty.
func TestReleasedWindow(t *testing.T) {
	var r released
	t0 := time.Now().UnixNano()
	r.setShare(t0, 1)
	ms := int64(time.Millisecond)
	for i := range 10 {
		if ok, _ := r.take(t0+int64(i)*ms, 1, 10, 0); !ok {
			t.Fatalf("release %d refused below the limit", i)
		}
	}
	ok, retry := r.take(t0+100*ms, 1, 10, 0)
	if ok {
		t.Fatal("an 11th token within one second was let go")
	}
	if want := t0 + window + 1; retry != want {
		t.Fatalf("retry at %d, want %d (when the oldest release leaves the window)", retry-t0, want-t0)
	}
	if ok, _ := r.take(retry, 1, 10, 0); !ok {
		t.Fatal("refused once the oldest release left the window")
	}
	ok, retry = r.take(retry, 25, 10, 0)
	if ok {
		t.Fatal("a release heavier than the limit went into a non-empty window")
	}
	if ok, _ := r.take(retry, 25, 10, 0); !ok {
		t.Fatal("a heavy release did not go once the window was empty")
	}
	if ok, _ := r.take(retry+window/2, 1, 10, 0); ok {
		t.Fatal("a token went into the window of a heavy release")
	}
}

// TestReleasedFollowsTheShares: what a replica may have released in a sliding second is
// what its shares allowed over that second, so a raised share opens up over a second
// instead of at once (the others may have used their old, higher shares in that second),
// and a lowered one closes at once only as far as the second already spent allows.
func TestReleasedFollowsTheShares(t *testing.T) {
	var r released
	ms := int64(time.Millisecond)
	t0 := time.Now().UnixNano()
	r.setShare(t0, 0.25) // 250/s of a 1000/s rate, for over a second
	t1 := t0 + 2*window
	r.setShare(t1, 0.5) // raised: 500/s from t1
	// Callers held for a while (their tokens came due earlier) all try to go at t1+100ms.
	// The second before held a quarter share for 900 ms and half a share for 100 ms:
	// 225 + 50 tokens, plus the burst of 5.
	now := t1 + 100*ms
	sent := 0
	for {
		ok, retry := r.take(now, 1, 1000, 5)
		if !ok {
			if retry > now+rampCheck {
				t.Fatalf("held until %d ms later while the allowance still grows", (retry-now)/ms)
			}
			break
		}
		sent++
	}
	if sent != 280 {
		t.Fatalf("%d tokens let go at once after the raise, want 280 (275 allowed + burst 5); the raised share alone would allow 505", sent)
	}
	// 100 ms later the second holds 200 ms of the higher share: 25 more.
	now += 100 * ms
	more := 0
	for {
		if ok, _ := r.take(now, 1, 1000, 5); !ok {
			break
		}
		more++
	}
	if more != 25 {
		t.Fatalf("%d more tokens 100 ms later, want 25", more)
	}
	// A share in force for over a second counts alone.
	if got := r.allowed(t1 + 3*window); got != 0.5 {
		t.Fatalf("allowed %.3f a while after the raise, want 0.5", got)
	}
	if len(r.shares) > 2 {
		t.Fatalf("%d shares kept", len(r.shares))
	}
}
