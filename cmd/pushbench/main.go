// Command pushbench is pushworker's benchmark. From the module root:
//
//	go run ./cmd/pushbench            # everything (5–10 minutes on 2 cores)
//	go run ./cmd/pushbench --quick    # a 1–2 minute smoke run with smaller numbers
//
// It builds ./cmd/pushworker and ./cmd/pushsandbox into a temporary directory, and for
// every scenario starts a fresh NATS server with JetStream (pushbench itself, re-executed
// as a process of its own), the sandbox upstream as its own process, and the worker
// processes, all on this machine and sharing its cores with pushbench's publisher. It
// prints a Markdown table of every figure beside its target and the ceiling of this
// machine, measured in the same run:
//
//   - raw: the ceilings — JetStream async publish of 256 B messages into a file stream,
//     durable pull consume with explicit ack, synchronous publish round trips from 64
//     goroutines (the shape of the worker's per-job round trips), and HTTP POST on
//     loopback with a Go client (64 concurrent, keep-alive).
//   - drain: a backlog of --jobs p2p jobs drained by --workers workers with an unthrottled
//     sandbox: jobs/s from the first result to the last (publish → upstream → result →
//     ack), worker CPU time per job and peak RSS (/proc), and the CPU split between the
//     processes.
//   - throttled: a backlog of --precision-seconds of p2p jobs at --precision-rate (1,000/s),
//     one worker: its CPU per job and nats-server's, beside the drain's of the same run (a
//     job waiting for budget should cost no more than a drained one).
//   - latency: p2p jobs published at a steady --latency-rate (2,000/s) for --duration;
//     publish → result receipt p50/p99/p99.9.
//   - precision: three classes (p2p, p2t, ucs) limited to 1,000 tokens/s in the worker and
//     in the sandbox, a backlog of --precision-seconds (30 s) per class, with 1 and with 3
//     worker replicas: achieved/limit, the worst sliding 1 s window at the sandbox and
//     its HTTP 429 count.
//   - memory: a backlog of --backlog (1,000,000) jobs drained by one worker; its RSS at
//     the start, in the first and last quarter, peak and end.
//   - sync (only with --scenarios sync or all): the cost of PUSH_EMBEDDED_SYNC=always. One worker in embedded mode (its own
//     NATS server in the process, not pushbench's) and --sync-jobs p2p jobs published to
//     it at full speed while it drains them, once with the server's default sync (fsync
//     every 2 minutes) and once with always (fsync of every write before its ack): jobs/s
//     from the first to the last result and the worker's CPU time per job (NATS included).
//   - priority (only with --scenarios priority): a backlog of --priority-backlog (100,000)
//     low-priority p2p jobs drained at 1,000/s (worker and sandbox) while high-priority p2p
//     jobs come at --priority-high-rate (50/s): the high jobs' publish → result p50/p99 and
//     the worst sliding 1 s window of the class at the sandbox.
//
// Every per-job CPU figure comes from /proc/<pid>/stat of each process between the first
// and the last result; "other" is the machine's busy time not spent in these processes
// (another program skews the figures: pushbench waits up to --wait-idle for a quiet
// machine and notes it when it did not get one). --worker-bin compares a changed worker
// with the same run (before and after); --worker-env K=V adds worker settings.
//
// --pprof DIR runs the workers with PUSH_PPROF=true and the NATS server with its profiling
// port, and saves CPU profiles of the drain and heap profiles of the memory run to DIR
// (read them with `go tool pprof -top DIR/drain-worker-1.cpu.pprof`). --json prints the
// table as JSON. Every child process is killed when pushbench ends, also on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/pushworker/pushworker/internal/localhost"
)

type options struct {
	scenarios        map[string]bool
	jobs             int
	backlog          int
	syncJobs         int
	duration         time.Duration
	latencyRate      float64
	precisionSeconds int
	precisionRate    float64
	replicas         []int
	workers          int
	concurrency      int
	rawMsgs          int
	rawDuration      time.Duration
	quick            bool
	pprofDir         string
	profileSeconds   int
	jsonOut          bool
	keep             bool
	workerEnv        []string
	waitIdle         time.Duration
	workerBin        string
	priorityBacklog  int
	priorityHighRate float64
}

var allScenarios = []string{"raw", "drain", "throttled", "latency", "precision", "memory", "sync", "priority"}

