// Package notifystats polls the delivery stats of sent notify tasks (POST /push/task/detail)
// and publishes every change on <prefix>.results.notify_stats (contract §5).
//
// The polling state lives in a NATS KV bucket (<STREAM_PREFIX>_NOTIFY_TASKS), one entry per
// task, so that it survives restarts and is shared by every replica. Each replica heartbeats
// its id into the same bucket and mirrors the bucket through a watcher; a round polls the
// tasks that rendezvous hashing over the live replicas assigns to this replica. When a
// replica stops or dies its tasks move to the survivors at their next round.
package notifystats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

// DetailPath is the notify call that answers a list of tasks' delivery stats.
const DetailPath = "/push/task/detail"

const (
	// maxBatch is how many task ids go into one /push/task/detail call.
	maxBatch = 50
	// pollConcurrency bounds the calls of one round in flight at once.
	pollConcurrency = 4
	// beatEvery is how often a replica writes its heartbeat.
	beatEvery = time.Second
	// deadAfter is how long after its last heartbeat a replica counts as gone.
	deadAfter = 3 * beatEvery
	// publishTimeout bounds the wait for the results stream's acks of one batch.
	publishTimeout = 10 * time.Second
)

// Upstream is the part of *upstream.Client the poller uses.
type Upstream interface {
	Do(ctx context.Context, app *config.App, r upstream.Request) upstream.Outcome
	Host(upstream string) string
}

// Options wire a Poller.
type Options struct {
	Config config.Config
	JS     jetstream.JetStream
	Client Upstream
	// Breakers gate the calls per app like the jobs' calls; nil means a private set.
	Breakers *upstream.Breakers
	Logger   zerolog.Logger
	// Metrics count the polls; nil means unregistered ones.
	Metrics *Metrics
	// ReplicaID names this replica among those sharing the bucket; empty means a random id.
	ReplicaID string
}

// Poller tracks sent notify tasks and polls their delivery stats.
type Poller struct {
	c        config.Config
	every    time.Duration
	pollFor  time.Duration
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	client   Upstream
	breakers *upstream.Breakers
	log      zerolog.Logger
	metrics  *Metrics
	id       string
	subject  string
	scrub    *config.Scrubber
	m        *mirror
	running  atomic.Bool
}

// New returns a Poller and opens (or creates) its KV bucket. When PUSH_NOTIFY_STATS_INTERVAL
// is 0 it touches nothing: Track is a no-op and Run only waits for its context.
func New(ctx context.Context, o Options) (*Poller, error) {
	c := o.Config
	p := &Poller{
		c:        c,
		every:    c.NotifyStatsEvery,
		pollFor:  c.NotifyStatsFor,
		js:       o.JS,
		client:   o.Client,
		breakers: o.Breakers,
		log:      o.Logger.With().Str("component", "notify_stats").Logger(),
		metrics:  o.Metrics,
		id:       o.ReplicaID,
		subject:  broker.NamesFrom(c).NotifyStatsSubject(),
		m:        newMirror(),
	}
	if p.metrics == nil {
		p.metrics = NewMetrics(nil)
	}
	if p.every <= 0 {
		return p, nil
	}
	if o.JS == nil || o.Client == nil {
		return nil, errors.New("notifystats: JS and Client are required")
	}
	if p.id == "" {
		p.id = nuid.Next()
	}
	if p.breakers == nil {
		p.breakers = upstream.NewBreakers(upstream.BreakerSettings{})
	}
	p.scrub = config.NewScrubber(c.Secrets())

	bucket := broker.NamesFrom(c).StatsBucket()
	ttl := p.bucketTTL()
	kv, err := broker.KV(ctx, o.JS, c, bucket, ttl)
	if err != nil {
		return nil, err
	}
	if err := ensureTTL(ctx, o.JS, kv, ttl); err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", bucket, err)
	}
	p.kv = kv
	return p, nil
}

// staleAfter is the age after which a task is dropped even without a last poll (its app's
// upstream stayed paused, or the app is no longer configured).
func (p *Poller) staleAfter() time.Duration {
	return p.pollFor + max(10*p.every, time.Minute)
}

// bucketTTL lets the bucket itself expire what a stopped deployment leaves behind (tasks,
// delete markers, heartbeats) well after every task's polling would have ended.
func (p *Poller) bucketTTL() time.Duration { return p.staleAfter() + time.Hour }

