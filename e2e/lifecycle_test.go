package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/upstream/sandbox"
)

// loadJobs publishes n p2p jobs whose request ids (and messages) are prefix-000…
func loadJobs(t testing.TB, js jetstream.JetStream, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	data := make([][]byte, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%04d", prefix, i)
		data[i] = p2pJob(ids[i])
	}
	publishMany(t, js, "push.jobs.p2p", data)
	return ids
}

// tally is what a load ended with.
type tally struct {
	results    map[string][]result // by request id
	calls      map[string]int      // upstream calls by request id
	missing    []string            // ids without a result
	upstreamDu int                 // ids the upstream saw more than once
	extra      int                 // results beyond the first per id
	dupFlagged int                 // results marked duplicate
}

func (ta tally) String() string {
	return fmt.Sprintf("%d ids without a result, %d ids sent upstream more than once, %d extra results, %d results marked duplicate",
		len(ta.missing), ta.upstreamDu, ta.extra, ta.dupFlagged)
}

// tallyLoad matches results (read from the stream) and upstream calls to ids.
func tallyLoad(t testing.TB, rs []result, sb *sandbox.Server, ids []string) tally {
	ta := tally{results: map[string][]result{}, calls: callsByID(sb, p2pPath)}
	for _, r := range rs {
		ta.results[r.RequestID] = append(ta.results[r.RequestID], r)
		if r.Duplicate {
			ta.dupFlagged++
		}
	}
	for _, id := range ids {
		n := len(ta.results[id])
		if n == 0 {
			ta.missing = append(ta.missing, id)
		} else {
			ta.extra += n - 1
		}
		if ta.calls[id] > 1 {
			ta.upstreamDu++
		}
	}
	return ta
}

