package worker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/limiter"
)

// High-priority jobs overtake a backlog of low ones, on two replicas: they have their own
// consumer (no wait behind the low jobs in the stream) and the first places in the gate
// (no wait behind them for the rate), while the low backlog keeps draining.
func TestPriorityOvertakesBacklogOnTwoReplicas(t *testing.T) {
	e := newEnv(t, map[string]string{"PUSH_RATE_P2P": "100"})
	e.stopWorker()
	c := e.cfg
	// Two replicas, each with half the budget, as the limiter's Coordinator shares it.
	half := func(app, class string) float64 { return c.Apps[app].Rate(class) / 2 }
	e.startWorker(limiter.New(limiter.Options{Rate: half}))
	e.startWorker(limiter.New(limiter.Options{Rate: half}))
	ctx := context.Background()
	publish := func(id string, p jobs.Priority) {
		job, _ := jobs.NewJob(id, jobs.P2PPayload{FromAccount: "shop", ToAccount: "u", Msg: "m"})
		job.Priority = p
		if _, err := jobs.Publish(ctx, e.js, "", jobs.P2P, job); err != nil {
			t.Fatal(err)
		}
	}
	const backlog = 400 // 4 s at 100/s
	for i := range backlog {
		publish(fmt.Sprintf("low-%d", i), jobs.PriorityLow)
	}
	lows := 0
	for lows < 50 { // the backlog is draining
		if r, _ := e.result(10 * time.Second); strings.HasPrefix(r.RequestID, "low-") {
			lows++
		}
	}
	sentAt := map[string]time.Time{}
	var took []time.Duration
	const highs = 10
	done := 0
	next := time.Now()
	for done < highs {
		if len(sentAt) < highs && time.Now().After(next) {
			id := fmt.Sprintf("high-%d", len(sentAt))
			sentAt[id] = time.Now()
			publish(id, jobs.PriorityHigh)
			next = next.Add(100 * time.Millisecond)
		}
		select {
		case m := <-e.results:
			id := m.Header.Get(jobs.HeaderRequestID)
			if strings.HasPrefix(id, "low-") {
				lows++
				continue
			}
			if m.Header.Get(jobs.HeaderStatus) != string(jobs.StatusSent) {
				t.Fatalf("%s: %s", id, m.Data)
			}
			took = append(took, time.Since(sentAt[id]))
			done++
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Logf("high-priority publish→result %v; %d of %d low jobs done by then", took, lows, backlog)
	// Behind 4 s of low jobs; the gate keeps 50 ms of the rate queued for the limiter.
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	if sorted[len(sorted)/2] > 300*time.Millisecond || sorted[len(sorted)-1] > 600*time.Millisecond {
		t.Errorf("high-priority jobs waited behind the low backlog: %v", took)
	}
	if lows >= backlog-50 {
		t.Errorf("the high-priority jobs only went after the backlog (%d of %d low jobs done)", lows, backlog)
	}
}
