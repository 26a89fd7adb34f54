// Package worker runs the job path: consume → decode → dedup → expire → limit → breaker →
// call → classify → publish result (and DLQ) → ack/nak/term.
package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/control"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

// Sender makes one upstream call of a job.
type Sender interface {
	Push(ctx context.Context, spec *jobs.Spec, app *config.App, body []byte) upstream.Outcome
	Host(upstream string) string
}

// Limiter hands out rate tokens per app and class: Wait until they are due, then Admit
// right before the call, so that what the upstream sees stays within the rate.
type Limiter interface {
	Wait(ctx context.Context, app, class string, weight int, heartbeat func()) error
	Admit(ctx context.Context, app, class string, weight int) error
	Penalize(app, class string, d time.Duration)
	// Throttled reports whether (app, class) has lately made callers wait for tokens.
	Throttled(app, class string) bool
}

// Options wire a Worker.
type Options struct {
	Config   config.Config
	Logger   zerolog.Logger
	JS       jetstream.JetStream
	Sender   Sender
	Limiter  Limiter
	Breakers *upstream.Breakers
	Metrics  *Metrics
	// AckWait of the job consumers (default 30s).
	AckWait time.Duration
	// OnAccepted is called for a job the upstream accepted, after its result is recorded and
	// before the message is acked (notify stats tracking). An error hands the job back; the
	// redelivery replays the stored result and calls OnAccepted again.
	OnAccepted func(ctx context.Context, d *jobs.Decoded, res *jobs.Result) error
	// TracerProvider makes the spans of the job path (README "Tracing"); nil: no tracing,
	// at no cost.
	TracerProvider trace.TracerProvider
	// OrphanSweep is how often each job consumer is checked for jobs it will never deliver
	// again (sweepOrphans; default 10s).
	OrphanSweep time.Duration
}

// Worker consumes jobs of every type and delivers them.
type Worker struct {
	o       Options
	c       config.Config
	n       broker.Names
	log     zerolog.Logger
	js      jetstream.JetStream
	dedup   jetstream.KeyValue
	stream  jetstream.Stream
	slots   chan struct{}
	scrub   *config.Scrubber
	m       *Metrics
	ackWait time.Duration

	holderPrefix string        // this process's part of record.Holder
	holders      atomic.Uint64 // handlings so far
	// Finishing writes (persist): how many are under way, when the first of a run of them
	// began and when the last one went through (unix ns), for recordsStuck.
	persistPending atomic.Int64
	persistFirstAt atomic.Int64
	persistDoneAt  atomic.Int64

	inflight  sync.WaitGroup
	runner    *runner
	out       *outbox  // the NATS writes of jobs, while Run runs
	active    sync.Map // stream sequences being handled here
	consuming atomic.Bool
	mu        sync.Mutex
	loops     map[string]*loopState // per job type
	gates     gates
	tr        *tracer // nil: tracing off
	ctlKV     jetstream.KeyValue
	ctl       *control.Watcher // the operator's pauses and cancellations
	cpause    *consumerPauses
}

type loopState struct {
	firstMiss time.Time // first of a run of missed pull heartbeats; zero when fine
	lastMiss  time.Time // latest missed pull heartbeat
	closed    bool      // the consume loop ended while the worker was running
}

// New prepares a worker: the dedup bucket.
func New(ctx context.Context, o Options) (*Worker, error) {
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	w := &Worker{
		o: o, c: o.Config, n: broker.NamesFrom(o.Config), log: o.Logger, js: o.JS,
		slots: make(chan struct{}, o.Config.Concurrency), scrub: config.NewScrubber(o.Config.Secrets()),
		m: o.Metrics, ackWait: o.AckWait, loops: map[string]*loopState{}, runner: newRunner(10 * time.Second),
		tr: newTracer(o.TracerProvider, o.Config), ctl: &control.Watcher{}, cpause: newConsumerPauses(),
		holderPrefix: nuid.Next(),
	}
	w.ctl.OnChange = w.onControl
	if d := w.maxRetryDelay(); d < w.c.RetryMax {
		w.log.Warn().Dur("PUSH_RETRY_MAX", w.c.RetryMax).Dur("PUSH_DEDUP_TTL", w.c.DedupTTL).Dur("retry_max", d).
			Msg("retries wait at most half of PUSH_DEDUP_TTL: the attempt count lives in the dedup record")
	}
	var err error
	if w.dedup, err = broker.KV(ctx, o.JS, o.Config, w.n.DedupBucket(), o.Config.DedupTTL); err != nil {
		return nil, err
	}
	if w.ctlKV, err = broker.KV(ctx, o.JS, o.Config, w.n.ControlBucket(), 0); err != nil {
		return nil, err
	}
	if w.stream, err = o.JS.Stream(ctx, w.n.JobsStream()); err != nil {
		return nil, fmt.Errorf("stream %s: %w", w.n.JobsStream(), err)
	}
	return w, nil
}

