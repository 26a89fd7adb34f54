package worker

import (
	"github.com/pushworker/pushworker/config"

	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunnerReusesGoroutines: jobs run at once even when every goroutine is busy, and a
// goroutine that finished a job takes the next one instead of a new goroutine starting.
func TestRunnerReusesGoroutines(t *testing.T) {
	r := newRunner(time.Minute)
	var started atomic.Int32
	r.run(func() { started.Add(1) }) // leaves one idle goroutine
	deadline := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	block := make(chan struct{})
	ran := make(chan struct{}, 3)
	for range 3 { // more jobs than idle goroutines: none may wait for another
		wg.Add(1)
		r.run(func() {
			defer wg.Done()
			ran <- struct{}{}
			<-block
		})
	}
	for range 3 {
		select {
		case <-ran:
		case <-time.After(time.Until(deadline)):
			t.Fatal("a job waited for another to finish")
		}
	}
	close(block)
	wg.Wait()

	// Now three goroutines are idle: the next jobs must go to them.
	for time.Now().Before(deadline) {
		select {
		case r.next <- func() {}:
			return
		default:
			time.Sleep(time.Millisecond)
		}
	}
	t.Fatal("no goroutine waited for a next job")
}

// TestRunnerIdleGoroutinesEnd: an idle goroutine ends after the idle time.
func TestRunnerIdleGoroutinesEnd(t *testing.T) {
	r := newRunner(20 * time.Millisecond)
	r.run(func() {})
	time.Sleep(200 * time.Millisecond)
	select {
	case r.next <- func() {}:
		t.Fatal("a goroutine was still waiting after its idle time")
	default:
	}
}

// TestPullBatch: a rate-limited class asks for about 50 ms of its rate per pull request,
// so that replicas interleave; an unlimited class asks for big batches.
func TestPullBatch(t *testing.T) {
	rates := func(p2p float64) config.App { return config.App{Rates: map[string]float64{config.ClassP2P: p2p}} }
	for _, c := range []struct {
		apps map[string]config.App
		want int
	}{
		{map[string]config.App{"a": rates(1000)}, 50},
		{map[string]config.App{"a": rates(1000), "b": rates(1000)}, 100},
		{map[string]config.App{"a": rates(10)}, 16},
		{map[string]config.App{"a": rates(1e6)}, 256},
		{map[string]config.App{"a": rates(1000), "b": rates(0)}, 256}, // 0: unlimited
	} {
		w := &Worker{c: config.Config{Apps: c.apps, Concurrency: 64}}
		if got := w.pullBatch(config.ClassP2P); got != c.want {
			t.Errorf("%v: batch %d, want %d", c.apps, got, c.want)
		}
	}
}
