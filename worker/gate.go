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
//
// The waiting jobs are kept per priority lane: high first, then normal, then low, with a
// guaranteed share for the lower lanes (nextLane); while lanes other than normal are in use,
// only a fifth of the size queues (fits), so a high job waits behind little.
type gates struct {
	mu sync.Mutex
	m  map[gateKey]*gate
}

type gateKey struct{ app, class string }

type gate struct {
	mu     sync.Mutex
	size   int             // tokens that may queue for the limiter at once
	small  int             // size while high-priority jobs come: a shorter limiter queue
	taken  int             // tokens that entered and did not leave yet
	lanes2 time.Time       // when a job of the high or low lane last entered or queued
	lanes  [lanes]gateLane // the waiting jobs per priority: high, normal, low
	grants uint64          // places handed on to waiting jobs, for the lower lanes' share
}

// lanes is the number of priority lanes (jobs.Priority.Lane).
const lanes = 3

// A gate hands its free places to waiting high jobs first, then normal, then low, except
// that every laneShare-th place goes to the normal lane and every 2*laneShare-th to the low
// lane while they have jobs waiting: lower lanes get at least 1/laneShare and
// 1/(2*laneShare) of the class's budget, so they are never starved (README "Campaigns").
const laneShare = 10

// gateLane is one priority's waiting jobs.
type gateLane struct {
	waiting map[string][]*gateWaiter // per job type, in arrival order
	turns   []string                 // the types with waiting jobs, next first
}

func (g *gate) waitingAny() bool {
	return len(g.lanes[0].turns)+len(g.lanes[1].turns)+len(g.lanes[2].turns) > 0
}

// lanesFor is how long a gate stays small after a job of the high or low lane came.
const lanesFor = 5 * time.Second

// fits reports whether a job that needs n may enter now: the gate is empty (a job heavier
// than the gate enters alone), or n fits in its capacity. While jobs of the high or low
// lane come, the capacity is a fifth of the size (about 50 ms of the rate instead of
// 250 ms): a high job waits in the limiter only behind that much, however long the backlog
// of lower lanes.
func (g *gate) fits(n int) bool {
	c := g.size
	if !g.lanes2.IsZero() && time.Since(g.lanes2) < lanesFor {
		c = g.small
	}
	return g.taken == 0 || g.taken+n <= c
}

// nextLane is the lane the next free place goes to; -1 when no job waits.
func (g *gate) nextLane() int {
	k := g.grants + 1
	if k%(2*laneShare) == 0 && len(g.lanes[2].turns) > 0 {
		return 2
	}
	if k%laneShare == 0 && len(g.lanes[1].turns) > 0 {
		return 1
	}
	for i := range g.lanes {
		if len(g.lanes[i].turns) > 0 {
			return i
		}
	}
	return -1
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
		g = &gate{size: size, small: max(size/5, min(size, 4))}
		for i := range g.lanes {
			g.lanes[i].waiting = map[string][]*gateWaiter{}
		}
		gs.m[k] = g
	}
	return g
}

// need is what a job of weight takes of the gate: its weight, or the whole gate.
func (g *gate) need(weight int) int { return min(max(weight, 1), g.size) }

// enter waits until the job's weight fits, calling heartbeat every beat while it waits. It
// returns false when ctx ends first. lane is the job's priority lane (0 high, 1 normal,
// 2 low).
func (g *gate) enter(ctx context.Context, jobType string, lane, weight int, heartbeat func(), beat time.Duration) bool {
	n := g.need(weight)
	g.mu.Lock()
	if lane != 1 {
		g.lanes2 = time.Now()
	}
	if g.fits(n) && !g.waitingAny() {
		g.taken += n
		g.mu.Unlock()
		return true
	}
	w := &gateWaiter{ch: make(chan struct{}), need: n}
	l := &g.lanes[lane]
	if len(l.waiting[jobType]) == 0 {
		l.turns = append(l.turns, jobType)
	}
	l.waiting[jobType] = append(l.waiting[jobType], w)
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
			if g.drop(lane, jobType, w) {
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
func (g *gate) drop(lane int, jobType string, w *gateWaiter) bool {
	l := &g.lanes[lane]
	q := l.waiting[jobType]
	for i, c := range q {
		if c != w {
			continue
		}
		q = append(q[:i], q[i+1:]...)
		if len(q) > 0 {
			l.waiting[jobType] = q
			return true
		}
		delete(l.waiting, jobType)
		for j, t := range l.turns {
			if t == jobType {
				l.turns = append(l.turns[:j], l.turns[j+1:]...)
				break
			}
		}
		return true
	}
	return false
}

// leave gives back what a job of weight took, and hands it on: to the lane whose turn it
// is (nextLane), there to the first waiting job of the type whose turn it is, as long as
// that job fits (that type then goes to the back of the lane's turns). A job that does not
// fit yet keeps its turn: lighter types do not overtake it.
func (g *gate) leave(weight int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.taken -= g.need(weight)
	for {
		i := g.nextLane()
		if i < 0 {
			return
		}
		l := &g.lanes[i]
		t := l.turns[0]
		q := l.waiting[t]
		w := q[0]
		if !g.fits(w.need) {
			return
		}
		g.taken += w.need
		g.grants++
		l.turns = l.turns[1:]
		if len(q) > 1 {
			l.waiting[t] = q[1:]
			l.turns = append(l.turns, t)
		} else {
			delete(l.waiting, t)
		}
		close(w.ch)
	}
}
