// Command pushchaos is pushworker's chaos soak: faults together, for minutes, and a check
// afterwards that nothing was lost or doubled. From the module root:
//
//	go run ./cmd/pushchaos --duration 10m --seed 1
//
// On this machine only (loopback), it runs a 3-node JetStream cluster (pushchaos itself,
// re-executed as `pushchaos node`, so nothing needs to be installed), 3 pushworker
// processes built from the module (streams at 3 replicas) and the sandbox upstream behind
// a recorder. It publishes a steady mix of all eight job types at --rate jobs/s, each
// under a unique request id, plus deliberate duplicates: 2 % published again under another
// Nats-Msg-Id (a second stream message with the same request id) and 2 % under the same
// one (deduplicated on publish); 1 % are invalid and 1 % expire 1.5 s after publishing.
// Meanwhile it injects, at times drawn from --seed (one fault every --fault-every on
// average, the kinds in turn): kill -9 and SIGTERM of a worker (restarted), kill -9 of a
// NATS node (restarted), upstream 5xx bursts, latency spikes, 429 bursts and a
// configuration pause (notify code 10008 or MIMC HTTP 401) that is lifted.
//
// Then it lifts every fault, waits for quiescence (PUSH_JOBS empty) and checks, printing
// each with its count:
//
//   - every published stream message has exactly one result with its request id and
//     job_seq, and nothing else has one;
//   - per request id at most one result says the upstream accepted it (duplicate false),
//     and every duplicate: true result replays such a result;
//   - no request id was accepted by the upstream twice, except in the crash window: the
//     first acceptance made by a worker that was killed with SIGKILL after that call
//     reached the upstream and within --crash-window of its answer (each one is listed);
//   - no sliding second of upstream calls of a class held more than rate + 1 %
//     (--rate-tolerance) + one replica's burst (or the heaviest call) tokens;
//   - nothing is left in PUSH_JOBS;
//   - DLQ entries exist only, and always, for jobs whose result is failed or rejected;
//   - every SIGTERM ended with exit 0 within PUSH_SHUTDOWN_TIMEOUT.
//
// The workers and NATS nodes run at nice 5 (--child-nice): the recorder stands for a
// remote upstream with CPUs of its own, and its time stamps should not wait for their
// bursts of work on a small machine.
//
// It exits 0 when every invariant held, 1 on a violation, 2 on a usage error and 3 when
// the world could not be set up. Logs and the fault timeline stay in --dir (a temporary
// directory, removed on success unless --keep).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/internal/localhost"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream/sandbox"
)

type options struct {
	duration        time.Duration
	seed            uint64
	rate            float64
	limit           float64
	notifyLimit     float64
	faultEvery      time.Duration
	settle          time.Duration
	crashWindow     time.Duration
	shutdownTimeout time.Duration
	ackWait         time.Duration
	workerBin       string
	dir             string
	keep            bool
	workerLogLevel  string
	rateTolerance   float64
}

const (
	workers = 3
	nodes   = 3
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == nodeCommand {
		os.Exit(runNode(os.Args[2:]))
	}
	o := options{}
	fs := flag.NewFlagSet("pushchaos", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", time.Minute, "how long jobs are published and faults injected")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the fault schedule and the job mix")
	fs.Float64Var(&o.rate, "rate", 100, "jobs published per second")
	fs.Float64Var(&o.limit, "limit", 300, "PUSH_RATE_P2P, _P2T and _UCS of the workers and the sandbox's limit (tokens/s)")
	fs.Float64Var(&o.notifyLimit, "notify-limit", 100, "PUSH_RATE_NOTIFY of the workers and the sandbox's notify limit")
	fs.Float64Var(&o.rateTolerance, "rate-tolerance", 0.01, "excess over the rate a sliding second may hold besides one replica's burst (the README says 0.01, the contract 0.05)")
	fs.DurationVar(&o.faultEvery, "fault-every", 5*time.Second, "mean time between faults")
	fs.DurationVar(&o.settle, "settle", 5*time.Minute, "how long to wait for quiescence after the load")
	fs.DurationVar(&o.crashWindow, "crash-window", 10*time.Second, "how long after a call's answer a kill -9 of its worker explains a second acceptance")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "PUSH_SHUTDOWN_TIMEOUT of the workers")
	fs.DurationVar(&o.ackWait, "ack-wait", 10*time.Second, "PUSH_ACK_WAIT of the workers (how soon a killed worker's jobs come back)")
	fs.StringVar(&o.workerBin, "worker-bin", "", "pushworker binary to run (default: build ./cmd/pushworker)")
	fs.StringVar(&o.dir, "dir", "", "directory for logs and data (default: a new temporary directory)")
	fs.IntVar(&childNice, "child-nice", childNice, "niceness of the workers and NATS nodes, so that their bursts of work do not delay the recorder's time stamps (0: as pushchaos)")
	fs.StringVar(&o.workerLogLevel, "worker-log-level", "info", "PUSH_LOG_LEVEL of the workers (debug logs every job)")
	fs.BoolVar(&o.keep, "keep", false, "keep the directory also when every invariant held")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 || o.duration <= 0 || o.rate <= 0 || o.limit <= 0 || o.notifyLimit <= 0 || o.faultEvery <= 0 {
		fmt.Fprintln(os.Stderr, "pushchaos: --duration, --rate, --limit, --notify-limit and --fault-every must be positive; no positional arguments")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o))
}

