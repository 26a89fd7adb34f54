package limiter

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestWaitPrecision runs many concurrent waiters through a busy phase, an idle lull and a
// second busy phase: no one-second window may hold more than the rate plus 5 % (plus the
// burst), and each busy phase must run at 98 % of the rate or more.
func TestWaitPrecision(t *testing.T) {
	const rate = 500.0
	l, rec := newLimiter(Options{Rate: fixedRate(rate), Logger: zerolog.Nop()})
	actual := &recorder{}
	busy := 1500 * time.Millisecond

	phase := func() (time.Time, time.Time) {
		ctx, cancel := context.WithTimeout(context.Background(), busy)
		defer cancel()
		start := time.Now()
		load(ctx, t, l, "app", "p2p", 200, 1, actual)()
		return start, start.Add(busy)
	}
	s1, e1 := phase()
	time.Sleep(time.Second) // a lull: the bucket must not fill up beyond its small burst
	s2, e2 := phase()

	burst := smallBurst(rate)
	most, at := rec.maxWindow(time.Second)
	limit := int(1.05*rate) + burst
	mostActual, _ := actual.maxWindow(time.Second)
	t.Logf("rate %.0f/s, burst %d: busiest 1 s window %d tokens (limit %d; %d as the callers ran), phase rates %.1f/s and %.1f/s",
		rate, burst, most, limit, mostActual, rec.rate(s1, e1), rec.rate(s2, e2))
	if most > limit {
		t.Errorf("a 1 s window from %v holds %d tokens, more than %d", at.Sub(s1), most, limit)
	}
	for i, p := range [][2]time.Time{{s1, e1}, {s2, e2}} {
		if got := rec.rate(p[0], p[1]); got < 0.98*rate {
			t.Errorf("phase %d ran at %.1f tokens/s, below 98 %% of %.0f", i+1, got, rate)
		}
	}
	// Right after the lull only the burst may go at once.
	if n := rec.tokens(s2, s2.Add(100*time.Millisecond)); n > int(0.1*rate)+burst+2 {
		t.Errorf("%d tokens in the first 100 ms after the lull, want about %d", n, int(0.1*rate)+burst)
	}
}