// ensureTTL raises the bucket's max age when PUSH_NOTIFY_STATS_FOR grew since it was
// created. A bucket without a max age is left as its owner made it.
func ensureTTL(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, ttl time.Duration) error {
	st, err := kv.Status(ctx)
	if err != nil {
		return err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || st.TTL() == 0 || st.TTL() >= ttl {
		return nil
	}
	sc := bs.StreamInfo().Config
	sc.MaxAge = ttl
	_, err = js.UpdateStream(ctx, sc)
	return err
}

// Track records that a sent notify job produced taskIDs, so that they are polled from the
// next round on. It writes one KV entry per task before returning; a task already tracked
// keeps its state.
func (p *Poller) Track(ctx context.Context, app, requestID string, taskIDs []int64) error {
	if p.every <= 0 || len(taskIDs) == 0 {
		return nil
	}
	if app == "" {
		app = config.DefaultApp
	}
	now := time.Now().UTC()
	var errs []error
	for _, id := range taskIDs {
		t := task{App: app, RequestID: requestID, TaskID: id, TrackedAt: now}
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		key := taskKey(app, id)
		rev, err := p.kv.Create(ctx, key, b)
		switch {
		case err == nil:
			p.m.putTask(entry{key: key, t: t, rev: rev})
		case errors.Is(err, jetstream.ErrKeyExists):
		default:
			errs = append(errs, fmt.Errorf("tracking notify task %d of app %q: %w", id, app, err))
		}
	}
	return errors.Join(errs...)
}

// Run polls until ctx ends; it must not be called twice at once. With
// PUSH_NOTIFY_STATS_INTERVAL 0 it only waits for ctx. It returns nil when ctx ends and an
// error only when it cannot start watching the bucket.
func (p *Poller) Run(ctx context.Context) error {
	if p.every <= 0 {
		<-ctx.Done()
		return nil
	}
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("notifystats: Run is already running")
	}
	defer p.running.Store(false)

	// Announce this replica before the first round so that peers count it at once.
	p.beat(ctx)
	w, err := p.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching KV bucket %s: %w", p.kv.Bucket(), err)
	}
	ready := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.watch(ctx, w, ready) }()
	go func() { defer wg.Done(); p.heartbeats(ctx) }()
	defer func() {
		wg.Wait()
		_ = w.Stop()
		p.leave()
	}()

	select {
	case <-ready:
	case <-ctx.Done():
		return nil
	}
	p.log.Info().Dur("interval", p.every).Dur("for", p.pollFor).Msg("polling notify delivery stats")
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for {
		p.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// watch keeps the mirror current. It closes ready once the bucket's initial values are in.
func (p *Poller) watch(ctx context.Context, w jetstream.KeyWatcher, ready chan struct{}) {
	initial := true
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				if initial {
					initial = false
					close(ready)
				}
				continue
			}
			p.apply(e, initial)
		}
	}
}

func (p *Poller) apply(e jetstream.KeyValueEntry, initial bool) {
	key, put := e.Key(), e.Operation() == jetstream.KeyValuePut
	switch {
	case strings.HasPrefix(key, replicaPrefix):
		id, ok := replicaFromKey(key)
		if !ok {
			return
		}
		if !put {
			p.m.gone(id)
			return
		}
		// A heartbeat seen live counts from now (local clock); one found at start counts
		// from when it was written, so a dead replica's last beat is not taken as fresh.
		at := time.Now()
		if initial && e.Created().Before(at) {
			at = e.Created()
		}
		p.m.seen(id, at)
	case strings.HasPrefix(key, taskPrefix):
		if !put {
			p.m.dropTask(key, e.Revision())
			return
		}
		var t task
		if err := json.Unmarshal(e.Value(), &t); err != nil {
			p.log.Warn().Str("key", key).Err(err).Msg("ignoring an unreadable notify task entry")
			return
		}
		p.m.putTask(entry{key: key, t: t, rev: e.Revision()})
	}
}

func (p *Poller) heartbeats(ctx context.Context) {
	t := time.NewTicker(beatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.beat(ctx)
		}
	}
}

// beat writes this replica's heartbeat. Only a written heartbeat keeps this replica among
// the live ones in its own view, so a replica cut off from NATS stops polling about when
// its peers take its tasks over.
func (p *Poller) beat(ctx context.Context) {
	now := time.Now()
	b, _ := json.Marshal(heartbeat{ID: p.id, At: now.UTC()})
	cctx, cancel := context.WithTimeout(ctx, deadAfter)
	defer cancel()
	if _, err := p.kv.Put(cctx, replicaKey(p.id), b); err != nil {
		if ctx.Err() == nil {
			p.log.Warn().Err(err).Msg("notify stats heartbeat failed")
		}
		return
	}
	p.m.seen(p.id, now)
}

// leave removes this replica's heartbeat so that its tasks move at the peers' next round.
func (p *Poller) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.kv.Delete(ctx, replicaKey(p.id)); err != nil {
		p.log.Debug().Err(err).Msg("could not remove the notify stats heartbeat; peers take over after it expires")
	}
}

// batch is up to maxBatch tasks of one app.
type batch struct {
	app   string
	tasks []entry
}

