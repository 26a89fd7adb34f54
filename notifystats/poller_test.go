package notifystats

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/upstream"
)

const interval = 100 * time.Millisecond

func TestTrackPublishesEachChangeOnce(t *testing.T) {
	e := newEnv(t, "100ms", "1m")
	p, _ := e.newPoller("r1", nil)
	e.fake.set(defaultAppID, 1, 101, 102)
	e.track(p, "", "req-1", 101, 102) // "" is the app "default"

	kv := e.kv()
	if _, err := kv.Get(context.Background(), taskKey("default", 101)); err != nil {
		t.Fatalf("Track did not store the task: %v", err)
	}
	e.run(p)
	waitFor(t, 3*time.Second, "first stats of both tasks", func() bool {
		return len(e.statsOf("default", 101)) > 0 && len(e.statsOf("default", 102)) > 0
	})
	checkStats(t, e.statsOf("default", 101)[0], "default", "req-1", 101, 1)
	checkStats(t, e.statsOf("default", 102)[0], "default", "req-1", 102, 1)

	// Tracking again keeps the stored snapshot: nothing is published again.
	e.track(p, "default", "req-1", 101)
	// Unchanged counters are polled but not published again.
	polls := e.fake.pollCount(defaultAppID, 101)
	waitFor(t, 3*time.Second, "five more polls", func() bool { return e.fake.pollCount(defaultAppID, 101) >= polls+5 })
	if n, m := len(e.statsOf("default", 101)), len(e.statsOf("default", 102)); n != 1 || m != 1 {
		t.Fatalf("unchanged counters published again: %d and %d messages", n, m)
	}

	e.fake.set(defaultAppID, 2, 101)
	waitFor(t, 3*time.Second, "the change of task 101", func() bool { return len(e.statsOf("default", 101)) == 2 })
	checkStats(t, e.statsOf("default", 101)[1], "default", "req-1", 101, 2)
	polls = e.fake.pollCount(defaultAppID, 101)
	waitFor(t, 3*time.Second, "five more polls", func() bool { return e.fake.pollCount(defaultAppID, 101) >= polls+5 })
	if n, m := len(e.statsOf("default", 101)), len(e.statsOf("default", 102)); n != 2 || m != 1 {
		t.Fatalf("got %d and %d messages, want 2 and 1", n, m)
	}
	if n := e.rawCount(); n != 3 {
		t.Fatalf("published %d times, want 3 (one per change)", n)
	}
	if n := testutil.ToFloat64(p.metrics.published); n != 3 {
		t.Errorf("pushworker_notify_stats_published_total %v, want 3", n)
	}
	if n, polls := testutil.ToFloat64(p.metrics.polls.WithLabelValues("ok")), e.fake.pollCount(defaultAppID, 101); n < float64(polls-1) || n > float64(polls) {
		t.Errorf("pushworker_notify_stats_polls_total{outcome=\"ok\"} %v after %d polls of the batch", n, polls)
	}
	if n := testutil.ToFloat64(p.metrics.tasks); n != 2 {
		t.Errorf("pushworker_notify_stats_tasks %v, want 2", n)
	}
	if got := e.statsOf("default", unknownTask); len(got) != 0 {
		t.Fatalf("stats of an untracked task were published: %+v", got)
	}
	e.noDuplicates()
}

