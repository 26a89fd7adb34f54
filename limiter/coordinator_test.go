package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/internal/natstest"
)

const bucketName = "PUSH_LIMITER"

func startNATS(t *testing.T) *server.Server {
	t.Helper()
	return natstest.Start(t, natstest.JetStream(t, ""))
}

func connect(t *testing.T, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return natstest.Connect(t, s)
}

// replica is one worker replica: its own NATS connection, Limiter and Coordinator.
type replica struct {
	id   string
	nc   *nats.Conn
	l    *Limiter
	c    *Coordinator
	stop context.CancelFunc
	done chan error
}

// startReplica starts a replica whose Limiter records the grants it schedules in rec.
func startReplica(t *testing.T, s *server.Server, id string, rate float64, every time.Duration, rec *recorder) *replica {
	t.Helper()
	nc, js := connect(t, s)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Str("replica", id).Logger()
	l := New(Options{Rate: fixedRate(rate), Logger: log})
	if rec != nil {
		l.onGrant = func(_ string, at time.Time, n int) { rec.addAt(at, n) }
	}
	c, err := NewCoordinator(js, l, CoordinatorOptions{Bucket: bucketName, ReplicaID: id, Every: every, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{id: id, nc: nc, l: l, c: c, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(r.leave)
	return r
}

// leave stops the replica's Coordinator as a graceful shutdown does.
func (r *replica) leave() {
	r.stop()
	if err := <-r.done; err != nil {
		panic(fmt.Sprintf("Run of %s returned %v", r.id, err))
	}
	r.done <- nil // leave may be called again
}

// shares returns the replicas' shares of class, read twice until both reads agree, so
// that the sum is a consistent snapshot.
func shares(class string, rs ...*replica) (sum float64, each []float64) {
	read := func() []float64 {
		s := make([]float64, len(rs))
		for i, r := range rs {
			s[i] = r.l.Share("app", class)
		}
		return s
	}
	for {
		a, b := read(), read()
		same := true
		for i := range a {
			same = same && a[i] == b[i]
		}
		if same {
			for _, x := range a {
				sum += x
			}
			return sum, a
		}
	}
}

// watchSum samples the summed share of class across rs until ctx ends and fails the test
// if it ever exceeds 1. It returns a function that waits for it and returns the samples.
func watchSum(ctx context.Context, t *testing.T, class string, rs ...*replica) func() int {
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if sum, each := shares(class, rs...); sum > 1+1e-9 {
				t.Errorf("shares sum to %v: %v", sum, each)
				return
			}
			n.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	return func() int { wg.Wait(); return int(n.Load()) }
}

// settled reports whether every replica sees n live replicas and their shares of class
// sum to at least 0.99. It makes the replicas know class.
func settled(class string, n int, rs ...*replica) func() bool {
	for _, r := range rs {
		r.l.entry("app", class)
	}
	return func() bool {
		for _, r := range rs {
			if r.c.Replicas() != n {
				return false
			}
		}
		sum, _ := shares(class, rs...)
		return sum >= 0.99
	}
}

// balanced reports whether every replica's share of class is at least least.
func balanced(class string, least float64, rs ...*replica) func() bool {
	return func() bool {
		_, each := shares(class, rs...)
		for _, x := range each {
			if x < least {
				return false
			}
		}
		return true
	}
}

// checkWindow fails if any 1 s window of rec holds more than the bound: 1 % over
// the rate plus the burst of one replica that had the whole rate.
func checkWindow(t *testing.T, rec *recorder, rate float64) {
	t.Helper()
	most, _ := rec.maxWindow(time.Second)
	limit := int(1.01*rate) + smallBurst(rate)
	t.Logf("busiest 1 s window across replicas: %d tokens (limit %d)", most, limit)
	if most > limit {
		t.Errorf("a 1 s window across replicas holds %d tokens, more than %d", most, limit)
	}
}

// TestCoordinatorSharesRate runs 1 to 5 replicas, each with a backlog, and checks that
// together they stay within the rate and use at least 98 % of it, with each replica's share
// about equal and the shares never summing to more than 1, also while replicas join.
func TestCoordinatorSharesRate(t *testing.T) {
	t.Parallel()
	const rate, class = 300.0, "p2p"
	s := startNATS(t)
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	var rs []*replica
	var waits []func()
	var sums []func() int
	defer func() {
		cancel()
		for _, w := range waits {
			w()
		}
	}()
	for n := 1; n <= 5; n++ {
		r := startReplica(t, s, fmt.Sprintf("r%d", n), rate, 500*time.Millisecond, rec)
		rs = append(rs, r)
		sctx, stopSum := context.WithCancel(ctx)
		sums = append(sums, watchSum(sctx, t, class, rs...))
		waits = append(waits, load(ctx, t, r.l, "app", class, 150, 1, nil))
		took := eventually(t, 5*time.Second, fmt.Sprintf("%d replicas settle", n), settled(class, n, rs...))
		took += eventually(t, 5*time.Second, fmt.Sprintf("%d busy replicas split the rate", n), balanced(class, 1/float64(n)-0.01, rs...))
		from := time.Now()
		time.Sleep(1500 * time.Millisecond)
		got := rec.rateOnceDone(from, time.Now())
		_, each := shares(class, rs...)
		t.Logf("%d replicas: settled in %v, shares %.3f, %.1f tokens/s together", n, took.Round(time.Millisecond), each, got)
		if got < 0.98*rate {
			t.Errorf("%d replicas: %.1f tokens/s together, below 98 %% of %.0f", n, got, rate)
		}
		stopSum()
		if samples := sums[len(sums)-1](); samples < 100 {
			t.Errorf("only %d share samples", samples)
		}
	}
	cancel()
	for _, w := range waits {
		w()
	}
	waits = nil
	checkWindow(t, rec, rate)
}

// TestCoordinatorDemand checks that a replica with a backlog gets nearly the whole rate
// while another has none, and that they split it once both have one.
func TestCoordinatorDemand(t *testing.T) {
	t.Parallel()
	const rate, class = 300.0, "ucs"
	s := startNATS(t)
	recA, recB := &recorder{}, &recorder{}
	a := startReplica(t, s, "a", rate, 500*time.Millisecond, recA)
	b := startReplica(t, s, "b", rate, 500*time.Millisecond, recB)
	eventually(t, 5*time.Second, "two replicas settle", settled(class, 2, a, b))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sum := watchSum(ctx, t, class, a, b)
	waitA := load(ctx, t, a.l, "app", class, 150, 1, nil)
	// b knows the class but has no backlog.
	if err := b.l.Wait(ctx, "app", class, 1, nil); err != nil {
		t.Fatal(err)
	}

	took := eventually(t, 5*time.Second, "a busy replica takes over an idle one's share", func() bool {
		return a.l.Share("app", class) >= 1-reserveFraction
	})
	time.Sleep(300 * time.Millisecond)
	from := time.Now()
	time.Sleep(time.Second)
	got := recA.rateOnceDone(from, time.Now())
	t.Logf("alone busy: share %.3f after %v, %.1f tokens/s", a.l.Share("app", class), took.Round(time.Millisecond), got)
	if got < 0.95*rate {
		t.Errorf("the only busy replica ran at %.1f tokens/s, below 95 %% of %.0f", got, rate)
	}

	waitB := load(ctx, t, b.l, "app", class, 150, 1, nil)
	took = eventually(t, 5*time.Second, "both busy replicas get half", func() bool {
		_, each := shares(class, a, b)
		return each[0] > 0.48 && each[1] > 0.48
	})
	time.Sleep(300 * time.Millisecond)
	from = time.Now()
	time.Sleep(time.Second)
	to := time.Now()
	ra, rb := recA.rateOnceDone(from, to), recB.rateOnceDone(from, to)
	t.Logf("both busy: split after %v, %.1f + %.1f tokens/s", took.Round(time.Millisecond), ra, rb)
	if ra+rb < 0.95*rate {
		t.Errorf("together %.1f tokens/s, below 95 %%", ra+rb)
	}
	if ra < 0.4*rate || rb < 0.4*rate {
		t.Errorf("uneven split of a shared backlog: %.1f and %.1f tokens/s", ra, rb)
	}
	cancel()
	waitA()
	waitB()
	sum()
	all := &recorder{grants: append(recA.sorted(), recB.sorted()...)}
	checkWindow(t, all, rate)
}

// TestCoordinatorReplicaLeaves stops one of three busy replicas the graceful way: it gives
// up its share and deletes its key, and the other two take it over once its last calls are
// out of the sliding second, not before.
func TestCoordinatorReplicaLeaves(t *testing.T) {
	t.Parallel()
	const rate, class = 300.0, "p2t"
	s := startNATS(t)
	rec, gone := &recorder{}, &recorder{}
	rs := []*replica{
		startReplica(t, s, "a", rate, 500*time.Millisecond, rec),
		startReplica(t, s, "b", rate, 500*time.Millisecond, rec),
		startReplica(t, s, "c", rate, 500*time.Millisecond, gone),
	}
	eventually(t, 5*time.Second, "three replicas settle", settled(class, 3, rs...))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waits := []func(){
		load(ctx, t, rs[0].l, "app", class, 150, 1, nil),
		load(ctx, t, rs[1].l, "app", class, 150, 1, nil),
		load(ctx, t, rs[2].l, "app", class, 150, 1, nil),
	}
	sum := watchSum(ctx, t, class, rs...)
	eventually(t, 5*time.Second, "three busy replicas split the rate", balanced(class, 1.0/3-0.01, rs...))

	rs[2].leave()
	left := time.Now()
	if got := rs[2].l.Share("app", class); got != 0 {
		t.Errorf("a replica that left keeps share %v", got)
	}
	_, js := connect(t, s)
	kv, err := js.KeyValue(context.Background(), bucketName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), "c"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the key of a replica that left: %v, want ErrKeyNotFound", err)
	}
	// Its calls of the last second are still in the upstream's sliding second: the others
	// must not take its part before they are out of it.
	before, _ := shares(class, rs[0], rs[1])
	for time.Since(left) < 900*time.Millisecond {
		if now, each := shares(class, rs[0], rs[1]); now > before+0.005 {
			t.Fatalf("%v after a replica left the others raised their shares to %.3f (from %.3f together): its last second of calls is not over yet",
				time.Since(left).Round(time.Millisecond), each, before)
		}
		time.Sleep(2 * time.Millisecond)
	}
	eventually(t, 5*time.Second, "the others take over a leaving replica's share", balanced(class, 0.49, rs[0], rs[1]))
	t.Logf("takeover after a graceful leave: %v", time.Since(left).Round(time.Millisecond))
	if n := rs[0].c.Replicas(); n != 2 {
		t.Errorf("%d replicas seen after one of three left", n)
	}
	from := time.Now()
	time.Sleep(time.Second)
	got := rec.rateOnceDone(from, time.Now())
	t.Logf("two replicas after the third left: %.1f tokens/s", got)
	if got < 0.95*rate {
		t.Errorf("after a replica left the others ran at %.1f tokens/s, below 95 %%", got)
	}
	if n := gone.tokens(left, time.Now()); n > 0 {
		t.Errorf("the replica that left got %d tokens after leaving", n)
	}
	cancel()
	for _, w := range waits {
		w()
	}
	sum()
	all := &recorder{grants: append(rec.sorted(), gone.sorted()...)}
	checkWindow(t, all, rate)
}

// TestCoordinatorClaimsWhatItSent: a replica whose share is lowered (a second busy replica
// comes) still has its calls under the old share in the upstream's sliding second. Its
// claim covers them until they are out, so that the other's share and what it sent in the
// last second never sum to more than the rate; before, the newcomer took its half at once
// while the first replica's last second still held the whole rate.
func TestCoordinatorClaimsWhatItSent(t *testing.T) {
	t.Parallel()
	const rate, class = 300.0, "p2p"
	s := startNATS(t)
	rs := startReplicas(t, s, rate, 500*time.Millisecond, "a", "b")
	a, b := rs[0], rs[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waitA := loadAdmitted(ctx, t, a.l, "app", class, 50, 1, nil)
	eventually(t, 10*time.Second, "the only busy replica takes the rate", func() bool { return a.l.Share("app", class) >= 1-reserveFraction })
	time.Sleep(1100 * time.Millisecond) // a full second at the whole rate
	waitB := loadAdmitted(ctx, t, b.l, "app", class, 50, 1, nil)
	ea := a.l.entry("app", class)
	start, worst := time.Now(), 0.0
	for time.Since(start) < 2*time.Second {
		sent := float64(ea.rel.lastSecond(time.Now().UnixNano())) / rate
		worst = max(worst, sent+b.l.Share("app", class))
		time.Sleep(time.Millisecond)
	}
	t.Logf("worst of a's last second plus b's share: %.3f of the rate; shares now %.3f and %.3f", worst, a.l.Share("app", class), b.l.Share("app", class))
	if worst > 1+2*minStep+float64(smallBurst(rate))/rate {
		t.Errorf("b's share and a's last second of calls summed to %.3f of the rate", worst)
	}
	eventually(t, 5*time.Second, "both busy replicas get half", balanced(class, 0.45, a, b))
	cancel()
	waitA()
	waitB()
}

// TestCoordinatorReplicaKilled cuts one of three busy replicas off NATS without any
// cleanup, as kill -9 would: its key stays in the bucket, and the other two notice from its
// missing heartbeats and take over its share within 5 s, at the default interval.
func TestCoordinatorReplicaKilled(t *testing.T) {
	t.Parallel()
	const rate, class = 300.0, "notify"
	s := startNATS(t)
	rec := &recorder{}
	rs := []*replica{
		startReplica(t, s, "a", rate, 0, rec), // default interval
		startReplica(t, s, "b", rate, 0, rec),
		startReplica(t, s, "c", rate, 0, nil),
	}
	eventually(t, 5*time.Second, "three replicas settle", settled(class, 3, rs...))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waits := []func(){
		load(ctx, t, rs[0].l, "app", class, 150, 1, nil),
		load(ctx, t, rs[1].l, "app", class, 150, 1, nil),
	}
	// The killed replica's Limiter is part of the sum: one cut off from NATS gives up
	// its share before the others take it.
	sum := watchSum(ctx, t, class, rs...)
	eventually(t, 5*time.Second, "two busy replicas take the share of an idle one", balanced(class, 0.48, rs[0], rs[1]))

	killed := time.Now()
	rs[2].nc.Close()
	_, js := connect(t, s)
	kv, err := js.KeyValue(context.Background(), bucketName)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the others take over a killed replica's share",
		func() bool { return settled(class, 2, rs[0], rs[1])() && balanced(class, 0.49, rs[0], rs[1])() })
	took := time.Since(killed)
	if _, err := kv.Get(context.Background(), "c"); err != nil {
		t.Errorf("the killed replica's key should still be there (detection must not rely on its TTL): %v", err)
	}
	t.Logf("takeover %v after the kill", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("takeover %v after the kill, more than 5s", took)
	}
	from := time.Now()
	time.Sleep(time.Second)
	got := rec.rateOnceDone(from, time.Now())
	t.Logf("two replicas after the third was killed: %.1f tokens/s", got)
	if got < 0.95*rate {
		t.Errorf("after a replica was killed the others ran at %.1f tokens/s, below 95 %%", got)
	}
	cancel()
	for _, w := range waits {
		w()
	}
	sum()
	checkWindow(t, rec, rate)
}

// TestNewCoordinatorOptions checks option validation and that a Limiter sends nothing
// between NewCoordinator and the first agreement.
func TestNewCoordinatorOptions(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	_, js := connect(t, s)
	l := New(Options{Rate: fixedRate(100), Logger: zerolog.Nop()})
	for _, o := range []CoordinatorOptions{
		{Bucket: "", ReplicaID: "a"},
		{Bucket: bucketName, ReplicaID: ""},
		{Bucket: bucketName, ReplicaID: "a b"},
		{Bucket: bucketName, ReplicaID: "a.*"},
	} {
		if _, err := NewCoordinator(js, l, o); err == nil {
			t.Errorf("NewCoordinator(%+v) accepted", o)
		}
	}
	_ = l.Wait(context.Background(), "app", "p2p", 1, nil) // an entry created while alone
	if _, err := NewCoordinator(js, l, CoordinatorOptions{Bucket: bucketName, ReplicaID: "a"}); err != nil {
		t.Fatal(err)
	}
	for _, class := range []string{"p2p", "ucs"} {
		if got := l.Share("app", class); got != 0 {
			t.Errorf("%s: share %v before the coordinator ran, want 0", class, got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if err := l.Wait(ctx, "app", class, 1, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: Wait before the coordinator ran returned %v", class, err)
		}
		cancel()
	}
	kv, err := js.KeyValue(context.Background(), bucketName)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != keepFor*DefaultCoordinatorEvery || st.History() != 1 {
		t.Errorf("bucket TTL %v history %d", st.TTL(), st.History())
	}
}

// startReplicas starts replicas with the given ids and waits until each sees all of them.
func startReplicas(t *testing.T, s *server.Server, rate float64, every time.Duration, ids ...string) []*replica {
	t.Helper()
	var rs []*replica
	for _, id := range ids {
		rs = append(rs, startReplica(t, s, id, rate, every, nil))
	}
	eventually(t, 10*time.Second, fmt.Sprintf("%d replicas see each other", len(ids)), func() bool {
		for _, r := range rs {
			if r.c.Replicas() != len(ids) {
				return false
			}
		}
		return true
	})
	return rs
}

// TestCoordinatorNewClassCountsAsDemand: a class a replica has just started to use has no
// measured demand yet; it counts as demand, so the replica gets its part at once instead of
// the floor until its first measured heartbeat (which left replicas starting together with
// a backlog running below the rate for up to a second).
func TestCoordinatorNewClassCountsAsDemand(t *testing.T) {
	t.Parallel()
	const rate, class, every = 300.0, "p2t", time.Second
	s := startNATS(t)
	rs := startReplicas(t, s, rate, every, "a", "b")
	a, b := rs[0], rs[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waitA := load(ctx, t, a.l, "app", class, 150, 1, nil)
	eventually(t, 10*time.Second, "the only busy replica takes the rate", func() bool { return a.l.Share("app", class) >= 1-reserveFraction })
	// b starts using the class, with a backlog, between heartbeats.
	waitB := load(ctx, t, b.l, "app", class, 150, 1, nil)
	took := eventually(t, every/2, "the newcomer gets half within half a heartbeat interval", balanced(class, 0.45, a, b))
	t.Logf("split after %v", took.Round(time.Millisecond))
	cancel()
	waitA()
	waitB()
}

// TestCoordinatorThreeStartTogether: three replicas that start using a class together, each
// with a backlog, reach a third each well within a heartbeat interval. A replica whose raise
// was taken short of its claim (the room another replica's claim left) republishes the lower
// claim at once; before, its stale claim held a third of the rate back until the next
// heartbeat.
func TestCoordinatorThreeStartTogether(t *testing.T) {
	t.Parallel()
	const rate, every = 300.0, 2 * time.Second
	s := startNATS(t)
	rs := startReplicas(t, s, rate, every, "a", "b", "c")
	ctx, cancel := context.WithCancel(context.Background())
	var waits []func()
	defer func() {
		cancel()
		for _, w := range waits {
			w()
		}
	}()
	for _, class := range []string{"p2p", "p2t", "ucs"} {
		for _, r := range rs {
			waits = append(waits, load(ctx, t, r.l, "app", class, 100, 1, nil))
		}
		took := eventually(t, every/2, class+": three replicas get a third each within half a heartbeat interval", balanced(class, 0.32, rs...))
		t.Logf("%s: split after %v", class, took.Round(time.Millisecond))
	}
}

// TestCoordinatorIdleGivesUpAtOnce: when a replica's backlog is gone (no caller for a tick,
// none waiting), the replica that still has one gets the rate within about a tick, not after
// the rounds of demand a heartbeat sums up (three intervals). (Its loads do not call Admit,
// so the idle replica has no last second of calls to claim.)
func TestCoordinatorIdleGivesUpAtOnce(t *testing.T) {
	t.Parallel()
	const rate, class, every = 300.0, "ucs", 2 * time.Second
	s := startNATS(t)
	rs := startReplicas(t, s, rate, every, "a", "b")
	a, b := rs[0], rs[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waitA := load(ctx, t, a.l, "app", class, 150, 1, nil)
	bctx, stopB := context.WithCancel(ctx)
	waitB := load(bctx, t, b.l, "app", class, 150, 1, nil)
	eventually(t, 10*time.Second, "both busy replicas get half", balanced(class, 0.48, a, b))
	time.Sleep(every + every/2) // a measured heartbeat with both busy
	stopB()
	waitB()
	took := eventually(t, every*3/4, "the busy replica takes the idle one's share within a heartbeat interval", func() bool {
		return a.l.Share("app", class) >= 1-reserveFraction
	})
	t.Logf("taken over after %v", took.Round(time.Millisecond))
	cancel()
	waitA()
}
