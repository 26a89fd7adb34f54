package limiter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// DefaultCoordinatorEvery is how often a Coordinator publishes its heartbeat, unless
// CoordinatorOptions.Every says otherwise.
const DefaultCoordinatorEvery = time.Second

const (
	// deadAfter heartbeat intervals without news a replica counts as gone.
	deadAfter = 3
	// isolatedAfter heartbeat intervals without seeing its own heartbeat come back through
	// the watch, a replica gives up its shares: it cannot tell what the others use.
	// (The lease, leaseFor, ends a little before that, whether or not Run is running.)
	isolatedAfter = 2
	// keepFor heartbeat intervals a heartbeat stays in the bucket (bucket TTL), so that keys
	// of replicas that died without cleaning up vanish.
	keepFor = 10
	// rounds of demand a heartbeat sums up.
	rounds = 3
	// minStep is the smallest change of a share that is applied; smaller ones would only
	// wake the waiting callers. Keeping a share a little too high is safe: the others
	// count the share a replica announces, not the one they computed for it.
	minStep = 0.002
	// holdClaim is how long the claims of a replica that left (deleted its key) still
	// count: the calls it made stay in the upstream's sliding second for one window after
	// they left, plus their way to the upstream. Taking the room at once put a leaving
	// replica's last second on top of the others' raised shares: the chaos soak counted up
	// to 7 % over the rate in such seconds.
	holdClaim = time.Duration(window) + 100*time.Millisecond
)

// CoordinatorOptions configure a Coordinator.
type CoordinatorOptions struct {
	// Bucket is the name of the key-value bucket the replicas share, e.g. "PUSH_LIMITER".
	// It is created (or updated) with a TTL and in-memory storage.
	Bucket string
	// ReplicaID names this replica; it must be unique and a valid key-value key.
	ReplicaID string
	// Replicas is the number of stream replicas of the bucket (default 1).
	Replicas int
	// Every is how often the heartbeat is published (default 1s). A replica that has not
	// been heard of for three intervals counts as gone. All replicas should use the same.
	Every time.Duration
	// Logger receives membership changes and errors.
	Logger zerolog.Logger
}

// Coordinator shares each (app, class) rate among the live replicas of the worker.
//
// Each replica publishes a heartbeat into a key-value bucket every interval, with its
// demand per (app, class) and the share it claims, and watches the bucket. Every replica
// computes the same split (allocate) from the heartbeats and moves its own share towards
// its part: down at once, up in two steps. It first publishes the higher claim, and only
// when that heartbeat comes back through the watch, and so after every heartbeat published
// before it, takes as much of it as the claims of the others leave. A claim is never below
// the share in use, so the shares in use never sum to more than 1, also while replicas
// join, leave or change demand. Replicas silent for three intervals count as gone; a
// replica that does not see its own heartbeats come back for two intervals uses nothing.
// Jobs never wait for NATS: the exchange is periodic.
type Coordinator struct {
	kv       jetstream.KeyValue
	js       jetstream.JetStream
	bucket   string
	replicas int
	rewatch  bool // the bucket was made again: the watch must start over
	l        *Limiter
	id       string
	every    time.Duration
	log      zerolog.Logger

	live atomic.Int32

	// Owned by Run.
	peers     map[string]*peer
	gone      map[string]goneReplica // replicas that left, their claims counted for holdClaim
	ids       []string               // live replicas, this one included, sorted
	stats     map[key]*keyStats
	published map[key]budget // the budgets of the last heartbeat published
	targets   map[key]float64
	intents   map[key]float64 // raises claimed, to take when the heartbeat comes back
	intentRev uint64          // the revision that claimed them
	pubRev    uint64          // the revision of the last heartbeat published
	pubAt     time.Time       // when it was published (or tried)
	echoAt    time.Time       // when a heartbeat of ours last came back through the watch
	measured  time.Time       // when the demand was last measured
	isolated  bool
	// scratch for rebalance
	dem []demand
	out []float64
}

// heartbeat is the value of a replica's key.
type heartbeat struct {
	Replica string    `json:"replica"`
	At      time.Time `json:"at"`
	EveryMS int64     `json:"every_ms"`
	Budgets []budget  `json:"budgets,omitempty"`
}

