package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

// orphanEvery is how often each job consumer's ack floor is compared with the jobs left on
// its subject, unless Options.OrphanSweep says otherwise.
const orphanEvery = 10 * time.Second

// sweepOrphans recovers jobs that JetStream holds but will never deliver again. In a
// work-queue stream a job leaves the stream when it is acknowledged, so a job still on a
// consumer's subject at or below that consumer's ack floor was lost by the consumer, not
// settled: the chaos soak saw a consumer's leader change drop the delayed redeliveries of
// jobs handed back with NakWithDelay, and the new leader's ack floor moved past them
// (README "Chaos soak"). Nothing else would ever deliver them.
//
// Each sweep looks at the first job on each consumer's subject. One that sits at or below
// the ack floor in two sweeps in a row (an acknowledgement whose removal is still on its way
// lasts milliseconds, not a sweep) makes the worker reset the consumer to that job
// ($JS.API.CONSUMER.RESET, nats-server 2.14 and later): JetStream delivers again from there.
// Jobs after it that are being worked on elsewhere are delivered again too; their holder
// records and stored results keep each at most once upstream, as after any failover. Every
// replica sweeps; two resets to the same job are harmless.
func (w *Worker) sweepOrphans(ctx context.Context) {
	every := w.o.OrphanSweep
	if every <= 0 {
		every = orphanEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	suspects := map[string]uint64{} // consumer → the job seen at or below its floor last time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, cs := range consumerSpecs() {
			if ctx.Err() != nil {
				return
			}
			name := w.n.LaneConsumer(string(cs.spec.Type), cs.lane)
			seq, err := w.orphan(ctx, name, jobs.JobSubject(w.n.Subject, string(cs.spec.Type), cs.lane))
			if err != nil || seq == 0 {
				delete(suspects, name)
				continue
			}
			if suspects[name] != seq {
				suspects[name] = seq // seen once: look again next time
				continue
			}
			delete(suspects, name)
			if err := w.resetConsumer(ctx, name, seq); err != nil {
				w.log.Warn().Err(err).Str("consumer", name).Uint64("job_seq", seq).Msg("could not have an undelivered job delivered again")
				continue
			}
			w.m.orphans.WithLabelValues(name).Inc()
			w.log.Warn().Str("consumer", name).Uint64("job_seq", seq).
				Msg("a job below the consumer's ack floor was still in the stream, never to be delivered: consumer reset to deliver from it again")
		}
	}
}

// orphan returns the stream sequence of the first job on subject if it is at or below the
// ack floor of consumer name, else 0.
func (w *Worker) orphan(ctx context.Context, name, subject string) (uint64, error) {
	cons, err := w.stream.Consumer(ctx, name) // one CONSUMER.INFO request: its answer is the cached info
	if err != nil {
		return 0, err
	}
	floor := cons.CachedInfo().AckFloor.Stream
	if floor == 0 {
		return 0, nil
	}
	raw, err := w.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if raw.Sequence > floor {
		return 0, nil
	}
	return raw.Sequence, nil
}

// resetConsumer makes consumer name deliver again from stream sequence seq (and its ack
// floor seq-1), dropping its record of what it delivered. nats.go has no call for it yet.
func (w *Worker) resetConsumer(ctx context.Context, name string, seq uint64) error {
	req, _ := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{seq})
	subject := fmt.Sprintf("$JS.API.CONSUMER.RESET.%s.%s", w.n.JobsStream(), name)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := w.js.Conn().RequestWithContext(ctx, subject, req)
	if err != nil {
		return err
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("consumer reset answer: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("consumer reset: %s (%d)", resp.Error.Description, resp.Error.Code)
	}
	return nil
}
