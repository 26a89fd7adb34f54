// Package limiter hands out upstream rate budget per app and rate class.
//
// A Limiter keeps one token bucket (golang.org/x/time/rate) per (app, class) with a small
// burst, so that no sliding one-second window holds more than the rate plus about 1 %, also
// after a lull. A Coordinator splits each configured rate among the live replicas of the
// worker through a JetStream key-value bucket, so that the replicas together stay within it.
package limiter

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// burstFraction is the burst of a bucket as a fraction of its rate. A bucket that could
// hold a whole second of tokens would let twice the rate into one second after a lull.
const burstFraction = 0.01

// maxTick bounds the release grid of a slow bucket (one of a burst of 1 at 20/s would
// otherwise release every 50 ms, adding up to that much latency to each job).
const maxTick = 10 * time.Millisecond

// DefaultHeartbeatEvery is how often Wait calls its heartbeat while it waits, unless
// Options.HeartbeatEvery says otherwise.
const DefaultHeartbeatEvery = 10 * time.Second

// Options configure a Limiter.
type Options struct {
	// Rate returns the configured tokens per second of (app, class) for the whole
	// deployment. A rate that is not positive and finite means no limit. A nil Rate limits
	// nothing.
	Rate func(app, class string) float64
	// Logger receives share changes and warnings.
	Logger zerolog.Logger
	// HeartbeatEvery is how often Wait calls its heartbeat while it waits (default 10s).
	HeartbeatEvery time.Duration
}

// Limiter hands out rate tokens per (app, class). It is safe for use by many goroutines.
// Alone it uses the whole configured rate; with a Coordinator it uses its replica's share.
type Limiter struct {
	rateOf  func(app, class string) float64
	log     zerolog.Logger
	hbEvery time.Duration
	base    time.Time // monotonic origin of penalty deadlines
	phase   int64     // see Phase

	mu      sync.Mutex                     // serializes entry creation
	entries atomic.Pointer[map[key]*entry] // copy on write: read without locks
	// defaultShare is the share a new (app, class) starts with, as float64 bits.
	defaultShare atomic.Uint64
	// created is signalled when an entry is created, for the Coordinator.
	created chan struct{}
	// lease is when the shares stop holding, in nanoseconds since base; 0 means they do
	// not expire (no Coordinator). A Coordinator renews it whenever its own heartbeat comes
	// back: should its loop be stuck in a NATS call, the replica stops sending by itself.
	lease atomic.Int64

	timers sync.Pool // *time.Timer, stopped

	// onGrant, when set (by tests, before any Wait), learns the time the limiter meant
	// each grant to happen at, whatever the scheduler made of it.
	onGrant func(class string, at time.Time, n int)
}

type key struct{ app, class string }

// entry is the budget of one (app, class) on this replica.
type entry struct {
	app, class string
	rate       float64 // configured for the deployment; 0 means unlimited

	mu  sync.Mutex             // serializes reservations and bucket swaps
	cur atomic.Pointer[bucket] // the bucket in use

	penaltyUntil atomic.Int64 // nanoseconds since Limiter.base; nothing is sent before it

	rel released // what actually left Wait in the last second

	// Demand counters, read by the Coordinator.
	requested atomic.Int64 // tokens asked for by Wait, cumulative
	waited    atomic.Int64 // nanoseconds of reservation delay handed out, cumulative
	waiting   atomic.Int64 // callers in Wait now

	delayedAt atomic.Int64 // when a caller last had to wait for tokens (since Limiter.base)
	phase     int64        // the limiter's (see Phase)
}

// bucket is one generation of an entry's token bucket. It is never changed in place: a
// new share or a penalty installs a new bucket and closes the old one's changed channel, so
// that callers waiting on the old one reserve again on the new one.
type bucket struct {
	lim     *rate.Limiter // nil when the share is 0: nothing may be sent
	rate    float64       // tokens per second: the entry's rate times share
	burst   int
	tick    int64 // nanoseconds the bucket takes to refill its burst: the release grid
	phase   int64 // the grid's offset (Limiter.Phase)
	share   float64
	changed chan struct{}
}

// onTick returns t rounded up to the bucket's release grid. Callers due within one tick are
// released together at its end instead of one by one: under a rate limit the jobs then move
// through NATS and the upstream client in small groups, whose writes and wakeups are shared
// (one flush, one read, one scheduler wake-up for the group instead of for each job), which
// is what a job costs when a backlog drains unthrottled. A group is at most the burst, which
// the bucket may release at once anyway, so no sliding second holds more than before.
func (b *bucket) onTick(t time.Time) time.Time {
	if b.tick <= 1 {
		return t
	}
	ns := t.UnixNano() - b.phase
	if r := ns % b.tick; r != 0 {
		ns += b.tick - r
	}
	return time.Unix(0, ns+b.phase)
}

