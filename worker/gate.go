package worker

import (
	"context"
	"math"
	"sync"
	"time"
)

// gates hold, per app and rate class, the jobs that may queue for rate tokens. Each job type
// has its own consumer, so a backlog of one type does not keep another type's jobs on the
// stream; but the limiter serves callers in the order they asked, so a job of a quiet type
// would still wait behind every job of a busy type of the same class that the worker holds
// (up to its max ack pending: 256 jobs, 13 s at 20/s). A gate lets only about a quarter of a
// second of the class's rate queue for tokens and fills free places from the waiting types in
// turn, so a job of another type waits for a quarter second of budget and its turn, not for
// the backlog.
type gates struct {
	mu sync.Mutex
	m  map[gateKey]*gate
}

type gateKey struct{ app, class string }

type gate struct {
	mu      sync.Mutex
	free    int
	waiting map[string][]chan struct{} // per job type, in arrival order
	turns   []string                   // the types with waiting jobs, next first
}

// gateSize is how many jobs of an app and class may queue for tokens at once: a quarter of
// a second of the rate, at least 4 (enough to keep the limiter busy at any rate) and at most
// limit.
func gateSize(rate float64, limit int) int {
	if rate <= 0 || math.IsInf(rate, 1) {
		return limit
	}
	return min(max(int(math.Ceil(rate/4)), 4), limit)
}

func (gs *gates) get(app, class string, size int) *gate {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.m == nil {
		gs.m = map[gateKey]*gate{}
	}
	k := gateKey{app, class}
	g := gs.m[k]
	if g == nil {
		g = &gate{free: size, waiting: map[string][]chan struct{}{}}
		gs.m[k] = g
	}
	return g
}

// enter waits for a place, calling heartbeat every beat while it waits. It returns false
// when ctx ends first.
func (g *gate) enter(ctx context.Context, jobType string, heartbeat func(), beat time.Duration) bool {
	g.mu.Lock()
	if g.free > 0 && len(g.turns) == 0 {
		g.free--
		g.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	if len(g.waiting[jobType]) == 0 {
		g.turns = append(g.turns, jobType)
	}
	g.waiting[jobType] = append(g.waiting[jobType], ch)
	g.mu.Unlock()

	t := time.NewTicker(beat)
	defer t.Stop()
	for {
		select {
		case <-ch:
			return true
		case <-t.C:
			heartbeat()
		case <-ctx.Done():
			g.mu.Lock()
			if g.drop(jobType, ch) {
				g.mu.Unlock()
				return false
			}
			g.mu.Unlock()
			g.leave() // the place was handed to us meanwhile: pass it on
			return false
		}
	}
}

// drop removes a waiter that gave up; false when it is no longer waiting.
func (g *gate) drop(jobType string, ch chan struct{}) bool {
	q := g.waiting[jobType]
	for i, c := range q {
		if c != ch {
			continue
		}
		q = append(q[:i], q[i+1:]...)
		if len(q) > 0 {
			g.waiting[jobType] = q
			return true
		}
		delete(g.waiting, jobType)
		for j, t := range g.turns {
			if t == jobType {
				g.turns = append(g.turns[:j], g.turns[j+1:]...)
				break
			}
		}
		return true
	}
	return false
}

// leave frees a place: it goes to the first waiting job of the type whose turn it is, and
// that type goes to the back of the turns.
func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.turns) == 0 {
		g.free++
		return
	}
	t := g.turns[0]
	q := g.waiting[t]
	ch := q[0]
	g.turns = g.turns[1:]
	if len(q) > 1 {
		g.waiting[t] = q[1:]
		g.turns = append(g.turns, t)
	} else {
		delete(g.waiting, t)
	}
	close(ch)
}