var logStart = time.Now()

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "pushchaos %6.1fs  %s\n", time.Since(logStart).Seconds(), fmt.Sprintf(format, a...))
}

// world is everything a soak runs.
type world struct {
	o   options
	dir string
	up  *upstream
	cl  *cluster
	ws  []*workerSlot
	nc  *nats.Conn
	js  jetstream.JetStream

	busyMu sync.Mutex
	busy   map[int]bool // worker slots a fault is acting on

	exitMu    sync.Mutex
	selfExits []string // workers that exited by themselves, and why
	closing   bool
}

// workerExited restarts a worker that exited by itself, a second later, and notes why it
// exited (the last error line of its log).
func (w *world) workerExited(s *workerSlot, p *proc) {
	why := lastError(s.log)
	w.exitMu.Lock()
	closing := w.closing
	if !closing {
		w.selfExits = append(w.selfExits, fmt.Sprintf("%s exited by itself at +%s (%v): %s", s.name(), time.Since(logStart).Round(time.Millisecond), p.err, why))
	}
	w.exitMu.Unlock()
	if closing {
		return
	}
	logf("%s exited by itself (%v): %s; restarting it", s.name(), p.err, why)
	time.Sleep(time.Second)
	if err := s.start(); err != nil {
		logf("restarting %s: %v", s.name(), err)
	}
}

// lastError returns the message of the last error line of a worker's log.
func lastError(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var l struct{ Level, Error, Message string }
		if json.Unmarshal([]byte(lines[i]), &l) == nil && (l.Level == "error" || l.Level == "fatal") {
			return l.Message + ": " + l.Error
		}
	}
	return "no error line"
}

// pickWorker returns the slot wanted, or the next one up that no other fault acts on, and
// marks it; at least one worker always stays up.
func (w *world) pickWorker(want int) *workerSlot {
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	if len(w.busy) >= len(w.ws)-1 {
		return nil
	}
	for i := range w.ws {
		s := w.ws[(want+i)%len(w.ws)]
		if !w.busy[s.id] && s.up() {
			w.busy[s.id] = true
			return s
		}
	}
	return nil
}

func (w *world) releaseWorker(s *workerSlot) {
	w.busyMu.Lock()
	delete(w.busy, s.id)
	w.busyMu.Unlock()
}

func run(ctx context.Context, o options) int {
	w := &world{o: o, busy: map[int]bool{}}
	code, err := w.soak(ctx)
	w.teardown()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushchaos:", err)
		fmt.Fprintln(os.Stderr, "pushchaos: logs kept in", w.dir)
		return 3
	}
	if code == 0 && !o.keep && o.dir == "" {
		_ = os.RemoveAll(w.dir)
	} else {
		fmt.Fprintln(os.Stderr, "pushchaos: logs kept in", w.dir)
	}
	return code
}

func (w *world) teardown() {
	w.exitMu.Lock()
	w.closing = true
	w.exitMu.Unlock()
	for _, s := range w.ws {
		s.expect()
	}
	if w.nc != nil {
		w.nc.Close()
	}
	var wg sync.WaitGroup
	for _, s := range w.ws {
		if p := s.proc(); p != nil && !p.exited() {
			wg.Add(1)
			go func() { defer wg.Done(); p.term(w.o.shutdownTimeout + 5*time.Second) }()
		}
	}
	wg.Wait()
	if w.cl != nil {
		w.cl.stop()
	}
	if w.up != nil {
		w.up.close()
	}
}