// budget is a replica's report on one (app, class).
type budget struct {
	App    string  `json:"app"`
	Class  string  `json:"class"`
	Used   float64 `json:"used"`   // fraction of the rate asked for per second lately
	Hungry bool    `json:"hungry"` // callers queued for tokens lately
	// Sent is the fraction of the rate that left Admit in the last second: what the
	// upstream got, for status displays.
	Sent float64 `json:"sent,omitempty"`
	// Claim is at least the share the replica uses; an (app, class) it does not list it
	// does not use.
	Claim float64 `json:"claim"`
}

// peer is what this replica knows of another live replica.
type peer struct {
	budgets map[key]budget
	seen    time.Time // local time its last heartbeat arrived
	every   time.Duration
}

// goneReplica is a replica that left (deleted its key): its last claims count until
// holdClaim after that, as its last calls are still in the upstream's sliding second.
type goneReplica struct {
	budgets map[key]budget
	until   time.Time
}

// keyStats turns an entry's counters into demand per heartbeat.
type keyStats struct {
	requested, waited int64
	used              [rounds]float64
	pressure          [rounds]float64
	n                 int

	tickRequested int64 // requested at the previous tick (see newlyIdle)
	idle          bool  // no caller since a tick: reported as without demand
}

// NewCoordinator creates or updates the bucket and returns a Coordinator for l. From now on
// l sends nothing until Run has agreed shares with the other replicas.
func NewCoordinator(js jetstream.JetStream, l *Limiter, opts CoordinatorOptions) (*Coordinator, error) {
	if opts.Bucket == "" {
		return nil, errors.New("limiter: coordinator needs a bucket name")
	}
	if !validKey(opts.ReplicaID) {
		return nil, fmt.Errorf("limiter: replica id %q is not a valid key", opts.ReplicaID)
	}
	c := &Coordinator{
		l: l, id: opts.ReplicaID, every: opts.Every,
		log:       opts.Logger.With().Str("component", "limiter").Logger(),
		peers:     map[string]*peer{},
		gone:      map[string]goneReplica{},
		stats:     map[key]*keyStats{},
		published: map[key]budget{},
		targets:   map[key]float64{},
		intents:   map[key]float64{},
		// Until its own heartbeat comes back, a replica does not know what the others use.
		isolated: true,
	}
	if c.every <= 0 {
		c.every = DefaultCoordinatorEvery
	}
	c.js, c.bucket, c.replicas = js, opts.Bucket, max(1, opts.Replicas)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.ensureBucket(ctx); err != nil {
		return nil, err
	}
	c.ids = []string{c.id}
	c.live.Store(1)
	c.l.lease.Store(1) // expired: no share holds until the first heartbeat comes back
	c.giveUp()
	return c, nil
}

// recreateBucket makes the bucket again from Run, waiting at most an interval: during a
// node's failover the call can block for seconds, and the loop must go on (the lease).
func (c *Coordinator) recreateBucket(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, c.every)
	defer cancel()
	return c.ensureBucket(ctx) == nil
}

// ensureBucket creates or updates the heartbeat bucket. It is called at start and again
// whenever the bucket has gone (a NATS server restarted without it): without the bucket no
// replica could agree a share, and every replica would send nothing.
func (c *Coordinator) ensureBucket(ctx context.Context) error {
	ttl := keepFor * c.every
	cfg := jetstream.KeyValueConfig{
		Bucket:      c.bucket,
		Description: "pushworker replicas' rate budget heartbeats",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    c.replicas,
		// Markers make expired keys visible to watchers.
		LimitMarkerTTL: max(ttl, time.Second),
	}
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		cfg.LimitMarkerTTL = 0
		kv, err = c.js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	if err != nil {
		// An existing bucket that cannot take this configuration is still usable.
		var err2 error
		if kv, err2 = c.js.KeyValue(ctx, c.bucket); err2 != nil {
			return fmt.Errorf("limiter: bucket %s: %w", c.bucket, err)
		}
		c.log.Warn().Err(err).Str("bucket", c.bucket).Msg("using the existing rate budget bucket as it is")
	}
	c.kv = kv
	return nil
}

// Replicas returns the number of live replicas this one sees, itself included.
func (c *Coordinator) Replicas() int { return int(c.live.Load()) }

