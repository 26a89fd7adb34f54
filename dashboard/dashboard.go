// Package dashboard is the operator's web page of a pushworker replica, served on its admin
// address under /ui/: backlog, rate budgets, breakers, replicas, recent results, the
// dead-letter stream and notify delivery stats, refreshed every second while the page is
// open. Its assets are embedded (no CDN, no build step).
//
// It samples and never reads a whole stream: the backlog comes from stream and consumer
// info, budgets and replicas from the rate budget bucket, breakers from this replica's
// gates, results from a core NATS subscription that keeps a bounded sample (and only while
// a page is open), lookups and DLQ pages from bounded windows at the end of the streams.
// Write actions (DLQ replay) go through package dlq, as pushctl's do, and need
// PUSH_UI_ADMIN_TOKEN.
package dashboard

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

const (
	// watchFor is how long after the last request of a page the dashboard keeps watching
	// (results subscription, budget watch, fast backlog sampling).
	watchFor = 30 * time.Second
	// seedResults is how many of the newest stored results a new watch starts with.
	seedResults = 200
	// subscription limits of the results subscription: beyond them NATS drops messages
	// for it (counted, shown) instead of the process buffering without bound.
	pendingMsgs  = 20000
	pendingBytes = 32 << 20
)

// Options configure a Dashboard.
type Options struct {
	Config config.Config
	// NC is the connection the dashboard subscribes and reads through. A connection of its
	// own keeps its traffic (every result while a page is open) off the worker's.
	NC        *nats.Conn
	Breakers  *upstream.Breakers
	ReplicaID string
	Version   string
	Logger    zerolog.Logger
}

// Dashboard serves the page and its JSON endpoints and keeps the state they show.
type Dashboard struct {
	c        config.Config
	n        broker.Names
	nc       *nats.Conn
	js       jetstream.JetStream
	breakers *upstream.Breakers
	replica  string
	version  string
	log      zerolog.Logger
	auth     *auth
	// lookupWindows are how many of the newest results and DLQ entries a lookup reads.
	lookupWindows [2]int

	lastSeen atomic.Int64 // unix nanoseconds of the last API request
	backlog  backlogRing
	results  collector
	notify   notifyStats
	peers    peers

	mu      sync.Mutex
	dlqInfo streamSummary
	resSub  *nats.Subscription // while watching
}