// TestWaitHeavy checks that a job heavier than the burst, even heavier than a whole second
// of budget, goes after waiting for its weight, and that heavy and light jobs mixed keep
// every one-second window within the rate plus 5 %.
func TestWaitHeavy(t *testing.T) {
	const rate = 400.0
	burst := smallBurst(rate)

	t.Run("alone", func(t *testing.T) {
		l := New(Options{Rate: fixedRate(rate), Logger: zerolog.Nop()})
		weight := int(1.2 * rate) // more than one second of budget
		start := time.Now()
		if err := l.Wait(context.Background(), "app", "p2p_more", weight, nil); err != nil {
			t.Fatal(err)
		}
		waited := time.Since(start)
		want := time.Duration(float64(weight-burst) / rate * float64(time.Second))
		t.Logf("weight %d at %.0f/s waited %v (expected %v)", weight, rate, waited, want)
		if waited < want-20*time.Millisecond || waited > want+300*time.Millisecond {
			t.Errorf("waited %v, want about %v", waited, want)
		}
		// Wait grants the next token at once; Admit holds it until the heavy job has left
		// the last second.
		if err := l.Admit(context.Background(), "app", "p2p_more", weight); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		if err := l.Wait(context.Background(), "app", "p2p_more", 1, nil); err != nil {
			t.Fatal(err)
		}
		if err := l.Admit(context.Background(), "app", "p2p_more", 1); err != nil {
			t.Fatal(err)
		}
		if held := time.Since(sent); held < 950*time.Millisecond {
			t.Errorf("a token right after a heavy job went after %v, want after the heavy job left the window (1 s)", held)
		}
	})

	for _, c := range []struct {
		name                                                 string
		lights, lightCalls, heavies, heavyCalls, heavyWeight int
	}{
		{"mixed", 80, 5, 2, 4, 40},
		{"heavy only", 0, 0, 4, 10, 20}, // 5 % of the rate each
	} {
		t.Run(c.name, func(t *testing.T) {
			l := New(Options{Rate: fixedRate(rate), Logger: zerolog.Nop()})
			rec := &recorder{}
			// Every worker makes a fixed number of calls, so the rate is measured up to the
			// last release, without jobs cut off at the end. Calls go through Wait and Admit,
			// as the worker's do; the windows are those of the releases.
			var wg sync.WaitGroup
			run := func(calls, weight int) {
				defer wg.Done()
				for range calls {
					if err := l.Wait(context.Background(), "app", "p2p", weight, nil); err != nil {
						t.Error(err)
						return
					}
					if err := l.Admit(context.Background(), "app", "p2p", weight); err != nil {
						t.Error(err)
						return
					}
					rec.add(weight)
				}
			}
			start := time.Now()
			for range c.lights {
				wg.Add(1)
				go run(c.lightCalls, 1)
			}
			for range c.heavies {
				wg.Add(1)
				go run(c.heavyCalls, c.heavyWeight)
			}
			wg.Wait()
			g := rec.sorted()
			elapsed := g[len(g)-1].at.Sub(start)
			total := rec.tokens(start, start.Add(elapsed+1))
			most, _ := rec.maxWindow(time.Second)
			limit := int(1.05*rate) + burst
			t.Logf("%d tokens with %d heavy jobs of %d in %v (%.0f/s); busiest 1 s window %d tokens (limit %d)",
				total, c.heavies*c.heavyCalls, c.heavyWeight, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), most, limit)
			if want := c.lights*c.lightCalls + c.heavies*c.heavyCalls*c.heavyWeight; total != want {
				t.Errorf("%d tokens released, want %d", total, want)
			}
			if most > limit {
				t.Errorf("a 1 s window holds %d tokens, more than %d", most, limit)
			}
			// At the rate, give or take the burst and the last heavy job; a loaded machine
			// may run the callers late, never early.
			least := time.Duration(float64(total-burst-c.heavyWeight) / rate * float64(time.Second))
			most2 := time.Duration(float64(total) / rate * float64(time.Second))
			if elapsed < least-30*time.Millisecond || elapsed > most2+most2/8 {
				t.Errorf("took %v, want between %v and %v", elapsed, least, most2+most2/8)
			}
		})
	}
}

// TestWaitCancelReturnsTokens cancels a waiting caller and checks that its tokens go to the
// next caller, for a weight within the burst and one above it.
func TestWaitCancelReturnsTokens(t *testing.T) {
	const rate = 5.0 // one token every 200 ms, burst 1
	for _, weight := range []int{1, 5} {
		l := New(Options{Rate: fixedRate(rate), Logger: zerolog.Nop()})
		bg := context.Background()
		if err := l.Wait(bg, "app", "p2p", 1, nil); err != nil { // spend the burst
			t.Fatal(err)
		}
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		err := l.Wait(ctx, "app", "p2p", weight, nil)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("weight %d: Wait returned %v, want context.DeadlineExceeded", weight, err)
		}
		if d := time.Since(t0); d > 150*time.Millisecond {
			t.Errorf("weight %d: cancelled Wait returned after %v", weight, d)
		}
		if err := l.Wait(bg, "app", "p2p", 1, nil); err != nil {
			t.Fatal(err)
		}
		// With the tokens given back the next one is due 200 ms after t0; without, at
		// least 400 ms.
		if d := time.Since(t0); d < 150*time.Millisecond || d > 330*time.Millisecond {
			t.Errorf("weight %d: next token after the cancelled wait came %v after it began, want about 200ms", weight, d)
		}
	}

	l := New(Options{Rate: fixedRate(rate), Logger: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx, "app", "p2p", 1, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a done context returned %v", err)
	}
	if got := l.Share("app", "p2p"); got != 1 {
		t.Errorf("Share alone = %v, want 1", got)
	}
}