// Run publishes heartbeats, watches the others' and keeps the Limiter's shares in line
// until ctx is done. Then it sets every share to 0 and deletes its own key, so the others
// take over its part at once, and returns nil. Errors talking to NATS are logged and
// retried; while its own heartbeats do not come back, the replica uses no budget.
func (c *Coordinator) Run(ctx context.Context) error {
	tick := time.NewTicker(c.every / 4)
	defer tick.Stop()
	held := time.NewTimer(time.Hour) // fires when a replica gone stops counting (heldAt)
	held.Stop()
	defer held.Stop()
	var heldAt time.Time
	defer c.leave()

	var (
		w       jetstream.KeyWatcher
		updates <-chan jetstream.KeyValueEntry
		initial bool // the watch is still sending the values it started with
		failing bool // the last attempt to watch failed
		unwatch = func() {
			if w != nil {
				_ = w.Stop()
			}
			w, updates = nil, nil
		}
	)
	defer unwatch()
	watch := func() {
		var err error
		if w, err = c.kv.WatchAll(ctx); err != nil {
			if !failing && ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("cannot watch the rate budget bucket")
			}
			if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				if c.recreateBucket(ctx) {
					c.log.Info().Str("bucket", c.bucket).Msg("recreated the rate budget bucket")
				}
			}
			failing = true
			w, updates = nil, nil
			return
		}
		failing = false
		updates, initial = w.Updates(), true
	}
	watch()
	// Learn the others before the first heartbeat.
	startup := time.NewTimer(c.every)
	for initial && updates != nil {
		select {
		case <-ctx.Done():
			startup.Stop()
			return nil
		case <-startup.C:
			initial = false
		case e, ok := <-updates:
			switch {
			case !ok:
				unwatch()
			case e == nil:
				initial = false
			default:
				c.receive(e, time.Now())
			}
		}
	}
	startup.Stop()
	c.measure(time.Now())
	c.publish(ctx)

	for {
		var publish bool
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-updates:
			if !ok {
				unwatch()
				continue
			}
			if e == nil {
				continue // the end of the values a new watch started with
			}
			now := time.Now()
			publish = c.receive(e, now)
			publish = c.rebalance(now) || publish
		case <-c.l.created:
			publish = c.rebalance(time.Now())
		case now := <-held.C:
			// A replica that left is out of the sliding second: its room is free.
			heldAt = time.Time{}
			c.forget(now)
			publish = c.rebalance(now)
		case now := <-tick.C:
			if c.rewatch {
				c.rewatch = false
				unwatch()
			}
			if w == nil {
				watch()
			}
			publish = c.expire(now)
			if idle := c.newlyIdle(); now.Sub(c.pubAt) >= c.every-c.every/8 || c.newlyHungry(now) || idle {
				c.measure(now)
				publish = true
			}
			publish = publish || c.claimDrops()
			publish = c.rebalance(now) || publish
		}
		if publish {
			c.publish(ctx)
		}
		if next := c.nextHoldEnd(); !next.IsZero() && !next.Equal(heldAt) {
			heldAt = next
			held.Reset(time.Until(next))
		}
	}
}

// nextHoldEnd returns when the first replica gone stops counting, or zero.
func (c *Coordinator) nextHoldEnd() time.Time {
	var first time.Time
	for _, g := range c.gone {
		if first.IsZero() || g.until.Before(first) {
			first = g.until
		}
	}
	return first
}

// forget drops the replicas gone that stopped counting at now.
func (c *Coordinator) forget(now time.Time) {
	for id, g := range c.gone {
		if !now.Before(g.until) {
			delete(c.gone, id)
		}
	}
}

// leaseFor is how long a replica's shares hold after its own heartbeat came back: less than
// isolatedAfter intervals, and so at least an interval and a window's margin before the others
// count it as gone (deadAfter intervals after its last heartbeat) and take its share. The
// lease holds also when Run is stuck: a soak saw a replica's loop blocked for 10 s in NATS
// calls during a node's failover, still sending at its share while the others, hearing
// nothing, had taken it over.
func leaseFor(every time.Duration) time.Duration {
	return isolatedAfter*every - every/4
}

// giveUp sets every share to 0.
func (c *Coordinator) giveUp() {
	c.l.setDefaultShare(0)
	for _, e := range c.l.snapshot() {
		e.setShare(0)
	}
	clear(c.intents)
}

