package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// Targets of the issue, on this 2-core machine.
const (
	targetDrain        = 10000 // jobs/s, NATS, sandbox and worker sharing the cores
	targetCPUPerJob    = 80 * time.Microsecond
	targetP99          = 5 * time.Millisecond
	targetRSS          = 64 << 20
	precisionTolerance = 0.01 // a sliding second may hold the rate plus 1 % plus one replica's burst
	precisionBurst     = 0.01 // a replica's bucket holds 1 % of the rate (limiter)
	minAchieved        = 0.98 // of the limit, while a backlog waits
)

// drain: a backlog drained as fast as the worker goes, with an unthrottled sandbox.
func (b *bench) drain(ctx context.Context) error {
	e, err := newEnv(ctx, b, "drain", envOptions{sandbox: true})
	if err != nil {
		return err
	}
	defer e.close()
	n := b.o.jobs
	g := jobGen{run: "drain", types: []jobs.Type{jobs.P2P}}
	e.res.expect(g.run, n, false)
	pub, err := e.publishBacklog(ctx, g, n)
	if err != nil {
		return err
	}
	logf("drain: published %d jobs in %s (%s)", n, fmtDur(pub), fmtRate(float64(n)/pub.Seconds()))

	v0, _ := e.varz()
	smp := e.startSampler(100 * time.Millisecond)
	if err := e.startWorkers(ctx, b.o.workers, workerSettings{rate: unlimitedRate}); err != nil {
		smp.finish()
		return err
	}
	waitProfile := e.profileCPU("drain", b.o.profileSeconds)
	err = e.wait(ctx, "drain", 30*time.Second)
	samples := smp.finish()
	waitProfile()
	if err != nil {
		return err
	}
	v1, verr := e.varz()
	snap := e.res.snapshot()
	first, last, _ := span(snap.recv, nil)
	rate := float64(n-1) / time.Duration(last-first).Seconds()
	w := b.o.workers
	label := fmt.Sprintf("%d jobs, %d worker", n, w)
	if w > 1 {
		label += "s"
	}
	a, z := steadyWindow(samples, n)
	jobsDone := z.results - a.results
	// What the machine would do if these processes had it to themselves: its cores divided
	// by the CPU time all of them spend per job (other programs' load does not count).
	var ceiling []string
	if jobsDone > 0 {
		all := cpuDelta(a, z, "") / time.Duration(jobsDone)
		ceiling = append(ceiling, fmt.Sprintf("CPU-bound: %d cores ÷ %s per job (all processes) = %s",
			b.machine.Cores, fmtDur(all), fmtRate(float64(b.machine.Cores)/all.Seconds())))
	}
	if b.ceil.consume > 0 {
		ceiling = append(ceiling, fmt.Sprintf("%s of consume+ack (%s), %s of HTTP (%s)", pct(rate, b.ceil.consume), fmtRate(b.ceil.consume), pct(rate, b.ceil.http), fmtRate(b.ceil.http)))
	}
	b.add(row{Scenario: "drain", Metric: "drain rate, first → last result (" + label + ", sandbox unthrottled)", Value: fmtRate(rate), Num: rate, Unit: "jobs/s",
		Target: fmt.Sprintf("≥ %s", fmtRate(targetDrain)), Verdict: verdict(rate >= targetDrain), Ceiling: strings.Join(ceiling, "; ")})

	cpu := func(prefix string) time.Duration { return cpuDelta(a, z, prefix) }
	perJob := func(d time.Duration) time.Duration {
		if jobsDone <= 0 {
			return 0
		}
		return d / time.Duration(jobsDone)
	}
	wcpu := perJob(cpu("worker-"))
	b.add(row{Scenario: "drain", Metric: "worker CPU time per job", Value: fmtDur(wcpu), Num: float64(wcpu) / 1e3, Unit: "µs",
		Target: "≤ " + fmtDur(targetCPUPerJob), Verdict: verdict(wcpu > 0 && wcpu <= targetCPUPerJob),
		Ceiling: fmt.Sprintf("%.1f cores busy in the worker", cpu("worker-").Seconds()/(z.at-a.at).Seconds())})
	var hwm uint64
	for name, st := range z.procs {
		if strings.HasPrefix(name, "worker-") {
			hwm = max(hwm, st.HWM)
		}
	}
	b.add(row{Scenario: "drain", Metric: "worker peak RSS (VmHWM)", Value: fmtMiB(hwm), Num: mib(hwm), Unit: "MiB",
		Target: "≤ " + fmtMiB(targetRSS), Verdict: verdict(hwm <= targetRSS)})
	b.cpuSplit("drain", a, z, jobsDone)
	b.drainCPU.worker, b.drainCPU.nats, b.drainCPU.sandbox = wcpu, perJob(cpu("nats")), perJob(cpu("sandbox"))
	if verr == nil {
		in, out := float64(v1.InMsgs-v0.InMsgs)/float64(n), float64(v1.OutMsgs-v0.OutMsgs)/float64(n)
		b.add(row{Scenario: "drain", Metric: "NATS messages per job, in / out (server counters)", Value: fmt.Sprintf("%.1f / %.1f", in, out), Num: in, Unit: "msgs in",
			Ceiling: "job delivery, ack, and every request/reply of the worker"})
	}
	b.add(row{Scenario: "drain", Metric: "backlog publish (async, before the workers start)", Value: fmtRate(float64(n) / pub.Seconds()), Num: float64(n) / pub.Seconds(), Unit: "jobs/s",
		Ceiling: ceilingRatio(float64(n)/pub.Seconds(), b.ceil.publish, "async publish")})
	b.resultStatus("drain", snap)
	return nil
}