// pullBatch is how many messages one pull request of a class asks for. JetStream serves
// waiting pull requests in order, so with a large batch the replica that asked first takes
// every job freed for a while and the others starve, their share of the rate unused (a 3-
// replica start with a backlog lost up to 0.5 s of the rate that way). A rate-limited class
// asks for what it sends in about 50 ms, so that the replicas' requests interleave; an
// unlimited one for up to 256 at a time, which a fast drain needs.
func (w *Worker) pullBatch(class string) int {
	total := 0.0
	for _, a := range w.c.Apps {
		r := a.Rate(class)
		if r <= 0 {
			return 256
		}
		total += r
	}
	return min(max(int(math.Ceil(total*0.05)), 16), 256, w.maxAckPending())
}

// maxAckPending bounds the jobs of one type held by all replicas at once.
func (w *Worker) maxAckPending() int { return max(4*w.c.Concurrency, 64) }

// Run consumes until ctx ends, then stops taking jobs and finishes or hands back those in
// flight within PUSH_SHUTDOWN_TIMEOUT.
func (w *Worker) Run(ctx context.Context) error {
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	var phase time.Duration
	if p, ok := w.o.Limiter.(interface{ Phase() time.Duration }); ok {
		phase = p.Phase() // the limiter's release grid (limiter.Limiter.Phase)
	}
	w.out = newOutbox(w.js, w.log, w.m, outboxLinger, phase)
	defer w.out.stop() // after every job: their acks go out before Run returns
	// The operator's controls first: a paused type's consumer starts paused.
	ctlCtx, stopCtl := context.WithCancel(context.WithoutCancel(ctx))
	defer func() { stopCtl(); w.ctl.Wait() }()
	if err := w.ctl.Start(ctlCtx, w.ctlKV); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	var ccs []jetstream.ConsumeContext
	// abandon stops the consumers set up so far when the rest cannot be, and waits for the
	// jobs they delivered meanwhile (they finish or are handed back: ctx may have ended).
	abandon := func() {
		for _, cc := range ccs {
			cc.Stop()
		}
		done := make(chan struct{})
		go func() { w.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(w.c.ShutdownTimeout):
			cancelHard()
			<-done
		}
	}
	for _, cs := range consumerSpecs() {
		spec, lane := cs.spec, cs.lane
		jobType, class := string(spec.Type), spec.Class
		name := w.n.LaneConsumer(jobType, lane)
		cons, err := w.ensureConsumer(ctx, jobType, lane)
		if err != nil {
			abandon()
			if ctx.Err() != nil {
				return nil // asked to stop while starting
			}
			return err
		}
		ls := &loopState{}
		w.mu.Lock()
		w.loops[name] = ls
		w.mu.Unlock()
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			w.mu.Lock()
			ls.firstMiss = time.Time{}
			w.mu.Unlock()
			w.inflight.Add(1)
			w.runner.run(func() {
				defer w.inflight.Done()
				w.handle(ctx, hard, msg)
			})
		},
			jetstream.PullMaxMessages(w.pullBatch(class)),
			jetstream.PullHeartbeat(5*time.Second),
			jetstream.PullExpiry(10*time.Second),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if errors.Is(err, jetstream.ErrNoHeartbeat) {
					w.mu.Lock()
					now := time.Now()
					if ls.firstMiss.IsZero() || now.Sub(ls.lastMiss) > missGap {
						ls.firstMiss = now
					}
					ls.lastMiss = now
					w.mu.Unlock()
					return
				}
				w.log.Warn().Err(err).Str("consumer", name).Msg("consume error")
			}))
		if err != nil {
			abandon()
			return fmt.Errorf("consuming %s: %w", name, err)
		}
		ccs = append(ccs, cc)
		go func() {
			<-cc.Closed()
			if ctx.Err() == nil {
				w.log.Error().Str("consumer", name).Msg("fetch loop ended unexpectedly")
				w.mu.Lock()
				ls.closed = true
				w.mu.Unlock()
			}
		}()
	}
	var bg sync.WaitGroup
	bg.Add(3)
	go func() {
		defer bg.Done()
		w.followPauses(ctx)
	}()
	go func() {
		defer bg.Done()
		w.sweepOrphans(ctx)
	}()
	go func() {
		defer bg.Done()
		w.sweepUnknown(ctx, hard)
	}()
	w.consuming.Store(true)
	w.log.Info().Int("concurrency", w.c.Concurrency).Msg("worker consuming jobs")

	<-ctx.Done()
	w.consuming.Store(false)
	w.log.Info().Dur("timeout", w.c.ShutdownTimeout).Msg("stopping: no new jobs, finishing those in flight")
	for _, cc := range ccs {
		cc.Drain()
	}
	for _, cc := range ccs {
		select {
		case <-cc.Closed():
		case <-time.After(w.c.ShutdownTimeout):
		}
	}
	done := make(chan struct{})
	go func() {
		w.inflight.Wait()
		bg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(w.c.ShutdownTimeout):
		w.log.Warn().Msg("shutdown timeout: aborting upstream calls still in flight; their jobs are handed back")
		cancelHard()
		<-done
	}
	w.log.Info().Msg("worker stopped")
	return nil
}