// leave gives up every share and deletes the replica's key.
func (c *Coordinator) leave() {
	c.giveUp()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.kv.Delete(ctx, c.id); err != nil {
		c.log.Warn().Err(err).Msg("cannot delete this replica's rate budget key; the others notice its absence from its heartbeat")
	}
	c.live.Store(1)
}

// receive takes one update of the bucket. It reports whether a heartbeat should be
// published now: the set of live replicas changed, or a claim is above the share taken.
func (c *Coordinator) receive(e jetstream.KeyValueEntry, now time.Time) bool {
	id := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		if id == c.id {
			return false // ours expired or was purged: the next heartbeat puts it back
		}
		if p, ok := c.peers[id]; ok {
			delete(c.peers, id)
			// Its last calls are still in the upstream's second: count its claims on.
			c.gone[id] = goneReplica{budgets: p.budgets, until: now.Add(holdClaim)}
			c.log.Info().Str("peer", id).Msg("replica left")
			return c.membership()
		}
		return false
	}
	if id == c.id {
		if c.pubRev > 0 && e.Revision() >= c.pubRev {
			c.echoAt = now
			c.l.renewLease(now.Add(leaseFor(c.every)))
		}
		if c.intentRev > 0 && e.Revision() >= c.intentRev {
			return c.takeIntents(now)
		}
		return false
	}
	var hb heartbeat
	if err := json.Unmarshal(e.Value(), &hb); err != nil {
		c.log.Warn().Err(err).Str("peer", id).Msg("cannot read a rate budget heartbeat")
		return false
	}
	// A value the watch started with may be old, but taking a live replica for gone would
	// let this one use its share, so it counts as new: a replica that is gone indeed is
	// noticed three intervals later.
	p := &peer{seen: now, every: time.Duration(hb.EveryMS) * time.Millisecond, budgets: make(map[key]budget, len(hb.Budgets))}
	for _, b := range hb.Budgets {
		p.budgets[key{b.App, b.Class}] = b
	}
	_, known := c.peers[id]
	c.peers[id] = p
	if !known {
		c.log.Info().Str("peer", id).Msg("replica joined")
		return c.membership()
	}
	return false
}

// takeIntents takes the raises claimed by a heartbeat that has come back: every heartbeat
// published before it has been seen, and each of those replicas took its own raises only
// after seeing theirs, so the claims known now bound what the others use. It reports whether
// a raise was taken short of its claim: the claim should then be lowered to the share in
// use at once, or it keeps the others from their part until the next heartbeat (a second
// of a third of the rate unused, at a 3-replica start).
func (c *Coordinator) takeIntents(now time.Time) (reclaim bool) {
	entries := c.l.snapshot()
	for k, want := range c.intents {
		e, ok := entries[k]
		if !ok || c.isolated {
			reclaim = true
			continue
		}
		share := min(want, c.targets[k], c.room(k, now))
		if share > e.cur.Load().share {
			e.setShare(share)
			c.log.Debug().Str("app", k.app).Str("class", k.class).Float64("share", share).Msg("rate share raised")
		}
		if e.cur.Load().share < want-minStep/2 {
			reclaim = true
		}
	}
	clear(c.intents)
	c.intentRev = 0
	return reclaim
}

// room returns what the other replicas' claims leave of (app, class)'s rate at now, those
// of replicas that left less than holdClaim ago included.
func (c *Coordinator) room(k key, now time.Time) float64 {
	others := 0.0
	for _, p := range c.peers {
		others += p.budgets[k].Claim
	}
	for _, g := range c.gone {
		if now.Before(g.until) {
			others += g.budgets[k].Claim
		}
	}
	return max(0, 1-others)
}

// dead reports whether p has not been heard of for too long.
func (p *peer) dead(every time.Duration, now time.Time) bool {
	return now.Sub(p.seen) > deadAfter*max(every, p.every)
}

// expire forgets replicas whose heartbeats stopped. It reports whether any did.
func (c *Coordinator) expire(now time.Time) bool {
	gone := false
	for id, p := range c.peers {
		if p.dead(c.every, now) {
			delete(c.peers, id)
			c.log.Info().Str("peer", id).Dur("silent_for", now.Sub(p.seen)).Msg("replica gone: no heartbeat")
			gone = true
		}
	}
	if gone {
		return c.membership()
	}
	return false
}