// throttled: what a job costs while a backlog waits for budget, the case users pay for
// (MIMC allows 1,000/s per class): a backlog of --precision-seconds at --precision-rate
// drained by one worker, and the worker's and nats-server's CPU per job beside the drain's
// of the same run.
func (b *bench) throttled(ctx context.Context) error {
	rate := b.o.precisionRate
	e, err := newEnv(ctx, b, "throttled", envOptions{sandbox: true, sandboxRate: rate})
	if err != nil {
		return err
	}
	defer e.close()
	n := int(rate) * b.o.precisionSeconds
	g := jobGen{run: "thr", types: []jobs.Type{jobs.P2P}}
	e.res.expect(g.run, n, false)
	if _, err := e.publishBacklog(ctx, g, n); err != nil {
		return err
	}
	logf("throttled: %d p2p jobs (%d s at %s) waiting; starting 1 worker", n, b.o.precisionSeconds, fmtRate(rate))
	v0, _ := e.varz()
	smp := e.startSampler(250 * time.Millisecond)
	if err := e.startWorkers(ctx, 1, workerSettings{rate: rate}); err != nil {
		smp.finish()
		return err
	}
	waitProfile := e.profileCPU("throttled", b.o.profileSeconds)
	err = e.wait(ctx, "throttled", 30*time.Second)
	samples := smp.finish()
	waitProfile()
	if err != nil {
		return err
	}
	v1, verr := e.varz()
	a, z := steadyWindow(samples, n)
	done := z.results - a.results
	if done <= 0 {
		return fmt.Errorf("throttled: no results in the steady window")
	}
	per := func(prefix string) time.Duration { return cpuDelta(a, z, prefix) / time.Duration(done) }
	for _, p := range []struct {
		name, prefix string
		drain        time.Duration
	}{{"worker", "worker-", b.drainCPU.worker}, {"nats-server", "nats", b.drainCPU.nats}} {
		v := per(p.prefix)
		r := row{Scenario: "throttled", Metric: fmt.Sprintf("%s CPU per job at %s with a backlog", p.name, fmtRate(rate)),
			Value: fmtDur(v), Num: float64(v) / 1e3, Unit: "µs"}
		if p.drain > 0 {
			r.Target = fmt.Sprintf("≤ the drain's %s", fmtDur(p.drain))
			r.Verdict = verdict(v <= p.drain)
			r.Ceiling = fmt.Sprintf("%.2f × the drain's", float64(v)/float64(p.drain))
		}
		b.add(r)
	}
	// The sandbox does the same work per call as in the drain: what its CPU per call gains
	// here is what running at a fraction of the machine costs any program (wake-ups, cold
	// caches), not work the worker added.
	if sb := per("sandbox"); b.drainCPU.sandbox > 0 && sb > 0 {
		b.add(row{Scenario: "throttled", Metric: "sandbox CPU per call (the same work as in the drain)", Value: fmtDur(sb), Num: float64(sb) / 1e3, Unit: "µs",
			Ceiling: fmt.Sprintf("%.2f × the drain's %s", float64(sb)/float64(b.drainCPU.sandbox), fmtDur(b.drainCPU.sandbox))})
	}
	if verr == nil {
		in, out := float64(v1.InMsgs-v0.InMsgs)/float64(n), float64(v1.OutMsgs-v0.OutMsgs)/float64(n)
		b.add(row{Scenario: "throttled", Metric: "NATS messages per job, in / out (server counters)", Value: fmt.Sprintf("%.1f / %.1f", in, out), Num: in, Unit: "msgs in",
			Ceiling: "the drain's are the same when waiting for budget adds no NATS traffic"})
	}
	b.cpuSplit("throttled", a, z, done)
	b.resultStatus("throttled", e.res.snapshot())
	return nil
}