// waitAllResults polls the results stream until every id has a result.
func waitAllResults(t testing.TB, js jetstream.JetStream, sb *sandbox.Server, ids []string, d time.Duration) tally {
	t.Helper()
	var ta tally
	var lastErr error
	deadline := time.Now().Add(d)
	for {
		msgs, err := snapshotStream(js, "PUSH_RESULTS")
		if err == nil {
			ta = tallyLoad(t, decodeResults(t, msgs), sb, ids)
			if len(ta.missing) == 0 {
				return ta
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			logJobsState(t, js, sb)
			t.Fatalf("after %v: %v (last read error: %v); first missing: %v", d, ta, lastErr, first(ta.missing, 5))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// checkExactlyOnce checks that every id got exactly one non-duplicate result, all sent,
// and reached the upstream maxUpstream times at most.
func checkExactlyOnce(t testing.TB, ta tally, ids []string, maxUpstream int) {
	t.Helper()
	for _, id := range ids {
		originals := 0
		for _, r := range ta.results[id] {
			if r.Status != "sent" {
				t.Fatalf("%s: %s", id, r)
			}
			if !r.Duplicate {
				originals++
			}
		}
		if originals != 1 {
			t.Fatalf("%s has %d non-duplicate results, want 1: %v", id, originals, ta.results[id])
		}
		if c := ta.calls[id]; c < 1 || c > maxUpstream {
			t.Fatalf("the upstream saw %s %d times, want 1..%d", id, c, maxUpstream)
		}
	}
}

// TestSIGTERMUnderLoad: SIGTERM with calls in flight exits 0 within PUSH_SHUTDOWN_TIMEOUT;
// after a restart every job has exactly one result and reached the upstream once.
func TestSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"PUSH_CONCURRENCY": "8", "PUSH_SHUTDOWN_TIMEOUT": "10s"})
	e.sb.SetLatency(50 * time.Millisecond)
	w := e.start()
	const n = 200
	ids := loadJobs(t, e.js, "term", n)
	eventually(t, 30*time.Second, "40 upstream calls", func() bool { return e.sb.Stats().Requests >= 40 })
	stopAt := time.Now()
	w.signal(syscall.SIGTERM)
	if !w.waitExit(12 * time.Second) {
		t.Fatalf("no exit within 12s of SIGTERM (PUSH_SHUTDOWN_TIMEOUT=10s)")
	}
	took := time.Since(stopAt)
	if code := w.exitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if took > 11*time.Second {
		t.Fatalf("exit %v after SIGTERM, PUSH_SHUTDOWN_TIMEOUT is 10s", took)
	}
	callsAtStop := e.sb.Stats().Requests
	if callsAtStop >= n {
		t.Fatalf("all %d jobs were sent before the worker stopped: the test did not stop it under load", n)
	}
	t.Logf("exit 0 %v after SIGTERM with %d of %d jobs sent", took.Round(time.Millisecond), callsAtStop, n)

	restartAt := time.Now()
	w2 := e.start()
	ta := waitAllResults(t, e.js, e.sb, ids, 90*time.Second)
	t.Logf("restart drained the rest in %v: %v", time.Since(restartAt).Round(time.Millisecond), ta)
	checkExactlyOnce(t, ta, ids, 1)
	if ta.extra != 0 {
		t.Fatalf("%d results beyond one per job", ta.extra)
	}
	w2.stop(15 * time.Second)
	for _, p := range []*workerProc{w, w2} {
		if strings.Contains(p.output(), "panic:") {
			t.Fatalf("%s panicked", p.name)
		}
	}
}

// TestKill9UnderLoad: a worker killed with SIGKILL mid-drain loses nothing; the upstream
// sees a job twice only for calls in flight at the kill (at most PUSH_CONCURRENCY).
func TestKill9UnderLoad(t *testing.T) {
	t.Parallel()
	const concurrency = 8
	e := newEnv(t, map[string]string{"PUSH_CONCURRENCY": fmt.Sprint(concurrency), "PUSH_ACK_WAIT": "3s"})
	e.sb.SetLatency(50 * time.Millisecond)
	w := e.start()
	const n = 200
	ids := loadJobs(t, e.js, "kill", n)
	eventually(t, 30*time.Second, "40 upstream calls", func() bool { return e.sb.Stats().Requests >= 40 })
	w.kill()
	callsAtKill := e.sb.Stats().Requests
	if callsAtKill >= n {
		t.Fatalf("all %d jobs were sent before the kill: the test did not kill under load", n)
	}
	restartAt := time.Now()
	e.start()
	ta := waitAllResults(t, e.js, e.sb, ids, 120*time.Second)
	accepted := e.sb.Stats().Classes["p2p"].Calls
	t.Logf("killed after %d upstream calls; restart drained the rest in %v: %v; the upstream accepted %d calls for %d jobs (%d accepted twice)",
		callsAtKill, time.Since(restartAt).Round(time.Millisecond), ta, accepted, n, accepted-n)
	if accepted < n {
		t.Fatalf("the upstream accepted %d calls for %d jobs", accepted, n)
	}
	for _, id := range ids {
		for _, r := range ta.results[id] {
			if r.Status != "sent" {
				t.Fatalf("%s: %s", id, r)
			}
		}
	}
	if ta.upstreamDu > concurrency {
		t.Fatalf("%d jobs reached the upstream twice, more than PUSH_CONCURRENCY=%d in flight at the kill", ta.upstreamDu, concurrency)
	}
	// Results carry Nats-Msg-Id per job (README), so the stream holds one per job.
	if ta.extra != 0 {
		t.Fatalf("%d results beyond one per job", ta.extra)
	}
}

// TestNATSRestartUnderLoad: the NATS server (single node) stops mid-drain and comes back
// on the same port and store; the worker stays up and every job gets exactly one result.
func TestNATSRestartUnderLoad(t *testing.T) {
	t.Parallel()
	natsRestartScenario(t, 200, map[string]string{"PUSH_CONCURRENCY": "8"}, 50*time.Millisecond)
}

// TestJobsAfterNATSRestart: jobs published a while after a NATS restart are delivered too
// (the worker's own state in NATS survives or is rebuilt).
func TestJobsAfterNATSRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	w := e.start()
	res := e.results()
	e.publish("push.jobs.p2p", p2pJob("before-restart"))
	res.waitResult("before-restart", 15*time.Second)
	e.nats.stop()
	eventually(t, 15*time.Second, "/readyz 503 while NATS is down", func() bool { code, _, _ := w.get("/readyz"); return code == 503 })
	e.nats.start()
	eventually(t, 30*time.Second, "/readyz 200 after the restart", func() bool { code, _, _ := w.get("/readyz"); return code == 200 })
	time.Sleep(5 * time.Second) // jobs come a while after the restart, not at once
	for i := range 3 {
		e.publish("push.jobs.p2p", p2pJob(fmt.Sprint("after-restart-", i)))
	}
	msgs := func() []result {
		all, err := snapshotStream(e.js, "PUSH_RESULTS")
		if err != nil {
			return nil
		}
		return decodeResults(t, all)
	}
	for i := range 3 {
		id := fmt.Sprint("after-restart-", i)
		eventually(t, 20*time.Second, "a result of "+id, func() bool {
			for _, r := range msgs() {
				if r.RequestID == id {
					return r.Status == "sent"
				}
			}
			return false
		})
	}
}

