package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// faultKind is one kind of fault the soak injects.
type faultKind int

const (
	faultWorkerKill faultKind = iota // kill -9 of a worker, restarted
	faultWorkerTerm                  // SIGTERM of a worker, restarted
	faultNodeKill                    // kill -9 of a NATS node, restarted
	fault5xx                         // a burst of upstream 5xx answers (an outage or the next N calls of an endpoint)
	faultLatency                     // every upstream answer delayed for a while
	fault429                         // the next N calls of a rate class answered 429
	faultPause                       // an answer that says the app's configuration is wrong, until it is lifted
	numFaultKinds
)

var faultNames = [numFaultKinds]string{
	"worker kill -9", "worker SIGTERM", "NATS node kill -9", "upstream 5xx burst", "upstream latency spike", "upstream 429 burst", "configuration pause",
}

func (k faultKind) String() string { return faultNames[k] }

// fault is one scheduled fault with its parameters, all drawn from the seed.
type fault struct {
	At      time.Duration // after the load started
	Kind    faultKind
	Target  int           // worker slot or node index (0-based)
	For     time.Duration // how long the fault lasts (down time, latency, outage, pause)
	N       int           // calls answered by a FailNext rule
	Status  int           // HTTP status of a FailNext rule
	Path    string        // path prefix of a FailNext rule
	Latency time.Duration // latency spike
	Outage  bool          // a 5xx burst as an outage rather than a FailNext rule
}

// pushPaths are the endpoints the soak's jobs call.
var pushPaths = []string{
	"/api/push/p2p/", "/api/push/p2p/more", "/api/push/p2t/", "/api/push/p2t/more",
	"/api/push/ucs/singleMsgPush", "/api/push/ucs/multiMsgPush", "/api/push/ucs/multiTopicPush", "/push/notify",
}

// Configuration pauses: the notify app's token refused (code 10008), or every MIMC push
// call answered HTTP 401.
const (
	pauseNotifyPath = "/push/notify"
	pauseMIMCPath   = "/api/push/"
	pauseNotifyBody = `{"code":10008,"message":"access-token is invalid (chaos)","data":null}`
	pauseMIMCBody   = `{"code":401,"message":"unauthorized (chaos)","data":null}`
	rateLimitBody   = `{"code":429,"message":"rate limit exceeded (chaos)","data":null}`
)