// latency: a steady offered load, publish → result receipt.
func (b *bench) latency(ctx context.Context) error {
	e, err := newEnv(ctx, b, "latency", envOptions{sandbox: true})
	if err != nil {
		return err
	}
	defer e.close()
	if err := e.startWorkers(ctx, 1, workerSettings{rate: unlimitedRate}); err != nil {
		return err
	}
	rate := b.o.latencyRate
	warm := int(rate) // the first second warms up connections and is not counted
	n := warm + int(rate*b.o.duration.Seconds())
	g := jobGen{run: "lat", types: []jobs.Type{jobs.P2P}}
	e.res.expect(g.run, n, true)
	sent := make([]int64, n)
	smp := e.startSampler(250 * time.Millisecond)
	waitProfile := e.profileCPU("latency", max(1, int(b.o.duration.Seconds())))
	if err := e.publishPaced(ctx, g, n, rate, sent); err != nil {
		smp.finish()
		waitProfile()
		return err
	}
	werr := e.wait(ctx, "latency", 10*time.Second)
	samples := smp.finish()
	waitProfile()
	if werr != nil && errors.Is(werr, context.Canceled) {
		return werr
	}
	snap := e.res.snapshot()
	offered := float64(n-1) / time.Duration(sent[n-1]-sent[0]).Seconds()
	var lat, inWorker []time.Duration
	missing := 0
	for i := warm; i < n; i++ {
		if snap.recv[i] == 0 {
			missing++
			continue
		}
		lat = append(lat, time.Duration(snap.recv[i]-sent[i]))
		inWorker = append(inWorker, time.Duration(snap.workerTimes[i])*time.Microsecond)
	}
	if len(lat) == 0 {
		return fmt.Errorf("no results: %v", werr)
	}
	slices.Sort(lat)
	slices.Sort(inWorker)
	label := fmt.Sprintf("at %s for %s", fmtRate(offered), b.o.duration)
	p99 := quantile(lat, 0.99)
	b.add(row{Scenario: "latency", Metric: "publish → result p50 " + label, Value: fmtDur(quantile(lat, 0.5)), Num: ms(quantile(lat, 0.5)), Unit: "ms"})
	b.add(row{Scenario: "latency", Metric: "publish → result p99 " + label, Value: fmtDur(p99), Num: ms(p99), Unit: "ms",
		Target: "≤ " + fmtDur(targetP99), Verdict: verdict(p99 <= targetP99 && missing == 0)})
	b.add(row{Scenario: "latency", Metric: "publish → result p99.9 / max", Value: fmtDur(quantile(lat, 0.999)) + " / " + fmtDur(lat[len(lat)-1]), Num: ms(quantile(lat, 0.999)), Unit: "ms"})
	b.add(row{Scenario: "latency", Metric: "in the worker (enqueued_at → completed_at) p50 / p99",
		Value: fmtDur(quantile(inWorker, 0.5)) + " / " + fmtDur(quantile(inWorker, 0.99)), Num: ms(quantile(inWorker, 0.99)), Unit: "ms (p99)"})
	if len(samples) >= 2 {
		a, z := samples[0], samples[len(samples)-1]
		if done := z.results - a.results; done > 0 {
			per := cpuDelta(a, z, "worker-") / time.Duration(done)
			_, st := lastProc(samples, "worker-1")
			b.add(row{Scenario: "latency", Metric: "worker CPU per job / peak RSS at this load", Value: fmtDur(per) + " / " + fmtMiB(st.HWM), Num: float64(per) / 1e3, Unit: "µs"})
			b.cpuSplit("latency", a, z, done)
		}
	}
	if missing > 0 {
		b.add(row{Scenario: "latency", Metric: "jobs without a result", Value: fmt.Sprint(missing), Num: float64(missing), Target: "0", Verdict: "MISS"})
	}
	b.resultStatus("latency", snap)
	return werr
}