// streamSummary is a stream's size, sampled.
type streamSummary struct {
	Messages uint64 `json:"messages"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
}

// New returns a Dashboard; Run keeps its state and Handler serves it.
func New(o Options) (*Dashboard, error) {
	js, err := jetstream.New(o.NC)
	if err != nil {
		return nil, err
	}
	return &Dashboard{
		c: o.Config, n: broker.NamesFrom(o.Config), nc: o.NC, js: js, breakers: o.Breakers,
		replica: o.ReplicaID, version: o.Version, log: o.Logger.With().Str("component", "dashboard").Logger(),
		auth: newAuth(o.Config.UIAdminToken.Reveal()), lookupWindows: [2]int{lookupResultsWindow, lookupDLQWindow},
	}, nil
}

// Watched reports whether a page asked for something lately. A nil Dashboard is never
// watched.
func (d *Dashboard) Watched() bool {
	return d != nil && time.Since(time.Unix(0, d.lastSeen.Load())) < watchFor
}

func (d *Dashboard) touch() { d.lastSeen.Store(time.Now().UnixNano()) }

// RecordBacklog adds a backlog sample to the chart. A nil Dashboard ignores it.
func (d *Dashboard) RecordBacklog(s BacklogSample) {
	if d != nil {
		d.backlog.add(s)
	}
}

// Run keeps the notify stats subscription, and while a page is open the results
// subscription, the watch of the budget bucket and the DLQ's size, until ctx ends.
func (d *Dashboard) Run(ctx context.Context) error {
	statsSub, err := d.nc.Subscribe(d.n.NotifyStatsSubject(), func(m *nats.Msg) { d.notify.add(time.Now(), m.Data) })
	if err != nil {
		return err
	}
	defer func() { _ = statsSub.Unsubscribe() }()

	var (
		watching    bool
		stopBudgets func()
	)
	stop := func() {
		if stopBudgets != nil {
			stopBudgets()
			stopBudgets = nil
		}
		d.mu.Lock()
		sub := d.resSub
		d.resSub = nil
		d.mu.Unlock()
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		watching = false
	}
	defer stop()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		switch w := d.Watched(); {
		case w && !watching:
			watching = true
			d.startResults(ctx)
		case !w && watching:
			stop()
		}
		if watching {
			if stopBudgets == nil {
				stopBudgets = d.watchBudgets(ctx)
			}
			d.refreshDLQ(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// startResults starts a watch of the results: the newest stored ones first, then a
// subscription that samples what comes. The subscription starts first and holds what it
// gets until the stored ones are read, so that a result published in between is neither
// missed nor shown twice.
func (d *Dashboard) startResults(ctx context.Context) {
	now := time.Now()
	d.results.reset(now)
	statsSubject := d.n.NotifyStatsSubject()
	var (
		mu      sync.Mutex
		seeding = true
		held    []*nats.Msg
	)
	sub, err := d.nc.Subscribe(d.n.Subject+".results.>", func(m *nats.Msg) {
		if m.Subject == statsSubject {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if seeding {
			held = append(held, m)
			return
		}
		d.results.add(time.Now(), m.Subject, m.Header.Get(jobs.HeaderStatus), m.Data)
	})
	if err != nil {
		d.log.Warn().Err(err).Msg("cannot subscribe to results")
		return
	}
	_ = sub.SetPendingLimits(pendingMsgs, pendingBytes)
	_ = d.nc.Flush()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	stored := d.seedResults(sctx)
	cancel()
	mu.Lock()
	for _, m := range held {
		if !stored[m.Subject+"\x00"+string(m.Data)] {
			d.results.add(time.Now(), m.Subject, m.Header.Get(jobs.HeaderStatus), m.Data)
		}
	}
	seeding, held = false, nil
	mu.Unlock()
	d.mu.Lock()
	d.resSub = sub
	d.mu.Unlock()
}

// seedResults keeps the newest stored results, so that a page opened during a lull shows
// what happened before. It returns them by subject and data.
func (d *Dashboard) seedResults(ctx context.Context) map[string]bool {
	stored := map[string]bool{}
	st, err := d.js.Stream(ctx, d.n.ResultsStream())
	if err != nil {
		return stored
	}
	last := st.CachedInfo().State.LastSeq
	if last == 0 {
		return stored
	}
	from := uint64(1)
	if last > seedResults {
		from = last - seedResults + 1
	}
	statsSubject := d.n.NotifyStatsSubject()
	_, _ = broker.ScanRange(ctx, st, []string{d.n.Subject + ".results.>"}, from, last, false, func(m jetstream.Msg) bool {
		meta, err := m.Metadata()
		if err != nil || m.Subject() == statsSubject {
			return true
		}
		var r jobs.Result
		if decodeResult(m.Data(), &r) == nil {
			d.results.put(kept{At: meta.Timestamp, Subject: m.Subject(), Result: r})
			stored[m.Subject()+"\x00"+string(m.Data())] = true
		}
		return true
	})
	return stored
}

// dropped is how many results the subscription lost to its pending limits.
func (d *Dashboard) dropped() int64 {
	d.mu.Lock()
	sub := d.resSub
	d.mu.Unlock()
	if sub == nil {
		return 0
	}
	n, _ := sub.Dropped()
	return int64(n)
}

// watchBudgets follows the rate budget bucket until the returned stop is called. When the
// bucket cannot be watched it returns nil and Run tries again at its next tick.
func (d *Dashboard) watchBudgets(ctx context.Context) (stop func()) {
	wctx, cancel := context.WithCancel(ctx)
	kv, err := d.js.KeyValue(wctx, d.n.LimiterBucket())
	if err != nil {
		cancel()
		return nil
	}
	w, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil
	}
	d.peers.reset()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil {
				continue // the end of the values the watch started with
			}
			if e.Operation() == jetstream.KeyValuePut {
				d.peers.put(e.Key(), e.Value(), time.Now())
			} else {
				d.peers.remove(e.Key())
			}
		}
	}()
	return func() {
		cancel()
		_ = w.Stop()
		<-done
	}
}

func (d *Dashboard) refreshDLQ(ctx context.Context) {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := d.js.Stream(ictx, d.n.DLQStream())
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			d.log.Debug().Err(err).Msg("cannot read the DLQ stream's info")
		}
		return
	}
	s := st.CachedInfo().State
	d.mu.Lock()
	d.dlqInfo = streamSummary{Messages: s.Msgs, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq}
	d.mu.Unlock()
}
