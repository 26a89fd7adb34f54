package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pushworker/pushworker/internal/localhost"
	"github.com/pushworker/pushworker/jobs"
)

// syncCost: PUSH_EMBEDDED_SYNC=always against the server's default, in embedded mode.
func (b *bench) syncCost(ctx context.Context) error {
	var rates [2]float64
	for i, mode := range []string{"", "always"} {
		r, err := b.syncRun(ctx, mode)
		if err != nil {
			return err
		}
		rates[i] = r
	}
	if rates[0] > 0 {
		b.add(row{Scenario: "sync", Metric: "always ÷ default, jobs/s", Value: fmt.Sprintf("%.2f", rates[1]/rates[0]), Num: rates[1] / rates[0], Unit: "ratio"})
	}
	return nil
}

// syncRun publishes --sync-jobs jobs to a worker with an embedded NATS server synced as
// mode says, while it drains them. It returns the jobs/s.
func (b *bench) syncRun(ctx context.Context, mode string) (float64, error) {
	label := "PUSH_EMBEDDED_SYNC=" + mode
	name := "sync-" + mode
	if mode == "" {
		label, name = "default sync (2m)", "sync-default"
	}
	e := &benchEnv{b: b, name: name, dir: filepath.Join(b.tmp, name)}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return 0, err
	}
	defer e.close()
	if err := e.startSandbox(ctx, 0); err != nil {
		return 0, err
	}
	port, err := localhost.FreePort()
	if err != nil {
		return 0, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	// e.natsURL stays empty: the worker starts its own server (PUSH_NATS_URL empty).
	if err := e.startWorkers(ctx, 1, workerSettings{rate: unlimitedRate, extra: []string{
		"PUSH_EMBEDDED_LISTEN=" + listen, "PUSH_EMBEDDED_SYNC=" + mode,
	}}); err != nil {
		return 0, err
	}
	e.natsURL = "nats://" + listen
	if err := e.connect(ctx); err != nil {
		return 0, err
	}
	n := b.o.syncJobs
	g := jobGen{run: name, types: []jobs.Type{jobs.P2P}}
	e.res.expect(g.run, n, false)
	smp := e.startSampler(100 * time.Millisecond)
	p, err := newPublisher(e.pub)
	if err != nil {
		smp.finish()
		return 0, err
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		subject, data := g.job(i)
		if err := p.send(ctx, subject, data); err != nil {
			smp.finish()
			return 0, err
		}
	}
	if err := p.complete(ctx); err != nil {
		smp.finish()
		return 0, err
	}
	pub := time.Since(start)
	err = e.wait(ctx, name, 30*time.Second)
	samples := smp.finish()
	if err != nil {
		return 0, err
	}
	snap := e.res.snapshot()
	first, last, _ := span(snap.recv, nil)
	rate := float64(n-1) / time.Duration(last-first).Seconds()
	a, z := steadyWindow(samples, n)
	per := time.Duration(0)
	if done := z.results - a.results; done > 0 {
		per = cpuDelta(a, z, "worker-") / time.Duration(done)
	}
	b.add(row{Scenario: "sync", Metric: label + ": jobs/s, first → last result (publishing at full speed meanwhile)", Value: fmtRate(rate), Num: rate, Unit: "jobs/s",
		Ceiling: fmt.Sprintf("publish of %d jobs took %s", n, fmtDur(pub))})
	b.add(row{Scenario: "sync", Metric: label + ": worker CPU per job, its embedded NATS server included", Value: fmtDur(per), Num: float64(per) / 1e3, Unit: "µs"})
	b.resultStatus("sync", snap)
	return rate, nil
}
