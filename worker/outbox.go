package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// outbox sends the NATS writes of rate-limited jobs (claims, records, results and acks)
// from one goroutine, in batches: a batch gathers until the next point of the limiter's
// release grid (every outboxLinger, at the limiter's phase), then goes to the server in one
// write, and its acknowledgements come back in one read.
//
// Under a rate limit jobs finish a few at a time, and without it every claim, result and
// ack cost a write, a read and a wake-up of its own, in the worker and in nats-server: a
// rate-limited job cost 7 × what a drained one did (the client's flusher is always behind
// in a drain, so its writes carry many jobs anyway). A job that did not wait for budget
// does not use the outbox: its writes go out at once, as before.
type outbox struct {
	js     jetstream.JetStream
	log    zerolog.Logger
	linger time.Duration
	phase  time.Duration // of the limiter's release grid
	m      *Metrics
	in     chan *outItem
	acks   chan published // published batches, whose acknowledgements await collects

	stopOnce sync.Once
	stopped  chan struct{}
}

// outItem is one job's writes: messages to publish, whose acknowledgements the job waits
// for, or a message to ack or term, which it does not wait for.
type outItem struct {
	msgs    []outMsg
	futures []jetstream.PubAckFuture
	acks    []*jetstream.PubAck
	errs    []error
	done    chan struct{}

	settle jetstream.Msg // ack (or term) this message; nothing to wait for
	term   bool
}

// published is a batch as it went out, and by when its acknowledgements must be in.
type published struct {
	items    []*outItem
	deadline time.Time
}

type outMsg struct {
	m    *nats.Msg
	opts []jetstream.PublishOpt
}

const (
	// outboxBatch bounds a batch, far below the client's limit of pending async publishes.
	outboxBatch = 256
	// outboxLinger is the grid a batch goes out on: the limiter's release grid (maxTick),
	// so that a batch leaves in the same wake-up as the next group of calls.
	outboxLinger = 10 * time.Millisecond
)

func newOutbox(js jetstream.JetStream, log zerolog.Logger, m *Metrics, linger, phase time.Duration) *outbox {
	o := &outbox{js: js, log: log, linger: linger, phase: phase, m: m, in: make(chan *outItem, outboxBatch),
		acks: make(chan published, 64), stopped: make(chan struct{})}
	go o.loop()
	go o.await()
	return o
}

// publish sends msgs in the next batch and waits for their acknowledgements. It returns
// one ack or error per message; when ctx ends first, the errors are ctx's (the messages
// may still be published).
func (o *outbox) publish(ctx context.Context, msgs ...outMsg) ([]*jetstream.PubAck, []error) {
	it := &outItem{msgs: msgs, done: make(chan struct{})}
	select {
	case o.in <- it:
	case <-ctx.Done():
		return nil, ctxErrs(ctx, len(msgs))
	}
	select {
	case <-it.done:
		return it.acks, it.errs
	case <-ctx.Done():
		return nil, ctxErrs(ctx, len(msgs))
	}
}

func ctxErrs(ctx context.Context, n int) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = ctx.Err()
	}
	return errs
}

// settle acks (or, with term, terminates) msg in the next batch. Like msg.Ack, it does not
// wait for the server: a lost ack means a redelivery, which the dedup record answers.
func (o *outbox) settle(msg jetstream.Msg, term bool) {
	o.in <- &outItem{settle: msg, term: term}
}

// stop sends what is queued, waits for its acknowledgements and ends. Nothing may be
// queued after it.
func (o *outbox) stop() {
	o.stopOnce.Do(func() { close(o.in) })
	<-o.stopped
}

func (o *outbox) loop() {
	defer close(o.acks)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		it, ok := <-o.in
		if !ok {
			return
		}
		batch := append(make([]*outItem, 0, 16), it)
		timer.Reset(untilGrid(time.Now(), o.linger, o.phase))
	gather:
		for len(batch) < outboxBatch {
			select {
			case it, ok := <-o.in:
				if !ok {
					break gather
				}
				batch = append(batch, it)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		o.m.outboxBatches.Inc()
		o.m.outboxWrites.Add(float64(len(batch)))
		for _, it := range batch {
			if it.settle != nil {
				settleMsg(o.log, it.settle, it.term)
				continue
			}
			it.futures = make([]jetstream.PubAckFuture, len(it.msgs))
			it.acks, it.errs = make([]*jetstream.PubAck, len(it.msgs)), make([]error, len(it.msgs))
			for i, m := range it.msgs {
				it.futures[i], it.errs[i] = o.js.PublishMsgAsync(m.m, m.opts...)
			}
		}
		o.acks <- published{items: batch, deadline: time.Now().Add(ackTimeout)}
	}
}

// await collects the acknowledgements of each published batch, in order. A batch's
// acknowledgements share one deadline, ackTimeout after it went out: waiting ackTimeout for
// each of them in turn (NATS lost a node and answers none) held the batches behind for
// minutes, while their jobs sent no heartbeats and were redelivered to other replicas.
func (o *outbox) await() {
	defer close(o.stopped)
	for b := range o.acks {
		ctx, cancel := context.WithDeadline(context.Background(), b.deadline)
		for _, it := range b.items {
			if it.done == nil {
				continue
			}
			for k, f := range it.futures {
				if f != nil {
					it.acks[k], it.errs[k] = awaitAck(ctx, f)
				}
			}
			close(it.done)
		}
		cancel()
	}
}

// settleMsg acks msg, or terminates it with term, and logs a failure.
func settleMsg(log zerolog.Logger, msg jetstream.Msg, term bool) {
	var err error
	if term {
		err = msg.Term()
	} else {
		err = msg.Ack()
	}
	if err != nil {
		log.Warn().Err(err).Str("subject", msg.Subject()).Msg("ack failed; a redelivery will republish the same result")
	}
}

// send publishes msgs and waits for their acknowledgements: through the outbox for a job
// whose class is throttled, at once otherwise. It returns the first error.
func (w *Worker) send(ctx context.Context, j *job, msgs ...outMsg) ([]*jetstream.PubAck, error) {
	if j.throttled {
		acks, errs := w.out.publish(ctx, msgs...)
		return acks, errors.Join(errs...)
	}
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		f, err := w.js.PublishMsgAsync(m.m, m.opts...)
		if err != nil {
			return nil, err
		}
		futures[i] = f
	}
	acks := make([]*jetstream.PubAck, len(msgs))
	for i, f := range futures {
		ack, err := awaitAck(ctx, f)
		if err != nil {
			return nil, err
		}
		acks[i] = ack
	}
	return acks, nil
}

// settle acks the job's message, or terminates it with term: with the outbox's next
// batch for a throttled job, at once otherwise.
func (w *Worker) settle(j *job, term bool) {
	if j.throttled {
		w.out.settle(j.msg, term)
		return
	}
	settleMsg(w.log, j.msg, term)
}

// untilGrid returns how long from now to the next point phase + k × grid (wall clock), at
// least a tenth of grid: the limiter releases its groups on that grid too, so a batch goes
// out in the same wake-up as the next group of calls.
func untilGrid(now time.Time, grid, phase time.Duration) time.Duration {
	g := int64(grid)
	d := time.Duration(g - (now.UnixNano()-int64(phase))%g)
	if d < grid/10 {
		d += grid
	}
	return d
}
