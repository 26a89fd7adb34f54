package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pushworker/pushworker/control"
	"github.com/pushworker/pushworker/jobs"
)

// pausedRetry is how long a job held by an operator's pause of one app is handed back for
// at most: such a pause cannot stop the consumer (every app shares it), so the jobs the
// worker holds come back now and then; a longer wait makes fewer deliveries, a shorter one
// a quicker resume. Jobs of a type paused for every app come back after a second, but the
// consumer is paused then and delivers nothing until the pause ends.
const pausedRetry = 5 * time.Second

// controls returns the operator's controls in force (nil when there are none).
func (w *Worker) controls() *control.State {
	st := w.ctl.Load()
	if st.Empty() {
		return nil
	}
	return st
}

// held checks a job against the operator's controls: a cancelled job is finished as
// cancelled, a paused one handed back. It returns true when it did either.
func (w *Worker) held(ctx context.Context, j *job) bool {
	st := w.controls()
	if st == nil {
		return false
	}
	now := time.Now()
	if c, ok := st.Cancelled(j.d.RequestID, now); ok && (j.rec == nil || !j.rec.anyDone()) {
		res := w.newResult(j, jobs.StatusCancelled)
		res.Error = jobs.Errorf(jobs.KindCancelled, fmt.Sprintf("cancelled by an operator (request id prefix %q, since %s)", c.Prefix, c.Since.Format(time.RFC3339)))
		if j.rec != nil {
			res.Attempts = j.rec.Failures
		}
		w.finish(ctx, j, res)
		return true
	}
	if p, ok := st.Paused(j.d.App, j.d.Type, j.d.Spec.Class, now); ok {
		w.m.waits.WithLabelValues(j.d.Type, "operator_pause").Inc()
		w.handBack(j, jitter(pauseDelay(p, now)))
		return true
	}
	return false
}

// pauseDelay is how long a paused job is handed back for.
func pauseDelay(p control.Pause, now time.Time) time.Duration {
	d := pausedRetry
	if p.App == "" {
		d = time.Second // the consumer is paused: nothing comes back before the pause ends
	}
	if !p.Until.IsZero() {
		d = min(d, max(p.Until.Sub(now), 10*time.Millisecond))
	}
	return d
}

// consumerPauses applies the pauses of whole job types to their consumers, so that their
// jobs stay in the stream untouched. Every replica does it; the calls are idempotent.
type consumerPauses struct {
	mu      sync.Mutex
	applied map[string]time.Time // per consumer, what it was last set to
	changed chan struct{}
}

func newConsumerPauses() *consumerPauses {
	return &consumerPauses{applied: map[string]time.Time{}, changed: make(chan struct{}, 1)}
}

func (cp *consumerPauses) signal() {
	select {
	case cp.changed <- struct{}{}:
	default:
	}
}

// onControl is called with every new state of the controls.
func (w *Worker) onControl(st *control.State) {
	now := time.Now()
	act := st.Active(now)
	w.m.paused.Reset()
	for _, p := range act.Pauses {
		app := p.App
		if app == "" {
			app = "*"
		}
		w.m.paused.WithLabelValues(app, p.Target).Set(1)
	}
	w.m.cancels.Set(float64(len(act.Cancels)))
	w.cpause.signal()
}

// followPauses keeps the consumers' pauses in line with the controls until ctx ends.
func (w *Worker) followPauses(ctx context.Context) {
	t := time.NewTicker(5 * time.Second) // retries a failed call
	defer t.Stop()
	for {
		st := w.ctl.Load()
		now := time.Now()
		for _, cs := range consumerSpecs() {
			jt := string(cs.spec.Type)
			name := w.n.LaneConsumer(jt, cs.lane)
			want := st.ConsumerPause(jt, cs.spec.Class, now)
			w.cpause.mu.Lock()
			have, known := w.cpause.applied[name]
			w.cpause.mu.Unlock()
			if known && have.Equal(want) {
				continue
			}
			var err error
			if want.IsZero() {
				_, err = w.js.ResumeConsumer(ctx, w.n.JobsStream(), name)
			} else {
				_, err = w.js.PauseConsumer(ctx, w.n.JobsStream(), name, want)
			}
			if err != nil {
				if ctx.Err() == nil {
					w.log.Warn().Err(err).Str("consumer", name).Msg("could not apply an operator's pause to the consumer; retrying")
				}
				continue
			}
			w.log.Info().Str("consumer", name).Time("paused_until", want).Msg("consumer pause applied")
			w.cpause.mu.Lock()
			w.cpause.applied[name] = want
			w.cpause.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-w.cpause.changed:
		case <-t.C:
		}
	}
}

// Controls returns the store of the operator's controls the worker follows.
func (w *Worker) Controls() control.Store { return control.Store{KV: w.ctlKV} }