// membership recomputes the sorted list of live replicas and reports true.
func (c *Coordinator) membership() bool {
	ids := make([]string, 0, len(c.peers)+1)
	ids = append(ids, c.id)
	for id := range c.peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	c.ids = ids
	c.live.Store(int32(len(ids)))
	return true
}

// measure turns the entries' counters into demand for the next heartbeats.
func (c *Coordinator) measure(now time.Time) {
	elapsed := now.Sub(c.measured)
	first := c.measured.IsZero()
	c.measured = now
	for k, e := range c.l.snapshot() {
		if e.rate == 0 {
			continue
		}
		s := c.stats[k]
		req, waited := e.requested.Load(), e.waited.Load()
		if s == nil {
			s = &keyStats{}
			c.stats[k] = s
		} else if !first && elapsed > 0 {
			i := s.n % rounds
			s.used[i] = float64(req-s.requested) / elapsed.Seconds() / e.rate
			s.pressure[i] = float64(waited-s.waited) / float64(elapsed)
			s.n++
		}
		s.requested, s.waited = req, waited
	}
}

// newlyHungry reports whether callers of an (app, class) last reported as not hungry have
// queued for tokens since the last measurement: the others should learn it now, not at the
// next interval, or this replica stays at the small share of one without demand.
func (c *Coordinator) newlyHungry(now time.Time) bool {
	elapsed := now.Sub(c.measured)
	if elapsed <= 0 {
		return false
	}
	for k, e := range c.l.snapshot() {
		s := c.stats[k]
		if e.rate == 0 || s == nil || c.published[k].Hungry {
			continue
		}
		if float64(e.waited.Load()-s.waited)/float64(elapsed) >= hungryPressure {
			return true
		}
	}
	return false
}

// newlyIdle reports whether a class this replica last reported demand for has had no
// caller since the previous tick and none is waiting: its backlog is gone, and the others,
// which may still have one, should get its share now rather than after the rounds of
// demand a heartbeat sums up (the last jobs of a backlog sat with one replica at a fifth of
// the rate while four idled). A class is idle until a caller comes again.
func (c *Coordinator) newlyIdle() bool {
	report := false
	for k, e := range c.l.snapshot() {
		s := c.stats[k]
		if e.rate == 0 || s == nil {
			continue
		}
		req := e.requested.Load()
		quiet := req == s.tickRequested && e.waiting.Load() == 0
		s.tickRequested = req
		switch {
		case !quiet:
			s.idle = false
		case !s.idle:
			s.idle = true
			b := c.published[k]
			report = report || b.Hungry || b.Used > 0
		}
	}
	return report
}

// sent returns the fraction of e's rate this replica let go in the last second.
func (c *Coordinator) sent(e *entry) float64 {
	return float64(e.rel.lastSecond(time.Now().UnixNano())) / e.rate
}

// claim returns what this replica claims of k: the highest of its share, a raise it asks
// for, and what it sent in the last second (sent, a fraction of the rate). A replica whose
// share was lowered keeps the calls it made under the old one in the upstream's sliding
// second, and Admit holds it back until they are out; the others may take only what it
// does not still use.
func (c *Coordinator) claim(k key, e *entry, sent float64) float64 {
	claim := max(e.cur.Load().share, sent)
	if want, ok := c.intents[k]; ok {
		claim = max(claim, want)
	}
	return claim
}

// claimDrops reports whether a claim published is higher than this replica's claim now by
// at least minStep: after a share was lowered, what it sent under the old one leaves the
// second bit by bit, and the others should learn it each tick, not each heartbeat.
func (c *Coordinator) claimDrops() bool {
	for k, e := range c.l.snapshot() {
		if b, ok := c.published[k]; ok && e.rate > 0 && b.Claim-c.claim(k, e, c.sent(e)) >= minStep {
			return true
		}
	}
	return false
}

// budget returns the report on k: its demand over the last rounds and its claim.
func (c *Coordinator) budget(k key, e *entry) budget {
	sent := c.sent(e)
	b := budget{App: k.app, Class: k.class, Claim: c.claim(k, e, sent), Sent: sent}
	s := c.stats[k]
	if s != nil && s.idle {
		return b // no demand now, whatever the last rounds saw
	}
	if s == nil || s.n == 0 {
		// Nothing measured yet (a replica or class just started): claim a part like any
		// replica with demand. Reporting no demand would give the share to the others
		// while this replica's jobs wait, until the next heartbeat.
		b.Hungry = true
		return b
	}
	for i := range min(s.n, rounds) {
		b.Used = max(b.Used, s.used[i])
		b.Hungry = b.Hungry || s.pressure[i] >= hungryPressure
	}
	return b
}