// precision: three classes at a limited rate with a backlog, with 1 and 3 replicas.
func (b *bench) precision(ctx context.Context) error {
	var errs []error
	for _, r := range b.o.replicas {
		if err := b.precisionRun(ctx, r); err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			errs = append(errs, fmt.Errorf("%d replicas: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

func (b *bench) precisionRun(ctx context.Context, replicas int) error {
	rate := b.o.precisionRate
	e, err := newEnv(ctx, b, fmt.Sprintf("precision-%d", replicas), envOptions{sandbox: true, sandboxRate: rate})
	if err != nil {
		return err
	}
	defer e.close()
	classes := []jobs.Type{jobs.P2P, jobs.P2T, jobs.UCS}
	per := int(rate) * b.o.precisionSeconds
	n := per * len(classes)
	g := jobGen{run: fmt.Sprintf("prec%d", replicas), types: classes}
	e.res.expect(g.run, n, false)
	if _, err := e.publishBacklog(ctx, g, n); err != nil {
		return err
	}
	logf("precision: %d jobs (%d s of %s per class) waiting; starting %d worker(s)", n, b.o.precisionSeconds, fmtRate(rate), replicas)
	smp := e.startSampler(250 * time.Millisecond)
	if err := e.startWorkers(ctx, replicas, workerSettings{rate: rate}); err != nil {
		smp.finish()
		return err
	}
	err = e.wait(ctx, fmt.Sprintf("precision ×%d", replicas), 30*time.Second)
	samples := smp.finish()
	if err != nil {
		return err
	}
	st, err := e.sandboxStats(ctx)
	if err != nil {
		return err
	}
	snap := e.res.snapshot()
	bound := rate*(1+precisionTolerance) + math.Ceil(rate*precisionBurst)
	for k, t := range classes {
		first, last, cnt := span(snap.recv, func(i int) bool { return i%len(classes) == k })
		cs := st.Classes[string(t)]
		d := time.Duration(last - first)
		achieved := float64(cs.Tokens-1) / d.Seconds() / rate
		logf("precision ×%d %s: results per second from the first: %v", replicas, t, perSecond(snap.recv, first, func(i int) bool { return i%len(classes) == k }))
		ok := achieved >= minAchieved && float64(cs.WorstWindow) <= bound && cs.RateLimited == 0 && cnt == per
		b.add(row{
			Scenario: "precision",
			Metric:   fmt.Sprintf("%s, %d replica%s: achieved/limit · worst 1 s window · HTTP 429s", t, replicas, plural(replicas)),
			Value:    fmt.Sprintf("%.3f (%d in %.2f s) · %d · %d", achieved, cs.Tokens, d.Seconds(), cs.WorstWindow, cs.RateLimited),
			Num:      achieved,
			Unit:     "of limit",
			Target:   fmt.Sprintf("≥ %.2f · ≤ %.0f · 0", minAchieved, bound),
			Verdict:  verdict(ok),
		})
	}
	if a, z := steadyWindow(samples, n); z.results > a.results {
		b.cpuSplit(fmt.Sprintf("precision ×%d", replicas), a, z, z.results-a.results)
	}
	b.resultStatus(fmt.Sprintf("precision ×%d", replicas), snap)
	return nil
}

// memory: RSS of one worker while it drains a large backlog.
func (b *bench) memory(ctx context.Context) error {
	e, err := newEnv(ctx, b, "memory", envOptions{sandbox: true})
	if err != nil {
		return err
	}
	defer e.close()
	n := b.o.backlog
	g := jobGen{run: "mem", types: []jobs.Type{jobs.P2P}}
	e.res.expect(g.run, n, false)
	pub, err := e.publishBacklog(ctx, g, n)
	if err != nil {
		return err
	}
	logf("memory: published %d jobs in %s (%s)", n, fmtDur(pub), fmtRate(float64(n)/pub.Seconds()))
	smp := e.startSampler(500 * time.Millisecond)
	if err := e.startWorkers(ctx, 1, workerSettings{rate: unlimitedRate}); err != nil {
		smp.finish()
		return err
	}
	halfDone := make(chan struct{})
	go func() { // a heap profile half way
		defer close(halfDone)
		for ctx.Err() == nil && e.res.received() < n/2 && len(e.workerList()) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		if ctx.Err() == nil {
			e.profileHeap("memory-half")
		}
	}()
	err = e.wait(ctx, "memory", 60*time.Second)
	if err == nil {
		e.profileHeap("memory-end")
	}
	samples := smp.finish()
	if err != nil {
		return err
	}
	<-halfDone
	snap := e.res.snapshot()
	first, last, _ := span(snap.recv, nil)
	rate := float64(n-1) / time.Duration(last-first).Seconds()

	var q1, q4 []uint64
	var startRSS, endRSS, peak, natsPeak uint64
	for _, s := range samples {
		st, ok := s.procs["worker-1"]
		if !ok {
			continue
		}
		natsPeak = max(natsPeak, s.procs["nats"].HWM)
		peak = max(peak, st.HWM)
		endRSS = st.RSS
		if s.results > 0 && startRSS == 0 {
			startRSS = st.RSS
		}
		switch {
		case s.results > 0 && s.results <= n/4:
			q1 = append(q1, st.RSS)
		case s.results >= 3*n/4 && s.results < n:
			q4 = append(q4, st.RSS)
		}
	}
	b.add(row{Scenario: "memory", Metric: fmt.Sprintf("worker peak RSS draining %d jobs", n), Value: fmtMiB(peak), Num: mib(peak), Unit: "MiB",
		Target: "≤ " + fmtMiB(targetRSS), Verdict: verdict(peak <= targetRSS)})
	a1, a4 := avg(q1), avg(q4)
	growth := a4 - a1
	flat := len(q1) > 0 && len(q4) > 0 && (growth <= 4 || growth <= 0.1*a1)
	b.add(row{Scenario: "memory", Metric: "worker RSS: start · first-quarter avg · last-quarter avg · end",
		Value: fmt.Sprintf("%s · %.1f · %.1f · %s", fmtMiB(startRSS), a1, a4, fmtMiB(endRSS)), Num: growth, Unit: "MiB growth",
		Target: "flat (≤ +10% or +4 MiB)", Verdict: verdict(flat)})
	if a, z := steadyWindow(samples, n); z.results > a.results {
		per := cpuDelta(a, z, "worker-") / time.Duration(z.results-a.results)
		b.add(row{Scenario: "memory", Metric: "drain rate · worker CPU per job (1 worker)", Value: fmtRate(rate) + " · " + fmtDur(per), Num: rate, Unit: "jobs/s"})
		b.cpuSplit("memory", a, z, z.results-a.results)
	}
	b.add(row{Scenario: "memory", Metric: "NATS server peak RSS · backlog publish rate", Value: fmtMiB(natsPeak) + " · " + fmtRate(float64(n)/pub.Seconds()), Num: mib(natsPeak), Unit: "MiB"})
	b.resultStatus("memory", snap)
	return nil
}

// resultStatus adds a row when some results were not "sent", or came twice.
func (b *bench) resultStatus(scenario string, s resultsSnapshot) {
	var other []string
	for st, c := range s.status {
		if st != string(jobs.StatusSent) {
			other = append(other, fmt.Sprintf("%s %d", st, c))
		}
	}
	sort.Strings(other)
	if len(other) == 0 && s.dups == 0 {
		return
	}
	v := strings.Join(other, ", ")
	if s.dups > 0 {
		v += fmt.Sprintf(" duplicates %d", s.dups)
	}
	b.add(row{Scenario: scenario, Metric: "results other than sent", Value: strings.TrimSpace(v), Target: "none", Verdict: "MISS"})
	for _, bad := range s.bad {
		logf("%s: example result: %s", scenario, bad)
	}
}

// resultsSnapshot is a copy of a phase's results.
type resultsSnapshot struct {
	recv        []int64
	workerTimes []int32
	status      map[string]int
	dups        int
	bad         []string
}

func (r *results) snapshot() resultsSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := resultsSnapshot{recv: slices.Clone(r.recv), workerTimes: slices.Clone(r.workerTimes), status: map[string]int{}, dups: r.dups, bad: slices.Clone(r.bad)}
	for k, v := range r.status {
		s.status[k] = v
	}
	return s
}

// span returns the first and last receipt times of the jobs pick selects (nil: all) and
// how many of them have a result.
// perSecond counts the picked results in each second from first.
func perSecond(recv []int64, first int64, pick func(i int) bool) []int {
	var out []int
	for i, t := range recv {
		if t == 0 || !pick(i) {
			continue
		}
		s := int((t - first) / int64(time.Second))
		for len(out) <= s {
			out = append(out, 0)
		}
		out[s]++
	}
	return out
}

func span(recv []int64, pick func(i int) bool) (first, last int64, n int) {
	for i, t := range recv {
		if t == 0 || (pick != nil && !pick(i)) {
			continue
		}
		if n == 0 || t < first {
			first = t
		}
		last = max(last, t)
		n++
	}
	return first, last, n
}

// steadyWindow returns the first sample with a result and the first with all n (or the
// last), so that start-up and idle time stay out of per-job figures.
func steadyWindow(samples []sample, n int) (a, z sample) {
	if len(samples) == 0 {
		return a, z
	}
	a, z = samples[0], samples[len(samples)-1]
	for _, s := range samples {
		if s.results > 0 {
			a = s
			break
		}
	}
	for _, s := range samples {
		if s.results >= n {
			z = s
			break
		}
	}
	return a, z
}

// cpuDelta sums the CPU time of the processes whose name starts with prefix between a and z.
func cpuDelta(a, z sample, prefix string) time.Duration {
	var d time.Duration
	for name, st := range z.procs {
		if strings.HasPrefix(name, prefix) {
			d += st.CPU - a.procs[name].CPU
		}
	}
	return d
}

func lastProc(samples []sample, name string) (sample, procStat) {
	for i := len(samples) - 1; i >= 0; i-- {
		if st, ok := samples[i].procs[name]; ok {
			return samples[i], st
		}
	}
	return sample{}, procStat{}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)))
	return sorted[min(i, len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func avg(v []uint64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += mib(x)
	}
	return s / float64(len(v))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func ceilingRatio(v, ceiling float64, name string) string {
	if ceiling <= 0 {
		return ""
	}
	return fmt.Sprintf("%s of %s (%s)", pct(v, ceiling), name, fmtRate(ceiling))
}

// cpuSplit adds a row with the CPU time per job of every process between a and z.
func (b *bench) cpuSplit(scenario string, a, z sample, jobsDone int) {
	if jobsDone <= 0 {
		return
	}
	per := func(prefix string) string { return fmtDur(cpuDelta(a, z, prefix) / time.Duration(jobsDone)) }
	busy := float64(z.busy-a.busy) / float64(max(z.total-a.total, 1))
	// Ticks of /proc/stat are USER_HZ too: what the machine did beyond our processes is
	// other load (another program, a test run) that distorts the figures.
	ours := cpuDelta(a, z, "")
	cores := float64(max(b.machine.Cores, 1))
	elapsed := float64(z.total-a.total) / clkTck / cores // seconds of wall time
	other := (float64(z.busy-a.busy)/clkTck - ours.Seconds()) / (elapsed * cores)
	b.add(row{Scenario: scenario, Metric: "CPU per job by process (machine busy, of it other programs)",
		Value: fmt.Sprintf("worker %s, nats %s, sandbox %s, pushbench %s (%.0f%% busy, other %.0f%%)",
			per("worker-"), per("nats"), per("sandbox"), per("pushbench"), 100*busy, 100*max(other, 0)),
		Num: busy * 100, Unit: "% machine busy"})
}