// soak sets the world up, runs the load and the faults, waits for quiescence and checks.
func (w *world) soak(ctx context.Context) (int, error) {
	o := w.o
	var err error
	if w.dir = o.dir; w.dir == "" {
		if w.dir, err = os.MkdirTemp("", "pushchaos-"); err != nil {
			return 0, err
		}
	} else if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return 0, err
	}
	bin := o.workerBin
	if bin == "" {
		logf("building ./cmd/pushworker")
		if bin, err = buildWorker(ctx, w.dir); err != nil {
			return 0, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	rates := map[string]float64{sandbox.ClassP2P: o.limit, sandbox.ClassP2T: o.limit, sandbox.ClassUCS: o.limit, sandbox.ClassNotify: o.notifyLimit}
	if w.up, err = startUpstream(workers, rates); err != nil {
		return 0, err
	}
	if w.cl, err = newCluster(self, w.dir, nodes); err != nil {
		return 0, err
	}
	logf("starting %d NATS nodes", nodes)
	errs := make(chan error, nodes)
	for _, n := range w.cl.nodes {
		go func() { errs <- w.cl.start(ctx, n) }()
	}
	for range w.cl.nodes {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	if w.nc, err = nats.Connect(w.cl.url(), nats.Name("pushchaos"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond)); err != nil {
		return 0, err
	}
	if w.js, err = jetstream.New(w.nc); err != nil {
		return 0, err
	}
	if err := waitFor(ctx, time.Minute, "JetStream of the cluster", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := w.js.AccountInfo(c)
		return err == nil
	}); err != nil {
		return 0, err
	}
	ws := workerSettings{natsURL: w.cl.url(), rate: o.limit, notify: o.notifyLimit, shutdownTimeout: o.shutdownTimeout, ackWait: o.ackWait, logLevel: o.workerLogLevel}
	for i := 1; i <= workers; i++ {
		s, err := newWorkerSlot(i, bin, w.dir, w.up.urls[i-1], ws)
		if err != nil {
			return 0, err
		}
		s.onExit = w.workerExited
		w.ws = append(w.ws, s)
	}
	// The first worker creates the streams (3 replicas); the others join.
	for i, s := range w.ws {
		if err := s.start(); err != nil {
			return 0, err
		}
		if i == 0 {
			if err := s.waitReady(ctx, time.Minute); err != nil {
				return 0, err
			}
		}
	}
	for _, s := range w.ws {
		if err := s.waitReady(ctx, time.Minute); err != nil {
			return 0, err
		}
	}

	faults := schedule(o.seed, o.duration, o.faultEvery, workers, nodes)
	logf("soak: seed %d, %s at %.0f jobs/s, %d faults scheduled, directory %s", o.seed, o.duration, o.rate, len(faults), w.dir)
	led := newLedger()
	l := &loader{js: w.js, seed: o.seed, rate: o.rate, led: led}
	in := &injector{w: w}
	start := time.Now()
	busy0, total0 := localhost.MachineCPU()
	fctx, stopFaults := context.WithCancel(ctx)
	injected := make(chan struct{})
	go func() {
		defer close(injected)
		in.run(fctx, start, faults)
	}()
	progress := make(chan struct{})
	go w.progress(progress, start, led, in)
	l.run(ctx, o.duration, rand.New(rand.NewPCG(o.seed, 0x10ad)))
	if rest := time.Until(start.Add(o.duration)); rest > 0 {
		sleepCtx(ctx, rest)
	}
	busy1, total1 := localhost.MachineCPU()
	machineBusy := 0.0
	if total1 > total0 {
		machineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	logf("load done: %d publishes acknowledged, %d publish errors retried; lifting every fault", led.published(), l.errors)
	stopFaults()
	<-injected
	close(progress)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	for _, s := range w.ws {
		if !s.up() {
			if err := s.start(); err != nil {
				return 0, err
			}
		}
	}
	for _, n := range w.cl.nodes {
		if !n.up() {
			if err := w.cl.start(ctx, n); err != nil {
				return 0, err
			}
		}
	}

	left, err := w.quiesce(ctx)
	if err != nil {
		return 0, err
	}
	var results []resultRec
	var dlq []dlqRec
	if err := retry(ctx, 2*time.Minute, "reading PUSH_RESULTS and PUSH_DLQ", func() (err error) {
		if results, err = readResults(ctx, w.js); err != nil {
			return err
		}
		dlq, err = readDLQ(ctx, w.js)
		return err
	}); err != nil {
		return 0, err
	}
	events, counts := in.snapshot()
	sbStats := w.up.sb.Stats()
	ci := checkInput{start: start, jobs: led.snapshot(), results: results, dlq: dlq, calls: w.up.snapshot(),
		events: events, rates: rates, jobsLeft: left, crashWindow: o.crashWindow, stalls: w.up.stallList(), rateTolerance: o.rateTolerance}
	vs := check(ci)
	w.writeTimeline(start, events)
	w.writeCalls(start, ci.calls)
	w.exitMu.Lock()
	fmt.Print(w.report(o, ci, vs, counts, sbStats, l.errors, time.Since(start), machineBusy))
	w.exitMu.Unlock()
	if violations(vs) > 0 {
		return 1, nil
	}
	return 0, nil
}

// progress logs the state every 10 s until done is closed.
func (w *world) progress(done chan struct{}, start time.Time, led *ledger, in *injector) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		up := 0
		for _, s := range w.ws {
			if s.up() {
				up++
			}
		}
		nup := 0
		for _, n := range w.cl.nodes {
			if n.up() {
				nup++
			}
		}
		_, counts := in.snapshot()
		total := 0
		for _, c := range counts {
			total += c
		}
		logf("+%3.0fs: %d published, %d upstream calls, %d faults, workers up %d/%d, NATS nodes up %d/%d",
			time.Since(start).Seconds(), led.published(), len(w.up.snapshot()), total, up, len(w.ws), nup, len(w.cl.nodes))
	}
}