// TestWaitHeartbeat checks that a long wait calls its heartbeat on schedule and a short
// one not at all.
func TestWaitHeartbeat(t *testing.T) {
	const every = 40 * time.Millisecond
	l := New(Options{Rate: fixedRate(1), Logger: zerolog.Nop(), HeartbeatEvery: every})
	var beats atomic.Int32
	hb := func() { beats.Add(1) }
	if err := l.Wait(context.Background(), "app", "ucs", 1, hb); err != nil { // the burst
		t.Fatal(err)
	}
	if n := beats.Load(); n != 0 {
		t.Errorf("a wait without delay called the heartbeat %d times", n)
	}
	start := time.Now()
	if err := l.Wait(context.Background(), "app", "ucs", 1, hb); err != nil { // ~1 s
		t.Fatal(err)
	}
	waited := time.Since(start)
	want := int32(waited / every)
	n := beats.Load()
	t.Logf("waited %v, %d heartbeats (every %v)", waited, n, every)
	if waited < 900*time.Millisecond {
		t.Errorf("waited only %v for a token at 1/s", waited)
	}
	if n < want/2 || n > want { // late timers on a loaded machine mean fewer
		t.Errorf("%d heartbeats during %v, want about %d", n, waited, want)
	}

	// Heartbeats continue while a cancelled waiter is stopped, and stop with it.
	beats.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*every/2)
	err := l.Wait(ctx, "app", "ucs", 1, hb)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait returned %v", err)
	}
	after := beats.Load()
	time.Sleep(2 * every)
	if n := beats.Load(); after < 1 || after > 2 || n != after {
		t.Errorf("heartbeats during a cancelled 2.5-interval wait: %d, then %d after it returned; want 2 (1 if late), then none", after, n)
	}
}

// TestPenalize checks that a penalized class sends nothing for the penalty, then resumes at
// its rate without a burst, that other classes keep going, and that a shorter penalty
// does not cut a longer one short.
func TestPenalize(t *testing.T) {
	const rate = 100.0
	l := New(Options{Rate: fixedRate(rate), Logger: zerolog.Nop(), HeartbeatEvery: 50 * time.Millisecond})
	penalized, other := &recorder{}, &recorder{}
	l.onGrant = func(class string, at time.Time, n int) {
		if class == "p2p" {
			penalized.addAt(at, n)
		} else {
			other.addAt(at, n)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w1 := load(ctx, t, l, "app", "p2p", 30, 1, nil)
	w2 := load(ctx, t, l, "app", "p2t", 30, 1, nil)
	time.Sleep(300 * time.Millisecond)

	const pen = 400 * time.Millisecond
	tp := time.Now()
	l.Penalize("app", "p2p", pen)
	l.Penalize("app", "p2p", pen/4) // shorter: must not shorten it
	var beats atomic.Int32
	hbDone := make(chan error, 1)
	go func() { // a new caller during the penalty waits, with heartbeats
		hbDone <- l.Wait(ctx, "app", "p2p", 1, func() { beats.Add(1) })
	}()
	time.Sleep(pen + 700*time.Millisecond)
	cancel()
	w1()
	w2()
	if err := <-hbDone; err != nil {
		t.Fatal(err)
	}

	end := tp.Add(pen)
	if n := penalized.tokens(tp, end); n > 0 {
		t.Errorf("%d tokens granted during the penalty", n)
	}
	if n := other.tokens(tp, end); n < int(0.9*rate*pen.Seconds()) {
		t.Errorf("another class got only %d tokens during the penalty", n)
	}
	// The callers wake when it ends (later on a loaded machine) and go on at the rate.
	var resume time.Time
	for _, g := range penalized.sorted() {
		if !g.at.Before(end) {
			resume = g.at
			break
		}
	}
	if resume.IsZero() || resume.Sub(end) > 300*time.Millisecond {
		t.Fatalf("nothing sent within 300ms after the penalty (first at %v)", resume.Sub(end))
	}
	after := penalized.tokens(resume, resume.Add(400*time.Millisecond))
	first := penalized.tokens(resume, resume.Add(100*time.Millisecond))
	t.Logf("after the penalty: resumed after %v, %d tokens in 400 ms, %d in the first 100 ms; %d heartbeats while waiting",
		resume.Sub(end).Round(time.Millisecond), after, first, beats.Load())
	if after < int(0.9*rate*0.4) {
		t.Errorf("only %d tokens in the 400 ms after the penalty", after)
	}
	if first > int(0.1*rate)+smallBurst(rate)+1 {
		t.Errorf("%d tokens in the first 100 ms after the penalty: a burst", first)
	}
	if beats.Load() < 3 {
		t.Errorf("a caller waiting out a %v penalty heartbeat %d times", pen, beats.Load())
	}
}

// TestWaitUnlimited checks that a class without a positive rate is not limited.
func TestWaitUnlimited(t *testing.T) {
	for _, r := range []float64{0, -1, math.Inf(1)} {
		l := New(Options{Rate: fixedRate(r), Logger: zerolog.Nop()})
		start := time.Now()
		for range 10000 {
			if err := l.Wait(context.Background(), "app", "notify", 5, nil); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("rate %v: 10000 waits took %v", r, d)
		}
	}
}

// TestWaitAllocations checks that Wait allocates nothing, with or without waiting.
func TestWaitAllocations(t *testing.T) {
	l := New(Options{Rate: fixedRate(1e9), Logger: zerolog.Nop()})
	ctx := context.Background()
	_ = l.Wait(ctx, "app", "p2p", 1, nil) // create the entry
	if n := testing.AllocsPerRun(1000, func() { _ = l.Wait(ctx, "app", "p2p", 1, nil) }); n != 0 {
		t.Errorf("Wait without waiting: %v allocations", n)
	}
	// 20000/s with burst 200: after the burst every call waits ~50µs on a timer.
	l = New(Options{Rate: fixedRate(20000), Logger: zerolog.Nop()})
	hb := func() {}
	_ = l.Wait(ctx, "app", "p2p", 1, hb)
	if n := testing.AllocsPerRun(1000, func() { _ = l.Wait(ctx, "app", "p2p", 1, hb) }); n > 0.01 {
		t.Errorf("Wait with waiting: %v allocations", n)
	}
}

func BenchmarkWait(b *testing.B) {
	l := New(Options{Rate: fixedRate(1e12), Logger: zerolog.Nop()})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = l.Wait(ctx, "app", "p2p", 1, nil)
		}
	})
}