// Phase is where this limiter's release grid starts within maxTick (wall clock): random
// per replica, so that the replicas' groups reach the upstream one after another instead
// of all at the same instants. The worker sends its batched NATS writes on the same grid.
func (l *Limiter) Phase() time.Duration { return time.Duration(l.phase) }

// New returns a Limiter. Each (app, class) gets its bucket on first use.
func New(opts Options) *Limiter {
	l := &Limiter{
		rateOf:  opts.Rate,
		log:     opts.Logger,
		hbEvery: opts.HeartbeatEvery,
		base:    time.Now(),
		phase:   rand.Int64N(int64(maxTick)),
		created: make(chan struct{}, 1),
	}
	if l.hbEvery <= 0 {
		l.hbEvery = DefaultHeartbeatEvery
	}
	l.defaultShare.Store(math.Float64bits(1))
	return l
}

// Wait blocks until weight tokens of (app, class) are available to this replica. While it
// waits it calls heartbeat (if not nil) every HeartbeatEvery, so that the caller can keep
// its message from being redelivered. If ctx ends first, Wait gives back the tokens it had
// reserved and returns ctx.Err().
//
// Callers are served in the order they asked. A weight above the bucket's burst is reserved
// as one debt, so a heavy job goes after waiting for its whole weight and lighter jobs
// queue behind it. The second after a heavy job would still get a full second of tokens
// besides its weight: Admit, not Wait, holds those callers back (it keeps every sliding
// second of releases within the rate plus the burst). An earlier version made them wait
// here for a debt of the heavy job's weight again, which took a heavy-only backlog to 55 %
// of the rate.
func (l *Limiter) Wait(ctx context.Context, app, class string, weight int, heartbeat func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if weight <= 0 {
		return nil
	}
	e := l.entry(app, class)
	e.requested.Add(int64(weight))
	e.waiting.Add(1)
	defer e.waiting.Add(-1)

	var (
		w = waiter{l: l, ctx: ctx, heartbeat: heartbeat}
		r rate.Reservation
	)
	defer w.release()
	for {
		b := e.cur.Load()
		now := time.Now()
		if until := e.penalty(l, now); until > 0 {
			if w.sleep(b.changed, now.Add(until)) == stopped {
				return w.err
			}
			continue
		}
		if e.rate == 0 {
			l.granted(e, now, weight)
			return nil
		}
		if b.lim == nil { // no share: wait until the Coordinator grants one
			why := w.sleep(b.changed, time.Time{})
			e.waited.Add(int64(time.Since(now)))
			if why == stopped {
				return w.err
			}
			continue
		}
		now, ok := e.reserve(b, weight, &r)
		if !ok {
			continue // the bucket was replaced meanwhile
		}
		delay := r.DelayFrom(now)
		if delay <= 0 {
			return l.release(e, &w, weight, now)
		}
		e.waited.Add(int64(delay))
		e.delayedAt.Store(int64(now.Sub(l.base)))
		at := b.onTick(now.Add(delay))
		switch w.sleep(b.changed, at) {
		case woke:
			if !b.isChanged() {
				return l.release(e, &w, weight, at)
			}
			// The share changed or a penalty began while we slept: the reservation
			// belongs to a bucket no longer in use, so reserve again on the new one.
		case changed:
		default:
			e.cancel(&r)
			return w.err
		}
	}
}

// release records a grant.
func (l *Limiter) release(e *entry, _ *waiter, weight int, at time.Time) error {
	l.granted(e, at, weight)
	return nil
}

// Admit is the last step before an upstream call whose tokens Wait granted: it lets calls
// go at the pace of this replica's rate (one burst ahead at most) and holds the caller
// while sending now would put more than that rate into the last second of sends
// (released). The bucket decides when tokens are due; Admit guards what the
// upstream sees, whatever happened between the grant and the call (a scheduler stall, a
// wait for a concurrency slot), so callers released late do not go out in a bunch.
func (l *Limiter) Admit(ctx context.Context, app, class string, weight int) error {
	if weight <= 0 {
		return nil
	}
	e := l.entry(app, class)
	if e.rate == 0 {
		return nil
	}
	// A caller held here is demand like one waiting for tokens: a replica whose callers
	// all sit here (its share was lowered and its last second is full) must not look idle,
	// or the others take its share and it gets the floor.
	e.waiting.Add(1)
	defer e.waiting.Add(-1)
	start := time.Now()
	w := waiter{l: l, ctx: ctx}
	defer w.release()
	why := e.admit(&w, weight)
	if held := time.Since(start); held > time.Millisecond {
		e.waited.Add(int64(held))
	}
	if why == stopped {
		return w.err
	}
	return nil
}