// publish writes the heartbeat: the demand last measured and the claims as they are now.
func (c *Coordinator) publish(ctx context.Context) {
	now := time.Now()
	hb := heartbeat{Replica: c.id, At: now, EveryMS: c.every.Milliseconds()}
	for k, e := range c.l.snapshot() {
		if e.rate > 0 {
			hb.Budgets = append(hb.Budgets, c.budget(k, e))
		}
	}
	sort.Slice(hb.Budgets, func(i, j int) bool {
		a, b := hb.Budgets[i], hb.Budgets[j]
		return a.App < b.App || a.App == b.App && a.Class < b.Class
	})
	data, err := json.Marshal(&hb)
	if err != nil {
		c.log.Error().Err(err).Msg("cannot encode the rate budget heartbeat")
		return
	}
	pctx, cancel := context.WithTimeout(ctx, c.every)
	rev, err := c.kv.Put(pctx, c.id, data)
	cancel()
	c.pubAt = now // also on failure: retry at the next interval, not at every tick
	if err != nil {
		if ctx.Err() == nil && !c.isolated {
			c.log.Warn().Err(err).Msg("cannot publish the rate budget heartbeat")
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
			// The bucket may have gone with a restarted server: make it again, watch anew.
			if c.recreateBucket(ctx) {
				c.rewatch = true
			}
		}
		clear(c.intents) // not claimed
		c.intentRev = 0
		return
	}
	c.pubRev = rev
	if len(c.intents) > 0 {
		c.intentRev = rev
	}
	clear(c.published)
	for _, b := range hb.Budgets {
		c.published[key{b.App, b.Class}] = b
	}
}

// rebalance computes the split of every rate from the last heartbeats: shares above this
// replica's part are lowered at once; for shares below it, if the others' claims leave
// room, a raise is claimed, to be taken when the heartbeat comes back. It reports whether
// a heartbeat should be published now, for a lowered share or a claimed raise.
func (c *Coordinator) rebalance(now time.Time) (publish bool) {
	isolated := c.echoAt.IsZero() || now.Sub(c.echoAt) > isolatedAfter*c.every
	if isolated != c.isolated {
		c.isolated = isolated
		if isolated {
			c.log.Warn().Msg("own heartbeats do not come back: using no rate budget until they do")
			clear(c.intents)
		} else {
			c.log.Info().Int("replicas", len(c.ids)).Msg("rate budget shared")
		}
	}
	n := len(c.ids)
	c.dem, c.out = slices.Grow(c.dem[:0], n)[:n], slices.Grow(c.out[:0], n)[:n]
	self := slices.Index(c.ids, c.id)
	for k, e := range c.l.snapshot() {
		if e.rate == 0 {
			continue
		}
		cur := e.cur.Load().share
		target := 0.0
		if !isolated {
			for i, id := range c.ids {
				var b budget
				if id == c.id {
					b = c.published[k]
				} else {
					b = c.peers[id].budgets[k]
				}
				c.dem[i] = demand{used: b.Used, hungry: b.Hungry}
			}
			allocate(c.dem, c.out)
			target = c.out[self]
		}
		c.targets[k] = target
		switch {
		case target < cur:
			if want, ok := c.intents[k]; ok && want > target {
				delete(c.intents, k)
			}
			if cur-target >= minStep || target == 0 {
				e.setShare(target)
				publish = true
				c.log.Debug().Str("app", k.app).Str("class", k.class).Float64("share", target).Msg("rate share lowered")
			}
		case target > cur && !isolated:
			if _, pending := c.intents[k]; pending {
				continue
			}
			want := min(target, c.room(k, now))
			if want-cur >= minStep || (cur == 0 && want >= minStep/10) {
				c.intents[k] = want
				publish = true
			}
		}
	}
	return publish
}

// validKey reports whether s is a valid key-value key.
func validKey(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case ch == '-', ch == '_', ch == '=', ch == '/':
		case ch == '.':
			if s[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
}