// natsRestartScenario stops the single NATS node after a fifth of n jobs reached the
// upstream, starts it again on the same port and store, and checks that every job got
// exactly one result and reached the upstream once (the worker did not die, §6).
func natsRestartScenario(t *testing.T, n int, vars map[string]string, latency time.Duration) {
	e := newEnv(t, vars)
	e.sb.SetLatency(latency)
	w := e.start()
	ids := loadJobs(t, e.js, "nrs", n)
	eventually(t, 60*time.Second, "a fifth of the jobs upstream", func() bool { return e.sb.Stats().Requests >= int64(n/5) })
	e.nats.stop()
	callsAtStop := e.sb.Stats().Requests
	eventually(t, 15*time.Second, "/readyz 503 while NATS is down", func() bool {
		code, _, _ := w.get("/readyz")
		return code == 503
	})
	time.Sleep(time.Second) // keep the server down a little longer: an outage, not a blip
	e.nats.start()
	restartAt := time.Now()
	ta := waitAllResults(t, e.js, e.sb, ids, 180*time.Second)
	t.Logf("NATS stopped after %d upstream calls; the rest drained in %v after its restart: %v",
		callsAtStop, time.Since(restartAt).Round(time.Millisecond), ta)
	if callsAtStop >= int64(n) {
		t.Fatalf("all %d jobs were sent before NATS stopped: the test did not restart under load", n)
	}
	if w.exited() {
		t.Fatalf("the worker exited with code %d when NATS restarted", w.exitCode())
	}
	checkExactlyOnce(t, ta, ids, 1)
	if ta.extra != 0 {
		t.Fatalf("%d results beyond one per job", ta.extra)
	}
	eventually(t, 15*time.Second, "/readyz 200 after the restart", func() bool { code, _, _ := w.get("/readyz"); return code == 200 })
	w.stop(15 * time.Second)
}

// TestSIGTERMRightAfterStart: SIGTERM as soon as the admin server answers (a rollout that
// replaces a pod still starting) is a graceful stop too: exit 0 (§6).
func TestSIGTERMRightAfterStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for i := range 5 {
		w := e.start()
		w.signal(syscall.SIGTERM)
		if !w.waitExit(15 * time.Second) {
			t.Fatalf("start %d: no exit within 15s of SIGTERM", i)
		}
		if code := w.exitCode(); code != 0 {
			t.Fatalf("start %d: exit code %d after SIGTERM right after start", i, code)
		}
	}
}

// logJobsState logs the jobs stream and its consumers, for a test that failed.
func logJobsState(t testing.TB, js jetstream.JetStream, sb *sandbox.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "PUSH_JOBS")
	if err != nil {
		t.Logf("PUSH_JOBS: %v", err)
		return
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Logf("PUSH_JOBS: %v", err)
		return
	}
	t.Logf("PUSH_JOBS: %d messages, first seq %d, last seq %d", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		t.Logf("consumer %s: pending %d, ack pending %d, redelivered %d, waiting %d, delivered %d, ack floor %d",
			ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting, ci.Delivered.Stream, ci.AckFloor.Stream)
	}
	st := sb.Stats()
	t.Logf("sandbox: %d requests, %d injected, paths %v", st.Requests, st.Injected, st.Paths)
}
