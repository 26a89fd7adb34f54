package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/internal/localhost"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream/sandbox"
)

// unlimitedRate is the worker's PUSH_RATE_* where a scenario wants no limit (the variables
// must be positive).
const unlimitedRate = 1e9

// benchEnv is the world of one scenario: a fresh NATS server, optionally the sandbox
// upstream, the workers, and pushbench's own connections (one to publish, one to receive
// results).
type benchEnv struct {
	b    *bench
	name string
	dir  string

	nats     *proc
	natsURL  string
	natsProf int // pprof port of the NATS server, 0 if none
	natsMon  int // monitoring port of the NATS server (/varz)

	sandbox    *proc
	sandboxURL string

	wmu     sync.Mutex // guards workers (the sampler reads it)
	workers []*workerProc

	pub  *nats.Conn
	sub  *nats.Conn
	js   jetstream.JetStream
	res  *results
	rsub *nats.Subscription
}

type workerProc struct {
	*proc
	admin string // host:port of /metrics, /readyz and (with --pprof) /debug/pprof
}

// envOptions shape a benchEnv.
type envOptions struct {
	sandbox     bool
	sandboxRate float64 // per MIMC class, 0 = unlimited
}

// newEnv starts NATS (and the sandbox), connects, and creates the pushworker streams.
func newEnv(ctx context.Context, b *bench, name string, eo envOptions) (*benchEnv, error) {
	e := &benchEnv{b: b, name: name, dir: filepath.Join(b.tmp, name)}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	port, err := localhost.FreePort()
	if err != nil {
		return nil, err
	}
	if e.natsMon, err = localhost.FreePort(); err != nil {
		return nil, err
	}
	args := []string{natsServerCommand, "-port", strconv.Itoa(port), "-store", filepath.Join(e.dir, "jetstream"), "-http-port", strconv.Itoa(e.natsMon)}
	if b.o.pprofDir != "" {
		if e.natsProf, err = localhost.FreePort(); err != nil {
			return nil, err
		}
		args = append(args, "-prof-port", strconv.Itoa(e.natsProf))
	}
	lw := newLineWriter()
	if e.nats, err = startProc("nats-server", b.self, args, childEnv(), filepath.Join(e.dir, "nats.log"), lw); err != nil {
		return nil, err
	}
	if e.natsURL, err = firstLine(ctx, e.nats, lw, 20*time.Second); err != nil {
		return nil, err
	}
	if eo.sandbox {
		if err := e.startSandbox(ctx, eo.sandboxRate); err != nil {
			return nil, err
		}
	}
	if err := e.connect(ctx); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// startSandbox starts the sandbox upstream with rate tokens/s per MIMC class (0: none).
func (e *benchEnv) startSandbox(ctx context.Context, rate float64) error {
	r := strconv.FormatFloat(rate, 'f', -1, 64)
	lw := newLineWriter()
	var err error
	e.sandbox, err = startProc("pushsandbox", e.b.sandboxBin, []string{
		"--listen", "127.0.0.1:0", "--rate-p2p", r, "--rate-p2t", r, "--rate-ucs", r,
		"--record", "-1", "--log-format", "json",
	}, childEnv(), filepath.Join(e.dir, "sandbox.log"), lw)
	if err != nil {
		return err
	}
	e.sandboxURL, err = firstLine(ctx, e.sandbox, lw, 20*time.Second)
	return err
}

// connect opens pushbench's connections to e.natsURL, makes the streams and follows the
// results.
func (e *benchEnv) connect(ctx context.Context) error {
	var err error
	if e.pub, err = nats.Connect(e.natsURL, nats.Name("pushbench publisher")); err != nil {
		return err
	}
	if e.sub, err = nats.Connect(e.natsURL, nats.Name("pushbench results")); err != nil {
		return err
	}
	if e.js, err = jetstream.New(e.pub); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := broker.EnsureStreams(sctx, e.js, streamConfig()); err != nil {
		return err
	}
	e.res = newResults()
	if e.rsub, err = e.sub.Subscribe("push.results.>", e.res.handle); err != nil {
		return err
	}
	_ = e.rsub.SetPendingLimits(-1, -1)
	return e.sub.Flush()
}

// streamConfig is the part of the worker's configuration EnsureStreams reads: the
// defaults of contract §7.
func streamConfig() config.Config {
	return config.Config{
		ManageStreams:   true,
		StreamReplicas:  1,
		DuplicateWindow: 2 * time.Minute,
		ResultsMaxAge:   168 * time.Hour,
		DLQMaxAge:       720 * time.Hour,
		SubjectPrefix:   "push",
		StreamPrefix:    "PUSH",
	}
}

// workerSettings are a scenario's worker variables.
type workerSettings struct {
	rate  float64  // PUSH_RATE_P2P, _P2T, _UCS
	extra []string // more K=V
}

// startWorkers starts n worker processes at once and waits until each answers /readyz.
func (e *benchEnv) startWorkers(ctx context.Context, n int, ws workerSettings) error {
	var started []*workerProc
	for i := 0; i < n; i++ {
		port, err := localhost.FreePort()
		if err != nil {
			return err
		}
		e.wmu.Lock()
		id := len(e.workers) + 1
		e.wmu.Unlock()
		r := strconv.FormatFloat(ws.rate, 'f', -1, 64)
		env := childEnv(
			"PUSH_NATS_URL="+e.natsURL,
			"PUSH_MIMC_URL="+e.sandboxURL,
			"PUSH_MIMC_APP_ID="+sandbox.DefaultMIMCAppID,
			"PUSH_MIMC_APP_KEY="+sandbox.DefaultMIMCAppKey,
			"PUSH_MIMC_APP_SECRET="+sandbox.DefaultMIMCAppSecret,
			"PUSH_NOTIFY_URL="+e.sandboxURL,
			"PUSH_NOTIFY_APP_ID="+sandbox.DefaultNotifyAppID,
			"PUSH_NOTIFY_ACCESS_TOKEN="+sandbox.DefaultNotifyToken,
			"PUSH_RATE_P2P="+r, "PUSH_RATE_P2T="+r, "PUSH_RATE_UCS="+r,
			"PUSH_ADMIN_ADDR=127.0.0.1:"+strconv.Itoa(port),
			"PUSH_LOG_LEVEL=warn",
			"PUSH_DATA_DIR="+filepath.Join(e.dir, fmt.Sprintf("worker-%d-data", id)),
			"PUSH_SHUTDOWN_TIMEOUT=5s",
		)
		if e.b.o.concurrency > 0 {
			env = append(env, "PUSH_CONCURRENCY="+strconv.Itoa(e.b.o.concurrency))
		}
		if e.b.o.pprofDir != "" {
			env = append(env, "PUSH_PPROF=true")
		}
		env = append(env, ws.extra...)
		env = append(env, e.b.o.workerEnv...)
		p, err := startProc(fmt.Sprintf("worker-%d", id), e.b.workerBin, nil, env, filepath.Join(e.dir, fmt.Sprintf("worker-%d.log", id)), nil)
		if err != nil {
			return err
		}
		w := &workerProc{proc: p, admin: "127.0.0.1:" + strconv.Itoa(port)}
		e.wmu.Lock()
		e.workers = append(e.workers, w)
		e.wmu.Unlock()
		started = append(started, w)
	}
	for _, w := range started {
		if err := waitReady(ctx, w, 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func waitReady(ctx context.Context, w *workerProc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		if w.exited() {
			return w.exitError()
		}
		resp, err := c.Get("http://" + w.admin + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; last lines of %s:\n%s", w.name, timeout, w.logPath, w.tail(15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkAlive reports a child that died.
func (e *benchEnv) checkAlive() error {
	for _, w := range e.workerList() {
		if w.exited() {
			return w.exitError()
		}
	}
	for _, p := range []*proc{e.nats, e.sandbox} {
		if p != nil && p.exited() {
			return p.exitError()
		}
	}
	return nil
}

// stopWorkers stops the workers gracefully.
func (e *benchEnv) stopWorkers() {
	var wg sync.WaitGroup
	for _, w := range e.workerList() {
		wg.Add(1)
		go func() { defer wg.Done(); w.stop(10 * time.Second) }()
	}
	wg.Wait()
	e.wmu.Lock()
	e.workers = nil
	e.wmu.Unlock()
}

func (e *benchEnv) workerList() []*workerProc {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	return append([]*workerProc(nil), e.workers...)
}

// close stops everything of the environment and deletes its files (unless --keep).
func (e *benchEnv) close() {
	e.saveMetrics()
	e.stopWorkers()
	if e.rsub != nil {
		_ = e.rsub.Unsubscribe()
	}
	if e.pub != nil {
		e.pub.Close()
	}
	if e.sub != nil {
		e.sub.Close()
	}
	e.sandbox.stop(5 * time.Second)
	e.nats.stop(10 * time.Second)
	if !e.b.o.keep {
		_ = os.RemoveAll(e.dir)
	}
}

// sandboxStats reads GET /_sandbox/stats.
func (e *benchEnv) sandboxStats(ctx context.Context) (sandbox.Stats, error) {
	var st sandbox.Stats
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.sandboxURL+"/_sandbox/stats", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /_sandbox/stats: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// procs lists the processes to sample, by name ("pushbench" is this process).
func (e *benchEnv) procs() map[string]int {
	m := map[string]int{"pushbench": os.Getpid()}
	if e.nats != nil {
		m["nats"] = e.nats.pid()
	}
	if e.sandbox != nil {
		m["sandbox"] = e.sandbox.pid()
	}
	for _, w := range e.workerList() {
		m[w.name] = w.pid()
	}
	return m
}

// results counts the results of the jobs of one phase: their request ids are
// "<run>-<index>". It runs on the results connection's subscription goroutine.
type results struct {
	mu     sync.Mutex
	base   time.Time
	run    string // request id prefix, with the trailing "-"
	want   int
	recv   []int64 // receipt time of each job's first result, ns since base; 0: none yet
	count  int
	dups   int
	other  int
	status map[string]int
	bad    []string // a few results that were not "sent"
	done   chan struct{}
	// workerTimes, when set, receives completed_at - enqueued_at of each job, µs.
	workerTimes []int32
}

func newResults() *results { return &results{base: time.Now(), done: make(chan struct{})} }

// expect starts a phase: n jobs whose request ids start with run+"-".
func (r *results) expect(run string, n int, workerTimes bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.run, r.want = run+"-", n
	r.recv = make([]int64, n)
	r.count, r.dups, r.other = 0, 0, 0
	r.status = map[string]int{}
	r.bad = nil
	r.done = make(chan struct{})
	r.workerTimes = nil
	if workerTimes {
		r.workerTimes = make([]int32, n)
	}
}

func (r *results) now() int64 { return int64(time.Since(r.base)) }

func (r *results) handle(m *nats.Msg) {
	at := r.now()
	id := m.Header.Get(jobs.HeaderRequestID)
	status := m.Header.Get(jobs.HeaderStatus)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.run == "" || !strings.HasPrefix(id, r.run) {
		r.other++
		return
	}
	i, err := strconv.Atoi(id[len(r.run):])
	if err != nil || i < 0 || i >= r.want {
		r.other++
		return
	}
	if r.recv[i] != 0 {
		r.dups++
		return
	}
	r.recv[i] = at
	r.count++
	r.status[status]++
	if status != string(jobs.StatusSent) && len(r.bad) < 5 {
		r.bad = append(r.bad, string(m.Data))
	}
	if r.workerTimes != nil {
		var res struct {
			EnqueuedAt  time.Time `json:"enqueued_at"`
			CompletedAt time.Time `json:"completed_at"`
		}
		if json.Unmarshal(m.Data, &res) == nil {
			r.workerTimes[i] = int32(res.CompletedAt.Sub(res.EnqueuedAt) / time.Microsecond)
		}
	}
	if r.count == r.want {
		close(r.done)
	}
}

func (r *results) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// wait waits until every job of the phase has its result. It gives up when no result came
// for stall, or a child died.
func (e *benchEnv) wait(ctx context.Context, what string, stall time.Duration) error {
	r := e.res
	r.mu.Lock()
	done, want := r.done, r.want
	r.mu.Unlock()
	last, lastChange, lastLog := -1, time.Now(), time.Now()
	logCount := 0
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		c := r.received()
		now := time.Now()
		if c != last {
			last, lastChange = c, now
		} else if now.Sub(lastChange) > stall {
			return fmt.Errorf("%s: no result for %s, %d of %d received", what, stall, c, want)
		}
		if err := e.checkAlive(); err != nil {
			return err
		}
		if now.Sub(lastLog) >= 5*time.Second {
			logf("%s: %d/%d results (%.0f/s)", what, c, want, float64(c-logCount)/now.Sub(lastLog).Seconds())
			lastLog, logCount = now, c
		}
	}
}

// sample is one reading of the processes and the machine.
type sample struct {
	at      time.Duration // since the sampler started
	results int
	procs   map[string]procStat
	busy    uint64 // machine CPU ticks busy
	total   uint64 // machine CPU ticks
}

// sampler reads /proc every interval until stopped.
type sampler struct {
	stop    chan struct{}
	done    chan struct{}
	samples []sample
}

func (e *benchEnv) startSampler(every time.Duration) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	take := func() {
		sm := sample{at: time.Since(start), results: e.res.received(), procs: map[string]procStat{}}
		sm.busy, sm.total = localhost.MachineCPU()
		for name, pid := range e.procs() {
			if st, err := readProcStat(pid); err == nil {
				sm.procs[name] = st
			}
		}
		s.samples = append(s.samples, sm)
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		take()
		for {
			select {
			case <-s.stop:
				take()
				return
			case <-t.C:
				take()
			}
		}
	}()
	return s
}

// finish takes a last sample and returns them all.
func (s *sampler) finish() []sample {
	close(s.stop)
	<-s.done
	return s.samples
}

// profileCPU fetches a CPU profile of every worker (and the NATS server) for seconds
// into --pprof DIR, in the background. The returned function waits for it.
func (e *benchEnv) profileCPU(tag string, seconds int) func() {
	if e.b.o.pprofDir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	get := func(url, file string) {
		defer wg.Done()
		c := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			logf("pprof %s: %v", file, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			logf("pprof %s: %s", file, resp.Status)
			return
		}
		f, err := os.Create(filepath.Join(e.b.o.pprofDir, file))
		if err != nil {
			logf("pprof %s: %v", file, err)
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}
	q := "/debug/pprof/profile?seconds=" + strconv.Itoa(seconds)
	for _, w := range e.workerList() {
		wg.Add(1)
		go get("http://"+w.admin+q, fmt.Sprintf("%s-%s.cpu.pprof", tag, w.name))
	}
	if e.natsProf != 0 {
		wg.Add(1)
		go get("http://127.0.0.1:"+strconv.Itoa(e.natsProf)+q, tag+"-nats.cpu.pprof")
	}
	return wg.Wait
}

// profileHeap saves a heap profile of every worker into --pprof DIR.
func (e *benchEnv) profileHeap(tag string) {
	if e.b.o.pprofDir == "" {
		return
	}
	for _, w := range e.workerList() {
		resp, err := http.Get("http://" + w.admin + "/debug/pprof/heap")
		if err != nil {
			logf("pprof heap: %v", err)
			continue
		}
		f, err := os.Create(filepath.Join(e.b.o.pprofDir, fmt.Sprintf("%s-%s.heap.pprof", tag, w.name)))
		if err == nil {
			_, _ = io.Copy(f, resp.Body)
			f.Close()
		}
		resp.Body.Close()
	}
}

// saveMetrics keeps each worker's /metrics in the scenario's directory (see --keep).
func (e *benchEnv) saveMetrics() {
	c := &http.Client{Timeout: 2 * time.Second}
	for _, w := range e.workerList() {
		if w.exited() {
			continue
		}
		resp, err := c.Get("http://" + w.admin + "/metrics")
		if err != nil {
			continue
		}
		if f, err := os.Create(filepath.Join(e.dir, w.name+".metrics")); err == nil {
			_, _ = io.Copy(f, resp.Body)
			f.Close()
		}
		resp.Body.Close()
	}
}

// natsCounts are the NATS server's message counters (/varz).
type natsCounts struct {
	InMsgs  int64 `json:"in_msgs"`
	OutMsgs int64 `json:"out_msgs"`
}

func (e *benchEnv) varz() (natsCounts, error) {
	var c natsCounts
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://127.0.0.1:" + strconv.Itoa(e.natsMon) + "/varz")
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	return c, json.NewDecoder(resp.Body).Decode(&c)
}
