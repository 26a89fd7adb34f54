package worker

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestGateTakesTurns: with the gate full, a job of a quiet type waits for one place, not
// behind every queued job of a busy type; a waiter that gives up passes no place away.
func TestGateTakesTurns(t *testing.T) {
	g := (&gates{}).get("default", "p2p", 1)
	if !g.enter(context.Background(), "p2p", 1, 1, func() {}, time.Second) {
		t.Fatal("the first job did not enter a free gate")
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queue := func(name, typ string, ctx context.Context) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.enter(ctx, typ, 1, 1, func() {}, time.Second) {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				g.leave(1)
			}
		}()
		eventually(t, time.Second, name+" queued", func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return slices.Contains(g.lanes[1].turns, typ)
		})
		time.Sleep(10 * time.Millisecond) // in arrival order
	}
	for _, n := range []string{"p2p-1", "p2p-2", "p2p-3", "p2p-4"} {
		queue(n, "p2p", context.Background())
	}
	gone, cancel := context.WithCancel(context.Background())
	queue("ucs-gone", "p2p_more", gone) // gives up before its turn
	cancel()
	eventually(t, time.Second, "the waiter that gave up is dropped", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return !slices.Contains(g.lanes[1].turns, "p2p_more")
	})
	queue("more-1", "p2p_more", context.Background())
	g.leave(1)
	wg.Wait()
	if want := []string{"p2p-1", "more-1", "p2p-2", "p2p-3", "p2p-4"}; !slices.Equal(order, want) {
		t.Fatalf("admitted %v, want %v", order, want)
	}
	if g.taken != 0 || g.waitingAny() {
		t.Fatalf("gate left with %d taken, lanes %v", g.taken, g.lanes)
	}
}

// TestGateWeights: a job heavier than the gate enters alone, once the gate is empty, and
// lighter jobs behind it do not overtake it.
func TestGateWeights(t *testing.T) {
	g := (&gates{}).get("default", "p2p", 4)
	for range 4 {
		if !g.enter(context.Background(), "p2p", 1, 1, func() {}, time.Second) {
			t.Fatal("a light job did not enter a free gate")
		}
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queue := func(name, typ string, weight int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.enter(context.Background(), typ, 1, weight, func() {}, time.Second) {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				g.leave(weight)
			}
		}()
		eventually(t, time.Second, name+" queued", func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			for _, w := range g.lanes[1].waiting[typ] {
				if w.need == g.need(weight) {
					return true
				}
			}
			return false
		})
	}
	queue("heavy", "p2p_more", 10)
	queue("light-5", "p2p", 1)
	for range 3 {
		g.leave(1)
	}
	mu.Lock()
	if len(order) != 0 {
		t.Fatalf("admitted %v before the gate was empty", order)
	}
	mu.Unlock()
	queue("light-6", "p2p", 1)
	g.leave(1)
	wg.Wait()
	if len(order) != 3 || order[0] != "heavy" { // the two light ones enter together
		t.Fatalf("admitted %v, want heavy first", order)
	}
	if g.taken != 0 || g.waitingAny() {
		t.Fatalf("gate left with %d taken, lanes %v", g.taken, g.lanes)
	}
}

func TestGateSize(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want int
	}{{1, 4}, {20, 5}, {1000, 250}, {1e6, 256}} {
		if got := gateSize(c.rate, 256); got != c.want {
			t.Errorf("gateSize(%v) = %d, want %d", c.rate, got, c.want)
		}
	}
}

// eventually fails the test unless cond holds within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestGateLanes: waiting high jobs enter before normal and low ones, but the low lane
// gets every 20th place while it waits (and normal every 10th), so it is never starved.
func TestGateLanes(t *testing.T) {
	g := (&gates{}).get("default", "p2p", 1)
	if !g.enter(context.Background(), "p2p", 1, 1, func() {}, time.Second) {
		t.Fatal("the first job did not enter a free gate")
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queue := func(name string, lane int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.enter(context.Background(), "p2p", lane, 1, func() {}, time.Second) {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				g.leave(1)
			}
		}()
	}
	for range 5 {
		queue("low", 2)
	}
	for range 25 {
		queue("high", 0)
	}
	eventually(t, time.Second, "every job queued", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.lanes[0].waiting["p2p"]) == 25 && len(g.lanes[2].waiting["p2p"]) == 5
	})
	g.leave(1)
	wg.Wait()
	want := slices.Repeat([]string{"high"}, 19)
	want = append(want, "low")
	want = append(want, slices.Repeat([]string{"high"}, 6)...)
	want = append(want, "low", "low", "low", "low")
	if !slices.Equal(order, want) {
		t.Fatalf("admitted %v, want %v", order, want)
	}
}
