package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

// jobSize is the size of every benchmark job's data, in bytes.
const jobSize = 256

// jobGen makes the jobs of a phase: job i has request id "<run>-<i>" and type
// types[i % len(types)], padded to jobSize bytes.
type jobGen struct {
	run   string
	types []jobs.Type
	// priority, when set, gives job i's priority: its subject is that lane's.
	priority func(i int) jobs.Priority
}

func (g jobGen) typeOf(i int) jobs.Type { return g.types[i%len(g.types)] }

// job returns the subject and data of job i.
func (g jobGen) job(i int) (string, []byte) {
	t := g.typeOf(i)
	b := make([]byte, 0, jobSize+16)
	b = append(b, `{"request_id":"`...)
	b = append(b, g.run...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `","payload":{"fromAccount":"bench",`...)
	msgField := `"msg":"`
	switch t {
	case jobs.P2P:
		b = append(b, `"toAccount":"user-`...)
		b = strconv.AppendInt(b, int64(i%100000), 10)
		b = append(b, `",`...)
	case jobs.P2T, jobs.UCS:
		b = append(b, `"topicId":`...)
		b = strconv.AppendInt(b, 9007199254740993+int64(i%1000), 10) // above 2^53, as real ids are
		b = append(b, ',')
		if t == jobs.UCS {
			msgField = `"message":"`
		}
	default:
		panic("pushbench: no generator for job type " + string(t))
	}
	b = append(b, msgField...)
	for pad := jobSize - len(b) - len(`"}}`); pad > 0; pad-- {
		b = append(b, 'x')
	}
	b = append(b, `"}}`...)
	if g.priority != nil {
		return jobs.JobSubject("push", string(t), g.priority(i)), b
	}
	return "push.jobs." + string(t), b
}

// publisher publishes jobs asynchronously (no Nats-Msg-Id header: the request id is in the
// data) and republishes the few whose acknowledgement failed.
type publisher struct {
	js     jetstream.JetStream
	mu     sync.Mutex
	failed []*nats.Msg
}

func newPublisher(nc *nats.Conn) (*publisher, error) {
	p := &publisher{}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(8192),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, _ error) {
			p.mu.Lock()
			p.failed = append(p.failed, m)
			p.mu.Unlock()
		}))
	if err != nil {
		return nil, err
	}
	p.js = js
	return p, nil
}

func (p *publisher) send(ctx context.Context, subject string, data []byte) error {
	for {
		_, err := p.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data}, jetstream.WithStallWait(5*time.Second))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return err
		}
	}
}

// complete waits for every acknowledgement and republishes failed messages synchronously.
func (p *publisher) complete(ctx context.Context) error {
	select {
	case <-p.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("%d publishes still unacknowledged after 2m", p.js.PublishAsyncPending())
	}
	p.mu.Lock()
	failed := p.failed
	p.failed = nil
	p.mu.Unlock()
	for _, m := range failed {
		if _, err := p.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Data: m.Data}); err != nil {
			return fmt.Errorf("republishing a job: %w", err)
		}
	}
	if len(failed) > 0 {
		logf("republished %d jobs whose async publish failed", len(failed))
	}
	return nil
}

// publishBacklog publishes n jobs as fast as JetStream takes them and checks the jobs
// stream holds them. It returns how long that took.
func (e *benchEnv) publishBacklog(ctx context.Context, g jobGen, n int) (time.Duration, error) {
	p, err := newPublisher(e.pub)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	lastLog := start
	for i := 0; i < n; i++ {
		subject, data := g.job(i)
		if err := p.send(ctx, subject, data); err != nil {
			return 0, err
		}
		if i%4096 == 0 && time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			logf("%s: published %d/%d jobs", e.name, i, n)
		}
	}
	if err := p.complete(ctx); err != nil {
		return 0, err
	}
	d := time.Since(start)
	st, err := e.js.Stream(ctx, "PUSH_JOBS")
	if err != nil {
		return d, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return d, err
	}
	if info.State.Msgs != uint64(n) {
		return d, fmt.Errorf("jobs stream holds %d messages after publishing %d", info.State.Msgs, n)
	}
	return d, nil
}

// publishPaced publishes n jobs at rate per second, recording in sent[i] the time (ns since
// e.res.base) just before job i went out.
func (e *benchEnv) publishPaced(ctx context.Context, g jobGen, n int, rate float64, sent []int64) error {
	p, err := newPublisher(e.pub)
	if err != nil {
		return err
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	start := time.Now()
	for i := 0; i < n; {
		due := min(n, int(time.Since(start).Seconds()*rate)+1)
		for ; i < due; i++ {
			subject, data := g.job(i)
			sent[i] = e.res.now()
			if err := p.send(ctx, subject, data); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return p.complete(ctx)
}