// TestWaitReleasesOnTicks: under a backlog, callers are released together on a grid of one
// burst's refill time (10 ms at 1,000/s), not one by one every millisecond, so that the
// jobs move on in groups whose NATS and HTTP work is shared; the rate still holds in every
// sliding second. Throttled says so while callers wait, and not for an unlimited class.
func TestWaitReleasesOnTicks(t *testing.T) {
	const rate = 1000.0
	l, rec := newLimiter(Options{Rate: func(_, class string) float64 {
		if class == "free" {
			return 0
		}
		return rate
	}})
	if l.Throttled("app", "p2p") {
		t.Fatal("Throttled before any caller waited")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	wait := load(ctx, t, l, "app", "p2p", 64, 1, nil)
	wait()
	g := rec.sorted()
	instants, off := map[int64]int{}, 0
	for _, x := range g {
		instants[x.at.UnixNano()]++
		if (x.at.UnixNano()-int64(l.Phase()))%int64(10*time.Millisecond) != 0 {
			off++ // tokens were there at once (the bucket refilled while callers ran late)
		}
	}
	if len(g) < 1500 {
		t.Fatalf("%d grants in 2 s at %v/s", len(g), rate)
	}
	if off > len(g)/10 {
		t.Errorf("%d of %d grants off the 10 ms grid", off, len(g))
	}
	if per := float64(len(g)) / float64(len(instants)); per < 5 {
		t.Errorf("%d grants at %d instants (%.1f each): callers are not released in groups", len(g), len(instants), per)
	}
	if n, at := rec.maxWindow(time.Second); n > int(rate)+smallBurst(rate) {
		t.Errorf("%d tokens in the second from %v, limit %v + burst %d", n, at, rate, smallBurst(rate))
	}
	if !l.Throttled("app", "p2p") {
		t.Error("Throttled is false right after callers waited")
	}
	if err := l.Wait(context.Background(), "app", "free", 1, nil); err != nil || l.Throttled("app", "free") {
		t.Errorf("unlimited class: Wait %v, Throttled %v", err, l.Throttled("app", "free"))
	}
}