// round polls every task this replica owns once.
func (p *Poller) round(ctx context.Context) {
	now := time.Now()
	live := p.m.live(now, deadAfter)
	if !slices.Contains(live, p.id) {
		p.metrics.tasks.Set(0)
		p.log.Warn().Msg("skipping a notify stats round: this replica's heartbeat does not reach NATS")
		return
	}
	mine := p.m.owned(p.id, live)
	p.metrics.tasks.Set(float64(len(mine)))
	if len(mine) == 0 {
		return
	}
	batches := makeBatches(mine)
	p.log.Debug().Int("replicas", len(live)).Int("tasks", len(mine)).Int("calls", len(batches)).Msg("notify stats round")
	sem := make(chan struct{}, pollConcurrency)
	var wg sync.WaitGroup
	for _, b := range batches {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			p.poll(ctx, b, now)
		}()
	}
	wg.Wait()
}

// makeBatches groups tasks by app, in task id order, maxBatch per call.
func makeBatches(es []entry) []batch {
	sort.Slice(es, func(i, j int) bool {
		if es[i].t.App != es[j].t.App {
			return es[i].t.App < es[j].t.App
		}
		return es[i].t.TaskID < es[j].t.TaskID
	})
	var out []batch
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && j-i < maxBatch && es[j].t.App == es[i].t.App {
			j++
		}
		out = append(out, batch{app: es[i].t.App, tasks: es[i:j:j]})
		i = j
	}
	return out
}

// change is a task whose counters differ from its stored snapshot.
type change struct {
	e     entry
	stats map[string]jobs.ChannelStats
}

// poll asks the upstream for one batch, publishes the changes, stores the new snapshots
// and drops the tasks whose polling time is over.
func (p *Poller) poll(ctx context.Context, b batch, now time.Time) {
	log := p.log.With().Str("app", b.app).Int("tasks", len(b.tasks)).Logger()
	app, ok := p.c.Apps[b.app]
	if !ok || !app.Notify.Complete() {
		log.Warn().Msg("notify stats: the app has no notify credentials any more; its tasks are not polled")
		p.metrics.polls.WithLabelValues("skipped").Inc()
		p.dropStale(ctx, b.tasks, now)
		return
	}
	gate := p.breakers.For(b.app, jobs.UpstreamNotify, p.client.Host(jobs.UpstreamNotify))
	done, _, err := gate.Allow()
	if err != nil {
		log.Debug().Err(err).Msg("notify stats poll skipped: the app's notify upstream is not available")
		p.metrics.polls.WithLabelValues("skipped").Inc()
		p.dropStale(ctx, b.tasks, now)
		return
	}
	ids := make([]int64, len(b.tasks))
	for i, e := range b.tasks {
		ids[i] = e.t.TaskID
	}
	body, _ := json.Marshal(struct {
		List []int64 `json:"list"`
	}{ids})
	o := p.client.Do(ctx, &app, upstream.Request{Upstream: jobs.UpstreamNotify, Method: http.MethodPost, Path: DetailPath, Body: body})
	done(o)
	if o.Kind != upstream.Sent {
		if ctx.Err() != nil {
			return
		}
		ev := log.Warn().Str("outcome", o.Kind.String())
		if o.Answer != nil {
			ev = ev.Int("status", o.Answer.HTTPStatus).Int("code", o.Answer.Code)
		}
		if o.Err != nil {
			ev = ev.Str("error_kind", string(o.Err.Kind)).Str("detail", p.scrub.String(o.Err.Detail))
		}
		ev.Msg("notify stats poll failed; retrying next round")
		p.metrics.polls.WithLabelValues("failed").Inc()
		p.dropStale(ctx, b.tasks, now)
		return
	}
	stats, err := parseDetail(o.Data)
	if err != nil {
		log.Warn().Err(err).Msg("notify stats: the upstream's data is not a list; retrying next round")
		p.metrics.polls.WithLabelValues("failed").Inc()
		p.dropStale(ctx, b.tasks, now)
		return
	}
	p.metrics.polls.WithLabelValues("ok").Inc()
	at := time.Now().UTC()
	var changes []change
	for _, e := range b.tasks {
		if st, ok := stats[e.t.TaskID]; ok && !sameStats(st, e.t.Stats) {
			changes = append(changes, change{e: e, stats: st})
		}
	}
	revs := map[string]uint64{}
	acked := p.publish(ctx, changes, at)
	p.metrics.published.Add(float64(len(acked)))
	for _, c := range acked {
		if rev := p.store(ctx, c, at); rev != 0 {
			revs[c.e.key] = rev
		}
	}
	for _, e := range b.tasks {
		if now.Sub(e.t.TrackedAt) < p.pollFor {
			continue
		}
		rev := e.rev
		if r, ok := revs[e.key]; ok {
			rev = r
		}
		p.remove(ctx, e, rev)
	}
}