// quiesce waits until PUSH_JOBS stays empty for three checks in a row, or --settle passes;
// it returns what is left.
func (w *world) quiesce(ctx context.Context) (uint64, error) {
	deadline := time.Now().Add(w.o.settle)
	empty, last := 0, uint64(0)
	lastLog := time.Now()
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := w.js.Stream(c, "PUSH_JOBS")
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(c)
		}
		cancel()
		if err == nil {
			last = info.State.Msgs
			if last == 0 {
				empty++
			} else {
				empty = 0
			}
			if empty >= 3 {
				logf("quiescent: PUSH_JOBS empty")
				return 0, nil
			}
		}
		if time.Now().After(deadline) {
			logf("not quiescent after %s: %d messages in PUSH_JOBS", w.o.settle, last)
			return last, nil
		}
		if time.Since(lastLog) > 10*time.Second {
			logf("waiting for quiescence: %d messages in PUSH_JOBS", last)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// retry runs f until it succeeds or d passes: the cluster may still be electing a leader
// after the last node came back.
func retry(ctx context.Context, d time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		logf("%s: %v; retrying", what, err)
		sleepCtx(ctx, time.Second)
	}
}

func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// readStream reads every message a stream holds now.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, each func(jetstream.Msg) error) error {
	c, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := js.Stream(c, stream)
	if err != nil {
		return err
	}
	info, err := s.Info(c)
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(c, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	got := uint64(0)
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		last := false
		n := 0
		for m := range batch.Messages() {
			n++
			got++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if err := each(m); err != nil {
				return err
			}
			last = md.NumPending == 0
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if last {
			return nil
		}
		if n == 0 {
			return fmt.Errorf("reading %s: got %d of %d messages", stream, got, info.State.Msgs)
		}
		if c.Err() != nil {
			return c.Err()
		}
	}
}

