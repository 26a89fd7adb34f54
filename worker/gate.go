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
// second of the class's rate (in tokens: weighted jobs count their weight) queue for tokens
// and fills what frees up from the waiting types in turn, so a job of another type waits for
// a quarter second of budget and its turn, not for the backlog.
type gates struct {
	mu sync.Mutex
	m  map[gateKey]*gate
}

type gateKey struct{ app, class string }

type gate struct {
	mu      sync.Mutex
	size    int                      // tokens that may queue for the limiter at once
	free    int                      // of them, not taken
	waiting map[string][]*gateWaiter // per job type, in arrival order
	turns   []string                 // the types with waiting jobs, next first
}

type gateWaiter struct {
	ch   chan struct{}
	need int
}

// gateSize is how many tokens of an app and class may queue for the limiter at once: a
// quarter of a second of the rate, at least 4 (enough to keep the limiter busy at any rate)
// and at most limit. A job heavier than that enters alone.
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
		g = &gate{size: size, free: size, waiting: map[string][]*gateWaiter{}}
		gs.m[k] = g
	}
	return g
}

// need is what a job of weight takes of the gate: its weight, or the whole gate.
func (g *gate) need(weight int) int { return min(max(weight, 1), g.size) }

// enter waits until the job's weight fits, calling heartbeat every beat while it waits. It
// returns false when ctx ends first.
func (g *gate) enter(ctx context.Context, jobType string, weight int, heartbeat func(), beat time.Duration) bool {
	n := g.need(weight)
	g.mu.Lock()
	if g.free >= n && len(g.turns) == 0 {
		g.free -= n
		g.mu.Unlock()
		return true
	}
	w := &gateWaiter{ch: make(chan struct{}), need: n}
	if len(g.waiting[jobType]) == 0 {
		g.turns = append(g.turns, jobType)
	}
	g.waiting[jobType] = append(g.waiting[jobType], w)
	g.mu.Unlock()

	t := time.NewTicker(beat)
	defer t.Stop()
	for {
		select {
		case <-w.ch:
			return true
		case <-t.C:
			heartbeat()
		case <-ctx.Done():
			g.mu.Lock()
			if g.drop(jobType, w) {
				g.mu.Unlock()
				return false
			}
			g.mu.Unlock()
			g.leave(weight) // the place was handed to us meanwhile: pass it on
			return false
		}
	}
}

// drop removes a waiter that gave up; false when it is no longer waiting.
func (g *gate) drop(jobType string, w *gateWaiter) bool {
	q := g.waiting[jobType]
	for i, c := range q {
		if c != w {
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

// leave gives back what a job of weight took, and hands it on: to the first waiting job of
// the type whose turn it is, as long as that job fits (that type then goes to the back of
// the turns). A job that does not fit yet keeps its turn: lighter types do not overtake it.
func (g *gate) leave(weight int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.free += g.need(weight)
	for len(g.turns) > 0 {
		t := g.turns[0]
		q := g.waiting[t]
		w := q[0]
		if w.need > g.free {
			return
		}
		g.free -= w.need
		g.turns = g.turns[1:]
		if len(q) > 1 {
			g.waiting[t] = q[1:]
			g.turns = append(g.turns, t)
		} else {
			delete(g.waiting, t)
		}
		close(w.ch)
	}
}