func TestStopsAfterPollFor(t *testing.T) {
	e := newEnv(t, "100ms", "1s")
	p, _ := e.newPoller("r1", nil)
	e.fake.set(defaultAppID, 1, 201)
	start := time.Now()
	e.track(p, "default", "req-2", 201)
	e.run(p)

	kv := e.kv()
	waitFor(t, 5*time.Second, "the task to leave the bucket", func() bool {
		_, err := kv.Get(context.Background(), taskKey("default", 201))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	if last := e.fake.lastPolled(defaultAppID, 201); last.Before(start.Add(time.Second)) {
		t.Errorf("last poll at %s, want one after PUSH_NOTIFY_STATS_FOR (%s)", last.Sub(start), time.Second)
	}
	polls := e.fake.pollCount(defaultAppID, 201)
	if polls < 5 {
		t.Errorf("polled %d times in 1s at 100ms, want about 10", polls)
	}
	time.Sleep(5 * interval) // nothing may happen: give it the time to
	if n := e.fake.pollCount(defaultAppID, 201); n != polls {
		t.Fatalf("polled %d more times after PUSH_NOTIFY_STATS_FOR", n-polls)
	}
	if n := len(e.statsOf("default", 201)); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

func TestBatchesPerApp(t *testing.T) {
	e := newEnv(t, "100ms", "1m")
	p, _ := e.newPoller("r1", nil)
	def, shop := ids(1000, 120), ids(1000, 30) // the same ids in two apps are two tasks
	e.fake.set(defaultAppID, 1, def...)
	e.fake.set(shopAppID, 3, shop...)
	e.track(p, "default", "req-def", def...)
	e.track(p, "shop", "req-shop", shop...)
	e.run(p)

	waitFor(t, 5*time.Second, "every task polled three times", func() bool {
		for _, id := range def {
			if e.fake.pollCount(defaultAppID, id) < 3 {
				return false
			}
		}
		for _, id := range shop {
			if e.fake.pollCount(shopAppID, id) < 3 {
				return false
			}
		}
		return true
	})
	calls := e.fake.callList()
	for _, c := range calls {
		if len(c.ids) > maxBatch {
			t.Errorf("a call asked for %d ids, want at most %d", len(c.ids), maxBatch)
		}
		seen := map[int64]bool{}
		for _, id := range c.ids {
			if seen[id] {
				t.Errorf("a call asked for task %d twice", id)
			}
			seen[id] = true
		}
		if c.appID == shopAppID && len(c.ids) != len(shop) {
			t.Errorf("shop call asked for %d ids, want its %d tasks in one call", len(c.ids), len(shop))
		}
		if c.appID == defaultAppID && len(c.ids) != 50 && len(c.ids) != 20 {
			t.Errorf("default call asked for %d ids, want batches of 50, 50 and 20", len(c.ids))
		}
	}
	// Each task once per round: no task is more than one poll ahead of another.
	lo, hi := 1<<30, 0
	for _, n := range e.calls.byTask() {
		for _, c := range n {
			lo, hi = min(lo, c), max(hi, c)
		}
	}
	if hi-lo > 1 {
		t.Errorf("polls per task range from %d to %d: some task was polled twice in a round", lo, hi)
	}
	waitFor(t, 3*time.Second, "stats of every task", func() bool { return e.publishedCount() == len(def)+len(shop) })
	checkStats(t, e.statsOf("shop", 1000)[0], "shop", "req-shop", 1000, 3)
	checkStats(t, e.statsOf("default", 1000)[0], "default", "req-def", 1000, 1)
}

func TestTwoReplicasShareThenTakeOver(t *testing.T) {
	e := newEnv(t, "100ms", "1m")
	a, ncA := e.newPoller("replica-a", nil)
	b, _ := e.newPoller("replica-b", nil)
	tasks := ids(500, 40)
	e.fake.set(defaultAppID, 1, tasks...)
	e.track(a, "default", "req-share", tasks...)
	stopA := e.run(a)
	e.run(b)

	waitFor(t, 5*time.Second, "stats of every task", func() bool { return e.publishedCount() == len(tasks) })
	// Steady state: each task is polled by exactly one replica, and both have work.
	e.calls.reset()
	pollsBy := func() map[int64]map[string]int {
		out := map[int64]map[string]int{}
		for k, m := range e.calls.byTask() {
			out[k.task] = m
		}
		return out
	}
	waitFor(t, 5*time.Second, "every task polled five times", func() bool {
		by := pollsBy()
		for _, id := range tasks {
			n := 0
			for _, c := range by[id] {
				n += c
			}
			if n < 5 {
				return false
			}
		}
		return true
	})
	owned := map[string]int{}
	for id, m := range pollsBy() {
		if len(m) != 1 {
			t.Errorf("task %d polled by %d replicas: %v", id, len(m), m)
		}
		for r := range m {
			owned[r]++
		}
	}
	if owned["replica-a"] == 0 || owned["replica-b"] == 0 {
		t.Fatalf("work not shared: %v", owned)
	}
	t.Logf("tasks per replica: %v", owned)

	// kill -9 of replica a: its connection drops, nothing is cleaned up.
	ncA.Close()
	stopA()
	killed := time.Now()
	e.calls.reset()
	waitFor(t, 6*time.Second, "replica b to take over every task", func() bool {
		by := pollsBy()
		for _, id := range tasks {
			if by[id]["replica-b"] == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("take-over after %s", time.Since(killed).Round(10*time.Millisecond))

	// Changes after the take-over are published, each once.
	e.fake.set(defaultAppID, 2, tasks...)
	waitFor(t, 5*time.Second, "the second change of every task", func() bool { return e.publishedCount() == 2*len(tasks) })
	for _, id := range tasks {
		if got := e.statsOf("default", id); len(got) != 2 {
			t.Errorf("task %d: %d messages, want 2", id, len(got))
		}
	}
	e.noDuplicates()
}

func TestRestartContinuesPolling(t *testing.T) {
	e := newEnv(t, "100ms", "1m")
	p1, _ := e.newPoller("r1", nil)
	e.fake.set(defaultAppID, 1, 301, 302)
	e.track(p1, "default", "req-3", 301, 302)
	stop1 := e.run(p1)
	waitFor(t, 3*time.Second, "first stats", func() bool { return e.publishedCount() == 2 })
	stop1()

	p2, _ := e.newPoller("r2", nil)
	e.calls.reset()
	e.run(p2)
	waitFor(t, 3*time.Second, "the new poller to poll the old tasks", func() bool {
		by := e.calls.byTask()
		return by[fakeKey{defaultAppID, 301}]["r2"] >= 3 && by[fakeKey{defaultAppID, 302}]["r2"] >= 3
	})
	if n := e.publishedCount(); n != 2 {
		t.Fatalf("%d messages after the restart without a change, want still 2", n)
	}
	if n := e.rawCount(); n != 2 {
		t.Fatalf("published %d times after the restart without a change, want still 2", n)
	}
	e.fake.set(defaultAppID, 2, 301)
	waitFor(t, 3*time.Second, "the change after the restart", func() bool { return len(e.statsOf("default", 301)) == 2 })
	checkStats(t, e.statsOf("default", 301)[1], "default", "req-3", 301, 2)
	e.noDuplicates()
}

func TestFailedPollRetriesWithoutLeakingSecrets(t *testing.T) {
	e := newEnv(t, "100ms", "1m")
	p, _ := e.newPoller("r1", upstream.NewBreakers(upstream.BreakerSettings{TripAfter: 1000}))
	e.fake.set(defaultAppID, 1, 401)
	// The failing upstream even echoes the token: it must not reach the logs.
	e.fake.fail(503, 0, "overloaded, token "+defaultToken)
	e.track(p, "default", "req-4", 401)
	e.run(p)

	// The fake counts a poll when it answers; the poller counts it once it has read the
	// answer, a moment later: wait for both.
	failed := p.metrics.polls.WithLabelValues("failed")
	waitFor(t, 3*time.Second, "three failed polls", func() bool {
		return e.fake.pollCount(defaultAppID, 401) >= 3 && testutil.ToFloat64(failed) >= 3
	})
	if n := e.publishedCount(); n != 0 {
		t.Fatalf("%d messages from failed polls", n)
	}
	if !strings.Contains(e.logs.String(), "notify stats poll failed") {
		t.Errorf("no warning for the failed polls:\n%s", e.logs.String())
	}
	e.fake.fail(0, 0, "")
	waitFor(t, 3*time.Second, "stats after the upstream recovered", func() bool { return len(e.statsOf("default", 401)) == 1 })
	checkStats(t, e.statsOf("default", 401)[0], "default", "req-4", 401, 1)
	for _, s := range []string{defaultToken, shopToken} {
		if strings.Contains(e.logs.String(), s) {
			t.Fatalf("a secret reached the logs:\n%s", e.logs.String())
		}
	}
}

func TestPausedAppIsNotPolled(t *testing.T) {
	e := newEnv(t, "100ms", "1m")
	p, _ := e.newPoller("r1", upstream.NewBreakers(upstream.BreakerSettings{ProbeEvery: time.Hour}))
	e.fake.fail(0, 10008, "access-token invalid") // a configuration answer pauses the app
	e.track(p, "default", "req-5", 501)
	e.run(p)
	waitFor(t, 3*time.Second, "the first poll", func() bool { return e.fake.pollCount(defaultAppID, 501) == 1 })
	time.Sleep(5 * interval) // nothing may happen: give it the time to
	if n := e.fake.pollCount(defaultAppID, 501); n != 1 {
		t.Fatalf("polled %d times while the app is paused, want 1", n)
	}
	if n := testutil.ToFloat64(p.metrics.polls.WithLabelValues("skipped")); n < 2 {
		t.Errorf("pushworker_notify_stats_polls_total{outcome=\"skipped\"} %v while the app is paused", n)
	}
}

func TestDisabled(t *testing.T) {
	e := newEnv(t, "0", "1m")
	p, _ := e.newPoller("r1", nil)
	e.track(p, "default", "req-6", 601)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	time.Sleep(3 * interval) // nothing may happen: give it the time to
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if calls := e.fake.callList(); len(calls) != 0 {
		t.Fatalf("%d upstream calls with polling off", len(calls))
	}
	if _, err := e.js.KeyValue(context.Background(), broker.NamesFrom(e.cfg).StatsBucket()); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("polling off, yet the bucket exists (err %v)", err)
	}
}