func readResults(ctx context.Context, js jetstream.JetStream) ([]resultRec, error) {
	var out []resultRec
	err := readStream(ctx, js, "PUSH_RESULTS", func(m jetstream.Msg) error {
		if strings.HasSuffix(m.Subject(), ".notify_stats") {
			return nil
		}
		var r resultRec
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return fmt.Errorf("result on %s is not JSON: %v", m.Subject(), err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

func readDLQ(ctx context.Context, js jetstream.JetStream) ([]dlqRec, error) {
	var out []dlqRec
	err := readStream(ctx, js, "PUSH_DLQ", func(m jetstream.Msg) error {
		var e jobs.DLQEntry
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			return fmt.Errorf("DLQ entry on %s is not JSON: %v", m.Subject(), err)
		}
		out = append(out, dlqRec{RequestID: e.Result.RequestID, JobSeq: e.Result.JobSeq, Status: string(e.Result.Status)})
		return nil
	})
	return out, err
}

// writeTimeline keeps the faults in the order they happened, in DIR/faults.log.
func (w *world) writeTimeline(start time.Time, events []event) {
	sort.Slice(events, func(i, j int) bool { return events[i].At.Before(events[j].At) })
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "%s  %s\n", rel(start, e.At), e.What)
	}
	_ = os.WriteFile(filepath.Join(w.dir, "faults.log"), []byte(b.String()), 0o644)
}

// writeCalls keeps every upstream push call in DIR/calls.jsonl, for a closer look at a
// violation.
func (w *world) writeCalls(start time.Time, calls []call) {
	f, err := os.Create(filepath.Join(w.dir, "calls.jsonl"))
	if err != nil {
		return
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for _, c := range calls {
		_ = enc.Encode(struct {
			call
			AtS, AnsweredS float64
		}{c, c.At.Sub(start).Seconds(), c.Answered.Sub(start).Seconds()})
	}
}

// report is the summary printed on stdout.
func (w *world) report(o options, in checkInput, vs []invariant, counts [numFaultKinds]int, st sandbox.Stats, pubErrors int, took time.Duration, busy float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pushchaos: seed %d, %s of load at %.0f jobs/s (%s in all), %d NATS nodes (streams R3), %d workers, rates %.0f/s (notify %.0f/s); the machine's %d cores were %.0f %% busy during the load (all programs), load average %s\n",
		o.seed, o.duration, o.rate, took.Round(time.Second), nodes, workers, o.limit, o.notifyLimit, runtime.NumCPU(), 100*busy, loadAvg())
	total := 0
	var fs []string
	for k, c := range counts {
		total += c
		fs = append(fs, fmt.Sprintf("%s %d", faultKind(k), c))
	}
	fmt.Fprintf(&b, "faults injected: %d (%s)\n", total, strings.Join(fs, ", "))
	var msgs, copies, replays, replayOK, invalid, expiring, ambiguous int
	perType := map[string]int{}
	for _, j := range in.jobs {
		msgs += len(j.Seqs)
		perType[string(j.Type)]++
		if j.Copy {
			copies++
		}
		if j.Replay {
			replays++
			if j.ReplayOK {
				replayOK++
			}
		}
		switch j.Kind {
		case kindInvalid:
			invalid++
		case kindExpiring:
			expiring++
		}
		if j.Ambiguous {
			ambiguous++
		}
	}
	var ts []string
	for _, t := range jobTypes {
		ts = append(ts, fmt.Sprintf("%s %d", t, perType[string(t)]))
	}
	fmt.Fprintf(&b, "jobs: %d request ids (%s); %d stream messages; %d deliberate copies under another Nats-Msg-Id; %d same-Nats-Msg-Id republishes, %d deduplicated by JetStream; %d invalid; %d with not_after +1.5s; %d publishes never acknowledged; %d publish errors retried\n",
		len(in.jobs), strings.Join(ts, ", "), msgs, copies, replays, replayOK, invalid, expiring, ambiguous, pubErrors)
	status := map[string]int{}
	dups := 0
	for _, r := range in.results {
		status[r.Status]++
		if r.Duplicate {
			dups++
		}
	}
	fmt.Fprintf(&b, "results: %d (sent %d, partial %d, rejected %d, failed %d, expired %d; duplicate: true %d); DLQ entries %d\n",
		len(in.results), status["sent"], status["partial"], status["rejected"], status["failed"], status["expired"], dups, len(in.dlq))
	var stalled time.Duration
	longest := time.Duration(0)
	for _, s := range in.stalls {
		stalled += s.To.Sub(s.From)
		longest = max(longest, s.To.Sub(s.From))
	}
	fmt.Fprintf(&b, "recorder: %d stalls of %s or more (longest %s, %s in all)\n", len(in.stalls), minStall, longest.Round(time.Millisecond), stalled.Round(time.Millisecond))
	accepted := 0
	for _, c := range in.calls {
		if c.Accepted {
			accepted++
		}
	}
	var limited []string
	for _, c := range sandbox.Classes {
		limited = append(limited, fmt.Sprintf("%s %d", c, st.Classes[c].RateLimited))
	}
	fmt.Fprintf(&b, "upstream: %d push calls, %d accepted, %d answered by injected faults; HTTP 429 from the sandbox's own limit: %s\n",
		len(in.calls), accepted, st.Injected, strings.Join(limited, ", "))
	if len(w.selfExits) == 0 {
		fmt.Fprintln(&b, "workers that exited by themselves (restarted a second later): none")
	} else {
		fmt.Fprintf(&b, "workers that exited by themselves (restarted a second later): %d\n", len(w.selfExits))
		for _, e := range w.selfExits {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	fmt.Fprintln(&b, "invariants:")
	printInvariants(&b, vs, true)
	if n := violations(vs); n > 0 {
		fmt.Fprintf(&b, "pushchaos: %d violations\n", n)
	} else {
		fmt.Fprintln(&b, "pushchaos: every invariant held")
	}
	return b.String()
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