// consumerSpec is one consumer the worker reads: a job type's priority lane.
type consumerSpec struct {
	spec jobs.Spec
	lane jobs.Priority
}

// consumerSpecs lists the consumers in the order they are set up: every type's normal
// lane (the type's own subject) in broker.ConsumerTypes order, then the high and low lanes.
func consumerSpecs() []consumerSpec {
	var out []consumerSpec
	for _, lane := range broker.ConsumerLanes {
		for _, spec := range broker.ConsumerTypes() {
			out = append(out, consumerSpec{spec, lane})
		}
	}
	return out
}

// consumerSetupFor bounds how long Run retries setting up a consumer: a NATS server that
// restarts, or a cluster electing the stream's leader, answers with timeouts for a while.
const consumerSetupFor = 30 * time.Second

// ensureConsumer sets up a job type's consumer, retrying failures for consumerSetupFor.
func (w *Worker) ensureConsumer(ctx context.Context, jobType string, lane jobs.Priority) (jetstream.Consumer, error) {
	deadline := time.Now().Add(consumerSetupFor)
	delay := 100 * time.Millisecond
	for {
		spec, _ := jobs.Lookup(jobType)
		pause := w.ctl.Load().ConsumerPause(jobType, spec.Class, time.Now())
		cons, err := broker.EnsureConsumer(ctx, w.js, w.n, jobType, broker.ConsumerSettings{AckWait: w.ackWait, MaxAckPending: w.maxAckPending(), PauseUntil: pause, Lane: lane})
		if err == nil {
			w.cpause.mu.Lock()
			w.cpause.applied[w.n.LaneConsumer(jobType, lane)] = pause
			w.cpause.mu.Unlock()
		}
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return cons, err
		}
		w.log.Warn().Err(err).Str("consumer", w.n.LaneConsumer(jobType, lane)).Dur("retry_in", delay).Msg("could not set up the consumer; retrying")
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// Consuming reports whether every job type's consumer is set up and fetching.
func (w *Worker) Consuming() bool { return w.consuming.Load() }

// A fetch loop is stuck when it keeps missing its pull heartbeats (misses less than
// missGap apart) for stuckAfter without receiving a message.
const (
	stuckAfter = 30 * time.Second
	missGap    = 15 * time.Second
)

// Healthy reports whether every fetch loop is alive: none has ended, and none is stuck
// while the NATS connection is up (an outage is /readyz's business, not a reason to restart).
func (w *Worker) Healthy(connected bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for _, ls := range w.loops {
		if ls.closed {
			return false
		}
		stuck := !ls.firstMiss.IsZero() && now.Sub(ls.lastMiss) < missGap && ls.lastMiss.Sub(ls.firstMiss) > stuckAfter
		if stuck && connected {
			return false
		}
	}
	return true
}

// retryDelay is the delay before attempt n+1 after n failures: exponential with jitter
// between PUSH_RETRY_INITIAL and PUSH_RETRY_MAX.
func (w *Worker) retryDelay(failures int) time.Duration {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.c.RetryInitial),
		backoff.WithMaxInterval(w.c.RetryMax),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.3),
		backoff.WithMaxElapsedTime(0),
	)
	d := b.NextBackOff()
	for i := 1; i < failures; i++ {
		d = b.NextBackOff()
	}
	return min(max(d, w.c.RetryInitial), w.maxRetryDelay())
}

// maxRetryDelay is PUSH_RETRY_MAX, but at most half of PUSH_DEDUP_TTL: a job's attempts are
// counted in its dedup record, which must outlive the wait for the next attempt, or the
// count would start again and PUSH_MAX_ATTEMPTS would never be reached.
func (w *Worker) maxRetryDelay() time.Duration {
	return min(w.c.RetryMax, w.c.DedupTTL/2)
}

// jitter spreads d by up to +20% so that jobs waiting for the same thing don't return together.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}