// schedule draws the faults of a run: one every `every` on average, the kinds taken in
// turns of a shuffled order so that each kind comes up as often as the others.
func schedule(seed uint64, d, every time.Duration, workers, nodes int) []fault {
	rng := rand.New(rand.NewPCG(seed, 0xfa017))
	var out []fault
	var order []faultKind
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	at := between(every/2, every)
	for at < d {
		if len(order) == 0 {
			for k := range numFaultKinds {
				order = append(order, k)
			}
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		f := fault{At: at, Kind: order[0]}
		order = order[1:]
		switch f.Kind {
		case faultWorkerKill, faultWorkerTerm:
			f.Target = rng.IntN(workers)
			f.For = between(500*time.Millisecond, 3*time.Second)
		case faultNodeKill:
			f.Target = rng.IntN(nodes)
			f.For = between(2*time.Second, 8*time.Second)
		case fault5xx:
			f.Outage = rng.IntN(2) == 0
			f.For = between(time.Second, 4*time.Second)
			f.N = 20 + rng.IntN(81)
			f.Status = []int{500, 502, 503}[rng.IntN(3)]
			f.Path = pushPaths[rng.IntN(len(pushPaths))]
		case faultLatency:
			f.Latency = between(200*time.Millisecond, 2*time.Second)
			f.For = between(3*time.Second, 8*time.Second)
		case fault429:
			f.N = 10 + rng.IntN(51)
			f.Path = pushPaths[rng.IntN(len(pushPaths))]
		case faultPause:
			f.Path = pauseMIMCPath
			if rng.IntN(2) == 0 {
				f.Path = pauseNotifyPath
			}
			f.For = between(4*time.Second, 10*time.Second)
		}
		out = append(out, f)
		at += between(every/2, every*3/2)
	}
	return out
}

// event is something the soak did, for the timeline and the checks.
type event struct {
	At     time.Time
	Kind   faultKind
	Slot   int    // worker slot (1-based) or node (1-based)
	What   string // what happened
	Code   int    // SIGTERM: the exit code
	InTime bool   // SIGTERM: exited within the grace
}

// injector carries out a schedule against the world.
type injector struct {
	w      *world
	mu     sync.Mutex
	events []event
	counts [numFaultKinds]int
	wg     sync.WaitGroup

	nodeMu     sync.Mutex // one NATS node down at a time
	latencyGen atomic.Int64
	outages    atomic.Int64
	pausePaths sync.Map
	rulePaths  sync.Map
}

func (in *injector) record(e event) {
	in.mu.Lock()
	in.events = append(in.events, e)
	in.mu.Unlock()
	logf("fault: %s", e.What)
}

// run injects the schedule until it is done or ctx ends; then it lifts every fault and
// waits until every process it stopped runs again.
func (in *injector) run(ctx context.Context, start time.Time, faults []fault) {
	for _, f := range faults {
		select {
		case <-time.After(time.Until(start.Add(f.At))):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		in.wg.Add(1)
		go func() {
			defer in.wg.Done()
			in.inject(ctx, f)
		}()
	}
	<-ctx.Done()
	in.wg.Wait()
	in.liftUpstream()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

func (in *injector) inject(ctx context.Context, f fault) {
	w := in.w
	sb := w.up.sb
	count := func() {
		in.mu.Lock()
		in.counts[f.Kind]++
		in.mu.Unlock()
	}
	switch f.Kind {
	case faultWorkerKill, faultWorkerTerm:
		s := w.pickWorker(f.Target)
		if s == nil {
			logf("fault skipped: %s (no worker up)", f.Kind)
			return
		}
		p := s.proc()
		s.expect()
		count()
		if f.Kind == faultWorkerKill {
			at := time.Now()
			p.kill()
			in.record(event{At: at, Kind: f.Kind, Slot: s.id, What: fmt.Sprintf("%s kill -9 (down %s)", s.name(), f.For)})
		} else {
			at := time.Now()
			code, inTime := p.term(w.o.shutdownTimeout + 5*time.Second)
			in.record(event{At: at, Kind: f.Kind, Slot: s.id, Code: code, InTime: inTime,
				What: fmt.Sprintf("%s SIGTERM: exit %d after %s (down %s)", s.name(), code, time.Since(at).Round(time.Millisecond), f.For)})
		}
		sleepCtx(ctx, f.For)
		if err := s.start(); err != nil {
			logf("restarting %s: %v", s.name(), err)
		}
		w.releaseWorker(s)
	case faultNodeKill:
		in.nodeMu.Lock()
		defer in.nodeMu.Unlock()
		if ctx.Err() != nil {
			return
		}
		n := w.cl.nodes[f.Target]
		count()
		at := time.Now()
		n.kill()
		in.record(event{At: at, Kind: f.Kind, Slot: f.Target + 1, What: fmt.Sprintf("NATS %s kill -9 (down %s)", n.name, f.For)})
		sleepCtx(ctx, f.For)
		if err := w.cl.start(context.Background(), n); err != nil {
			logf("restarting NATS %s: %v", n.name, err)
			return
		}
		// R3 survives one node down: another may go down only once this one is current
		// again. (A 10-minute run that waited 5 s instead lost an acknowledged job when the
		// next kill came while this node was still catching up.)
		deadline := time.Now().Add(2 * time.Minute)
		for !n.current() && time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
		}
		if !n.current() {
			logf("NATS %s not current 2 minutes after its restart", n.name)
		}
	case fault5xx:
		count()
		if f.Outage {
			in.outages.Add(1)
			sb.SetOutage(true)
			in.record(event{At: time.Now(), Kind: f.Kind, What: fmt.Sprintf("upstream outage (HTTP 503) for %s", f.For)})
			sleepCtx(ctx, f.For)
			if in.outages.Add(-1) == 0 {
				sb.SetOutage(false)
			}
			return
		}
		in.rulePaths.Store(f.Path, true)
		sb.FailNext(f.Path, f.N, f.Status, "")
		in.record(event{At: time.Now(), Kind: f.Kind, What: fmt.Sprintf("next %d calls of %s answer HTTP %d", f.N, f.Path, f.Status)})
	case faultLatency:
		count()
		gen := in.latencyGen.Add(1)
		sb.SetLatency(f.Latency)
		in.record(event{At: time.Now(), Kind: f.Kind, What: fmt.Sprintf("upstream latency %s for %s", f.Latency, f.For)})
		sleepCtx(ctx, f.For)
		if in.latencyGen.Load() == gen {
			sb.SetLatency(0)
		}
	case fault429:
		count()
		in.rulePaths.Store(f.Path, true)
		sb.FailNext(f.Path, f.N, http.StatusTooManyRequests, rateLimitBody)
		in.record(event{At: time.Now(), Kind: f.Kind, What: fmt.Sprintf("next %d calls of %s answer HTTP 429", f.N, f.Path)})
	case faultPause:
		if _, busy := in.pausePaths.LoadOrStore(f.Path, true); busy {
			logf("fault skipped: %s of %s (already paused)", f.Kind, f.Path)
			return
		}
		defer in.pausePaths.Delete(f.Path)
		count()
		status, body, what := http.StatusOK, pauseNotifyBody, "notify answers code 10008 (token invalid)"
		if f.Path == pauseMIMCPath {
			status, body, what = http.StatusUnauthorized, pauseMIMCBody, "MIMC push answers HTTP 401"
		}
		sb.FailNext(f.Path, 1<<30, status, body)
		in.record(event{At: time.Now(), Kind: f.Kind, What: fmt.Sprintf("configuration pause: %s for %s", what, f.For)})
		sleepCtx(ctx, f.For)
		sb.FailNext(f.Path, 0, 0, "")
		in.record(event{At: time.Now(), Kind: f.Kind, What: "configuration pause lifted: " + f.Path})
	}
}

// liftUpstream ends every upstream fault.
func (in *injector) liftUpstream() {
	sb := in.w.up.sb
	sb.SetLatency(0)
	sb.SetOutage(false)
	for _, p := range append(pushPaths, pauseMIMCPath) {
		sb.FailNext(p, 0, 0, "")
	}
}

func (in *injector) snapshot() ([]event, [numFaultKinds]int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]event(nil), in.events...), in.counts
}