// publish sends one NotifyStats message per change and returns the changes the results
// stream acknowledged. The message id is the task and a hash of its counters, so that the
// same change published twice (a crash before storing it, or two replicas during a hand-over)
// is dropped by the stream's duplicate window.
func (p *Poller) publish(ctx context.Context, changes []change, at time.Time) []change {
	if len(changes) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, len(changes))
	for i, c := range changes {
		data, err := json.Marshal(jobs.NotifyStats{TaskID: c.e.t.TaskID, RequestID: c.e.t.RequestID, App: c.e.t.App, Channels: c.stats, At: at})
		if err != nil {
			continue
		}
		msg := &nats.Msg{Subject: p.subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, msgID(c.e.t.App, c.e.t.TaskID, c.stats))
		msg.Header.Set(jobs.HeaderRequestID, c.e.t.RequestID)
		f, err := p.js.PublishMsgAsync(msg)
		if err != nil {
			p.log.Warn().Err(err).Int64("task_id", c.e.t.TaskID).Msg("publishing notify stats failed; retrying next round")
			continue
		}
		futures[i] = f
	}
	timeout := time.NewTimer(publishTimeout)
	defer timeout.Stop()
	var acked []change
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			acked = append(acked, changes[i])
		case err := <-f.Err():
			p.log.Warn().Err(err).Int64("task_id", changes[i].e.t.TaskID).Msg("publishing notify stats failed; retrying next round")
		case <-timeout.C:
			p.log.Warn().Msg("no ack for notify stats; retrying next round")
			return acked
		case <-ctx.Done():
			return acked
		}
	}
	return acked
}

func msgID(app string, taskID int64, st map[string]jobs.ChannelStats) string {
	return "notify-stats." + b64.EncodeToString([]byte(app)) + "." + strconv.FormatInt(taskID, 10) + "." + strconv.FormatUint(statsHash(st), 16)
}

// store writes a published change as the task's snapshot (compare-and-set on the revision
// the change was computed from) and returns the new revision, or 0.
func (p *Poller) store(ctx context.Context, c change, at time.Time) uint64 {
	t := c.e.t
	t.Stats, t.PolledAt = c.stats, at
	b, _ := json.Marshal(t)
	rev, err := p.kv.Update(ctx, c.e.key, b, c.e.rev)
	if err == nil {
		p.m.putTask(entry{key: c.e.key, t: t, rev: rev})
		return rev
	}
	// Someone else wrote the task since (a peer during a hand-over): keep its entry and
	// only set the snapshot we published.
	cur, gerr := p.kv.Get(ctx, c.e.key)
	if gerr != nil {
		if !errors.Is(gerr, jetstream.ErrKeyNotFound) && ctx.Err() == nil {
			p.log.Warn().Err(err).Int64("task_id", c.e.t.TaskID).Msg("storing notify stats snapshot failed; the change may be published again")
		}
		return 0
	}
	var ct task
	if json.Unmarshal(cur.Value(), &ct) != nil {
		return 0
	}
	if sameStats(ct.Stats, c.stats) {
		p.m.putTask(entry{key: c.e.key, t: ct, rev: cur.Revision()})
		return cur.Revision()
	}
	ct.Stats, ct.PolledAt = c.stats, at
	b, _ = json.Marshal(ct)
	rev, err = p.kv.Update(ctx, c.e.key, b, cur.Revision())
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn().Err(err).Int64("task_id", c.e.t.TaskID).Msg("storing notify stats snapshot failed; the change may be published again")
		}
		return 0
	}
	p.m.putTask(entry{key: c.e.key, t: ct, rev: rev})
	return rev
}

// dropStale removes the tasks that could not be polled and are past staleAfter.
func (p *Poller) dropStale(ctx context.Context, es []entry, now time.Time) {
	for _, e := range es {
		if now.Sub(e.t.TrackedAt) >= p.staleAfter() {
			p.remove(ctx, e, e.rev)
		}
	}
}

// remove deletes a task whose polling is over, unless it changed since revision rev.
func (p *Poller) remove(ctx context.Context, e entry, rev uint64) {
	if err := p.kv.Delete(ctx, e.key, jetstream.LastRevision(rev)); err != nil {
		if ctx.Err() == nil {
			p.log.Debug().Err(err).Int64("task_id", e.t.TaskID).Msg("could not remove a finished notify task; retrying next round")
		}
		return
	}
	p.m.dropTask(e.key, rev+1)
	p.log.Debug().Str("app", e.t.App).Int64("task_id", e.t.TaskID).Str("request_id", e.t.RequestID).Msg("notify task polling finished")
}