// defaultScenarios run without --scenarios: sync and priority (two minutes at 1,000/s)
// only on demand (--scenarios sync,priority or all).
var defaultScenarios = allScenarios[:6]

type bench struct {
	o          *options
	tmp        string
	self       string
	workerBin  string
	sandboxBin string
	command    string
	started    time.Time
	machine    machine
	rows       []row
	errors     []string
	notes      []string
	ceil       ceilings
	drainCPU   struct{ worker, nats, sandbox time.Duration } // per job, once the drain ran
}

// ceilings are the raw figures of this machine, once measured.
type ceilings struct {
	publish, consume, syncRT, http float64 // per second
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	if len(os.Args) > 1 && os.Args[1] == natsServerCommand {
		runNATSServer(os.Args[2:])
		return
	}
	o := &options{}
	scen := flag.String("scenarios", strings.Join(defaultScenarios, ","), "comma-separated scenarios to run: "+strings.Join(allScenarios, ", ")+", or all")
	flag.IntVar(&o.jobs, "jobs", 100000, "drain: jobs in the backlog")
	flag.IntVar(&o.backlog, "backlog", 1000000, "memory: jobs in the backlog")
	flag.IntVar(&o.syncJobs, "sync-jobs", 20000, "sync: jobs published and drained per PUSH_EMBEDDED_SYNC setting")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "latency: how long the steady load is offered")
	flag.Float64Var(&o.latencyRate, "latency-rate", 2000, "latency: offered jobs per second")
	flag.IntVar(&o.precisionSeconds, "precision-seconds", 30, "precision: seconds of backlog per class")
	flag.Float64Var(&o.precisionRate, "precision-rate", 1000, "precision: tokens per second of each class (worker and sandbox)")
	replicas := flag.String("replicas", "1,3", "precision: comma-separated worker replica counts")
	flag.IntVar(&o.priorityBacklog, "priority-backlog", 100000, "priority: low-priority p2p jobs in the backlog")
	flag.Float64Var(&o.priorityHighRate, "priority-high-rate", 50, "priority: high-priority p2p jobs offered per second while the backlog drains")
	flag.IntVar(&o.workers, "workers", 1, "drain: worker processes")
	flag.IntVar(&o.concurrency, "concurrency", 0, "PUSH_CONCURRENCY of the workers (0: the worker's default)")
	flag.IntVar(&o.rawMsgs, "raw-msgs", 300000, "raw: messages published and consumed")
	flag.DurationVar(&o.rawDuration, "raw-duration", 3*time.Second, "raw: duration of the sync round trip and HTTP loops")
	flag.BoolVar(&o.quick, "quick", false, "smoke run: jobs 20000, backlog 100000, duration 5s, precision-seconds 5, raw-msgs 50000 (explicit flags win)")
	flag.StringVar(&o.pprofDir, "pprof", "", "save CPU profiles of the drain and heap profiles of the memory run into this directory")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 10, "length of the drain's CPU profile")
	flag.BoolVar(&o.jsonOut, "json", false, "print the results as JSON instead of a table")
	flag.DurationVar(&o.waitIdle, "wait-idle", time.Minute, "before each scenario, wait up to this long for the machine to be less than 15% busy (other programs skew the figures)")
	flag.StringVar(&o.workerBin, "worker-bin", "", "use this pushworker binary instead of building ./cmd/pushworker (to compare a change before and after)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, logs, JetStream data)")
	var wenv listFlag
	flag.Var(&wenv, "worker-env", "extra K=V for the workers' environment (repeatable), e.g. GOGC=200")
	flag.Parse()
	o.workerEnv = wenv

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"jobs": func() { o.jobs = 20000 }, "backlog": func() { o.backlog = 100000 }, "sync-jobs": func() { o.syncJobs = 5000 },
			"duration": func() { o.duration = 5 * time.Second }, "precision-seconds": func() { o.precisionSeconds = 5 },
			"raw-msgs": func() { o.rawMsgs = 50000 }, "raw-duration": func() { o.rawDuration = 2 * time.Second },
			"profile-seconds": func() { o.profileSeconds = 3 }, "priority-backlog": func() { o.priorityBacklog = 20000 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	o.scenarios = map[string]bool{}
	for _, s := range strings.Split(*scen, ",") {
		s = strings.TrimSpace(s)
		if s == "all" {
			for _, a := range allScenarios {
				o.scenarios[a] = true
			}
			continue
		}
		if !contains(allScenarios, s) {
			fmt.Fprintf(os.Stderr, "pushbench: unknown scenario %q (want %s)\n", s, strings.Join(allScenarios, ", "))
			os.Exit(2)
		}
		o.scenarios[s] = true
	}
	for _, s := range strings.Split(*replicas, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "pushbench: bad --replicas %q\n", *replicas)
			os.Exit(2)
		}
		o.replicas = append(o.replicas, n)
	}
	if o.jobs < 1 || o.backlog < 1 || o.workers < 1 || o.latencyRate <= 0 || o.precisionSeconds < 1 {
		fmt.Fprintln(os.Stderr, "pushbench: --jobs, --backlog, --workers, --latency-rate and --precision-seconds must be positive")
		os.Exit(2)
	}

	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		logf("interrupted: stopping (again to kill at once)")
		cancel()
		<-sigs
		killAll()
		os.Exit(130)
	}()
	code := run(ctx, o)
	killAll()
	os.Exit(code)
}