// leasePoll is how often Admit looks again at a lease that ran out.
const leasePoll = 20 * time.Millisecond

// renewLease makes the shares hold until until.
func (l *Limiter) renewLease(until time.Time) {
	l.lease.Store(max(1, int64(until.Sub(l.base))))
}

// leased reports whether the shares hold at now.
func (l *Limiter) leased(now time.Time) bool {
	until := l.lease.Load()
	return until == 0 || int64(now.Sub(l.base)) < until
}

// granted tells onGrant, if set, of a grant.
func (l *Limiter) granted(e *entry, at time.Time, n int) {
	if l.onGrant != nil {
		l.onGrant(e.class, at, n)
	}
}

// Penalize makes (app, class) send nothing on this replica for d, for instance after the
// upstream answered that the rate is exceeded. Waiting callers reserve again after it; a
// shorter penalty never cuts a longer one short.
func (l *Limiter) Penalize(app, class string, d time.Duration) {
	if d <= 0 {
		return
	}
	e := l.entry(app, class)
	until := int64(time.Since(l.base) + d)
	for {
		old := e.penaltyUntil.Load()
		if old >= until {
			return
		}
		if e.penaltyUntil.CompareAndSwap(old, until) {
			break
		}
	}
	e.mu.Lock()
	b := e.cur.Load()
	e.install(b.share, time.Now())
	e.mu.Unlock()
	l.log.Debug().Str("app", app).Str("class", class).Dur("for", d).Msg("rate budget penalized")
}

// throttledFor is how long after a caller last waited for tokens Throttled still says so.
const throttledFor = time.Second

// Throttled reports whether (app, class) has made a caller wait for tokens within the last
// second: its jobs are held by the rate, not by the worker, so a few milliseconds more on
// their way cost them nothing (the worker batches their NATS writes then).
func (l *Limiter) Throttled(app, class string) bool {
	if m := l.entries.Load(); m != nil {
		if e, ok := (*m)[key{app, class}]; ok {
			at := e.delayedAt.Load()
			return at != 0 && time.Since(l.base)-time.Duration(at) < throttledFor
		}
	}
	return false
}

// Share returns the fraction of (app, class)'s configured rate this replica may use now:
// 1 while it runs alone, its agreed part of the rate while a Coordinator runs.
func (l *Limiter) Share(app, class string) float64 {
	if m := l.entries.Load(); m != nil {
		if e, ok := (*m)[key{app, class}]; ok {
			return e.cur.Load().share
		}
	}
	return math.Float64frombits(l.defaultShare.Load())
}

