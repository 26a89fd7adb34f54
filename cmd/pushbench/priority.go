package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// targetHighP99 is the bar for high-priority jobs behind a low backlog.
const targetHighP99 = 300 * time.Millisecond

// priority: a backlog of low-priority p2p jobs drains at the class's rate while high-priority
// p2p jobs arrive at a steady pace; they must overtake the backlog, and the class must stay
// within its rate.
func (b *bench) priority(ctx context.Context) error {
	rate := b.o.precisionRate
	e, err := newEnv(ctx, b, "priority", envOptions{sandbox: true, sandboxRate: rate})
	if err != nil {
		return err
	}
	defer e.close()
	lows := b.o.priorityBacklog
	highRate := b.o.priorityHighRate
	drainFor := time.Duration(float64(lows) / rate * float64(time.Second))
	highFor := drainFor * 8 / 10 // highs while most of the backlog is still there
	highs := int(highRate * highFor.Seconds())
	n := lows + highs
	g := jobGen{run: "prio", types: []jobs.Type{jobs.P2P}, priority: func(i int) jobs.Priority {
		if i < lows {
			return jobs.PriorityLow
		}
		return jobs.PriorityHigh
	}}
	e.res.expect(g.run, n, false)
	low := g
	if _, err := e.publishBacklog(ctx, low, lows); err != nil {
		return err
	}
	logf("priority: %d low-priority jobs waiting (%s at %s); starting a worker", lows, fmtDur(drainFor), fmtRate(rate))
	if err := e.startWorkers(ctx, 1, workerSettings{rate: rate}); err != nil {
		return err
	}
	// Let the backlog drain for a while, then offer the high-priority jobs.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(drainFor / 10):
	}
	sent := make([]int64, n)
	p, err := newPublisher(e.pub)
	if err != nil {
		return err
	}
	t := time.NewTicker(time.Millisecond)
	start := time.Now()
	for i := lows; i < n; {
		due := min(n, lows+int(time.Since(start).Seconds()*highRate)+1)
		for ; i < due; i++ {
			subject, data := g.job(i)
			sent[i] = e.res.now()
			if err := p.send(ctx, subject, data); err != nil {
				t.Stop()
				return err
			}
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	t.Stop()
	if err := p.complete(ctx); err != nil {
		return err
	}
	if err := e.wait(ctx, "priority", 30*time.Second); err != nil {
		return err
	}
	st, err := e.sandboxStats(ctx)
	if err != nil {
		return err
	}
	snap := e.res.snapshot()
	var lat []time.Duration
	lowsBefore := 0 // low jobs done before the last high one
	lastHigh := int64(0)
	for i := lows; i < n; i++ {
		lat = append(lat, time.Duration(snap.recv[i]-sent[i]))
		lastHigh = max(lastHigh, snap.recv[i])
	}
	for i := range lows {
		if snap.recv[i] < lastHigh {
			lowsBefore++
		}
	}
	slices.Sort(lat)
	p99 := quantile(lat, 0.99)
	label := fmt.Sprintf("%d high at %s behind %d low at %s", highs, fmtRate(highRate), lows, fmtRate(rate))
	b.add(row{Scenario: "priority", Metric: "high: publish → result p50 / p99 / max (" + label + ")",
		Value: fmtDur(quantile(lat, 0.5)) + " / " + fmtDur(p99) + " / " + fmtDur(lat[len(lat)-1]), Num: ms(p99), Unit: "ms (p99)",
		Target: "p99 < " + fmtDur(targetHighP99), Verdict: verdict(p99 < targetHighP99)})
	cs := st.Classes[string(jobs.P2P)]
	bound := rate*(1+precisionTolerance) + math.Ceil(rate*precisionBurst)
	first, last, _ := span(snap.recv, nil)
	achieved := float64(cs.Tokens-1) / time.Duration(last-first).Seconds() / rate
	b.add(row{Scenario: "priority", Metric: "p2p class: achieved/limit · worst 1 s window · HTTP 429s",
		Value: fmt.Sprintf("%.3f · %d · %d", achieved, cs.WorstWindow, cs.RateLimited), Num: float64(cs.WorstWindow), Unit: "tokens",
		Target: fmt.Sprintf("≥ %.2f · ≤ %.0f · 0", minAchieved, bound), Verdict: verdict(achieved >= minAchieved && float64(cs.WorstWindow) <= bound && cs.RateLimited == 0)})
	b.add(row{Scenario: "priority", Metric: "low jobs done before the last high one", Value: fmt.Sprintf("%d of %d", lowsBefore, lows), Num: float64(lowsBefore)})
	b.resultStatus("priority", snap)
	return nil
}