func run(ctx context.Context, o *options) int {
	b := &bench{o: o, started: time.Now(), command: "go run ./cmd/pushbench " + strings.Join(os.Args[1:], " ")}
	b.command = strings.TrimSpace(b.command)
	var err error
	if b.self, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		return 1
	}
	root, err := localhost.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		return 1
	}
	if b.tmp, err = os.MkdirTemp("", "pushbench-"); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		return 1
	}
	if o.keep {
		logf("keeping %s", b.tmp)
	} else {
		defer os.RemoveAll(b.tmp)
	}
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "pushbench:", err)
			return 1
		}
	}
	b.machine = describeMachine(root)
	logf("building ./cmd/pushworker and ./cmd/pushsandbox")
	if b.workerBin, b.sandboxBin, err = build(ctx, root, b.tmp); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		return 1
	}
	if o.workerBin != "" {
		b.workerBin = o.workerBin
		b.command += " (worker: " + o.workerBin + ")"
	}
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"raw", b.raw},
		{"drain", b.drain},
		{"throttled", b.throttled},
		{"latency", b.latency},
		{"precision", b.precision},
		{"memory", b.memory},
		{"sync", b.syncCost},
		{"priority", b.priority},
	}
	for _, s := range steps {
		if !o.scenarios[s.name] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		logf("== %s", s.name)
		if busy := waitIdle(ctx, o.waitIdle); busy > 0.15 {
			note := fmt.Sprintf("%s: the machine was %.0f%% busy before the scenario started: other programs share the cores, figures are pessimistic", s.name, 100*busy)
			b.notes = append(b.notes, note)
			logf("warning: %s", note)
		}
		if err := s.run(ctx); err != nil {
			if errors.Is(err, context.Canceled) {
				b.errors = append(b.errors, s.name+": interrupted")
				break
			}
			b.errors = append(b.errors, s.name+": "+err.Error())
			logf("%s failed: %v", s.name, err)
		}
	}
	if o.jsonOut {
		b.printJSON(os.Stdout)
	} else {
		b.printTable(os.Stdout)
	}
	if len(b.errors) > 0 {
		return 1
	}
	return 0
}

func describeMachine(root string) machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown CPU"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// machineBusy measures the fraction of the machine's CPU that is busy over d.
func machineBusy(d time.Duration) float64 {
	b0, t0 := localhost.MachineCPU()
	time.Sleep(d)
	b1, t1 := localhost.MachineCPU()
	if t1 <= t0 {
		return 0
	}
	return float64(b1-b0) / float64(t1-t0)
}

// waitIdle waits up to d for the machine to be less than 15 % busy over a second, and
// returns the last busy fraction seen.
func waitIdle(ctx context.Context, d time.Duration) float64 {
	deadline := time.Now().Add(d)
	logged := false
	for {
		busy := machineBusy(time.Second)
		if busy <= 0.15 || time.Now().After(deadline) || ctx.Err() != nil {
			return busy
		}
		if !logged {
			logf("waiting up to %s for the machine to be idle (%.0f%% busy)", d, 100*busy)
			logged = true
		}
	}
}