// entry returns the entry of (app, class), creating it on first use.
func (l *Limiter) entry(app, class string) *entry {
	if m := l.entries.Load(); m != nil {
		if e, ok := (*m)[key{app, class}]; ok {
			return e
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var old map[key]*entry
	if m := l.entries.Load(); m != nil {
		old = *m
		if e, ok := old[key{app, class}]; ok {
			return e
		}
	}
	e := &entry{app: app, class: class, phase: l.phase}
	if l.rateOf != nil {
		if r := l.rateOf(app, class); r > 0 && !math.IsInf(r, 1) {
			e.rate = r
		}
	}
	if e.rate == 0 {
		l.log.Warn().Str("app", app).Str("class", class).Msg("no rate configured: jobs of this app and class are not limited")
	}
	share := math.Float64frombits(l.defaultShare.Load())
	e.cur.Store(e.newBucket(share, time.Now(), true))
	m := make(map[key]*entry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[key{app, class}] = e
	l.entries.Store(&m)
	select {
	case l.created <- struct{}{}:
	default:
	}
	return e
}

// snapshot returns every entry; the map must not be changed.
func (l *Limiter) snapshot() map[key]*entry {
	if m := l.entries.Load(); m != nil {
		return *m
	}
	return nil
}

// setDefaultShare sets the share of entries created from now on.
func (l *Limiter) setDefaultShare(s float64) { l.defaultShare.Store(math.Float64bits(s)) }

// penalty returns how long (app, class) is still penalized at now, or 0.
func (e *entry) penalty(l *Limiter, now time.Time) time.Duration {
	until := e.penaltyUntil.Load()
	if until == 0 {
		return 0
	}
	if d := time.Duration(until) - now.Sub(l.base); d > 0 {
		return d
	}
	return 0
}

// burstFor returns the burst of a bucket of rate tokens per second.
func burstFor(rate float64) int {
	return max(1, int(math.Ceil(rate*burstFraction)))
}

// newBucket returns a bucket for share of the entry's rate. A full bucket starts with its
// burst; a replacement starts empty, because the bucket it replaces may just have spent
// its tokens.
func (e *entry) newBucket(share float64, now time.Time, full bool) *bucket {
	b := &bucket{share: share, changed: make(chan struct{})}
	if e.rate == 0 || share <= 0 {
		return b
	}
	r := e.rate * share
	b.rate, b.burst = r, burstFor(r)
	b.tick = min(int64(float64(b.burst)/r*float64(time.Second)), int64(maxTick))
	b.phase = e.phase
	if full {
		b.lim = rate.NewLimiter(rate.Limit(r), b.burst)
	} else {
		b.lim = rate.NewLimiter(rate.Limit(r), 0)
		b.lim.SetBurstAt(now, b.burst) // tokens stay at 0
	}
	return b
}

// install replaces the entry's bucket with an empty one for share and wakes every caller
// waiting on the old one. e.mu must be held.
func (e *entry) install(share float64, now time.Time) {
	old := e.cur.Load()
	e.cur.Store(e.newBucket(share, now, false))
	close(old.changed)
}

// setShare gives the entry share of its rate. It reports whether the share changed.
func (e *entry) setShare(share float64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur.Load().share == share {
		return false
	}
	e.install(share, time.Now())
	return true
}

// reserve reserves n tokens of b into r and returns the time it did so. It reports false if
// b has been replaced.
//
// Reservations are made under e.mu with the time taken under it. rate.Limiter takes the
// caller's time: one taken before waiting for its lock can be older than the limiter's
// last update, which moves that update back and credits the same interval twice.
//
// Up to the burst a reservation is one ReserveN. Above it the burst is raised for one
// ReserveN, so that the whole weight is one debt that no other caller's reservation
// interleaves: pieces released together after others' interleaved reservations would crowd
// more than the rate into one second.
func (e *entry) reserve(b *bucket, n int, r *rate.Reservation) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur.Load() != b {
		return time.Time{}, false
	}
	now := time.Now()
	if n <= b.burst {
		*r = *b.lim.ReserveN(now, n)
		return now, true
	}
	// SetBurstAt first brings the tokens up to date under the small burst, so raising the
	// burst adds no tokens; it is put back before anyone else can reserve.
	b.lim.SetBurstAt(now, n)
	*r = *b.lim.ReserveN(now, n)
	b.lim.SetBurstAt(now, b.burst)
	return now, true
}

// cancel gives back the tokens of r, under e.mu for the same reason as reserve.
func (e *entry) cancel(r *rate.Reservation) {
	e.mu.Lock()
	r.CancelAt(time.Now())
	e.mu.Unlock()
}

// isChanged reports whether b has been replaced.
func (b *bucket) isChanged() bool {
	select {
	case <-b.changed:
		return true
	default:
		return false
	}
}

// wake says why waiter.sleep returned.
type wake int

const (
	woke    wake = iota // the deadline passed
	changed             // the bucket was replaced
	stopped             // the context ended; waiter.err is set
)

// waiter is the state of one Wait call: one timer, reused for the deadline and the
// heartbeats, and the time of the next heartbeat.
type waiter struct {
	l         *Limiter
	ctx       context.Context
	heartbeat func()
	timer     *time.Timer
	nextBeat  time.Time
	err       error
}

// sleep waits until deadline (never, if zero), the bucket's changed channel closes or the
// context ends, calling the heartbeat on its schedule meanwhile.
func (w *waiter) sleep(ch <-chan struct{}, deadline time.Time) wake {
	for {
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			return woke
		}
		wakeAt := deadline
		if w.heartbeat != nil {
			if w.nextBeat.IsZero() {
				w.nextBeat = now.Add(w.l.hbEvery)
			} else if !now.Before(w.nextBeat) {
				w.heartbeat()
				w.nextBeat = now.Add(w.l.hbEvery)
			}
			if wakeAt.IsZero() || w.nextBeat.Before(wakeAt) {
				wakeAt = w.nextBeat
			}
		}
		var tc <-chan time.Time
		if !wakeAt.IsZero() {
			w.arm(wakeAt.Sub(now))
			tc = w.timer.C
		}
		select {
		case <-tc:
		case <-ch:
			return changed
		case <-w.ctx.Done():
			if !deadline.IsZero() && !time.Now().Before(deadline) {
				return woke // the tokens were due before the context ended was noticed
			}
			w.err = w.ctx.Err()
			return stopped
		}
	}
}

// arm starts the waiter's timer for d, taking one from the pool on first use.
func (w *waiter) arm(d time.Duration) {
	if w.timer != nil {
		w.timer.Reset(d)
		return
	}
	if t, ok := w.l.timers.Get().(*time.Timer); ok {
		t.Reset(d)
		w.timer = t
		return
	}
	w.timer = time.NewTimer(d)
}

// release stops the timer and returns it to the pool.
func (w *waiter) release() {
	if w.timer != nil {
		w.timer.Stop()
		w.l.timers.Put(w.timer)
		w.timer = nil
	}
}
