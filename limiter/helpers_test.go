package limiter

import (
	"context"
	"errors"
	"math"
	"sort"
	"sync"
	"testing"
	"time"
)

// grant is one Wait that returned nil: n tokens at time at.
type grant struct {
	at time.Time
	n  int
}

// recorder collects grants from many goroutines.
type recorder struct {
	mu     sync.Mutex
	grants []grant
}

func (r *recorder) add(n int) { r.addAt(time.Now(), n) }

func (r *recorder) addAt(at time.Time, n int) {
	r.mu.Lock()
	r.grants = append(r.grants, grant{at, n})
	r.mu.Unlock()
}

// newLimiter returns a Limiter with opts and a recorder of the times it meant its grants
// to happen at. Tests check precision on those: on a loaded machine the times callers
// actually run at are bunched by the scheduler, which no limiter can undo.
func newLimiter(opts Options) (*Limiter, *recorder) {
	l := New(opts)
	rec := &recorder{}
	l.onGrant = func(_ string, at time.Time, n int) { rec.addAt(at, n) }
	return l, rec
}

func (r *recorder) sorted() []grant {
	r.mu.Lock()
	g := append([]grant(nil), r.grants...)
	r.mu.Unlock()
	sort.Slice(g, func(i, j int) bool { return g[i].at.Before(g[j].at) })
	return g
}

// tokens returns the tokens granted in [from, to).
func (r *recorder) tokens(from, to time.Time) int {
	n := 0
	for _, g := range r.sorted() {
		if !g.at.Before(from) && g.at.Before(to) {
			n += g.n
		}
	}
	return n
}

// rate returns the tokens per second granted in [from, to).
func (r *recorder) rate(from, to time.Time) float64 {
	return float64(r.tokens(from, to)) / to.Sub(from).Seconds()
}

// rateOnceDone returns the tokens per second granted in [from, to), once callers that
// ran late on a loaded machine have returned from Wait: a grant is recorded when Wait
// returns, with the time it was due.
func (r *recorder) rateOnceDone(from, to time.Time) float64 {
	time.Sleep(time.Until(to.Add(500 * time.Millisecond)))
	return r.rate(from, to)
}

// maxWindow returns the most tokens granted in any half-open window of length w, and
// where that window starts.
func (r *recorder) maxWindow(w time.Duration) (int, time.Time) {
	g := r.sorted()
	best, at, sum, j := 0, time.Time{}, 0, 0
	for i := range g {
		for j < len(g) && g[j].at.Before(g[i].at.Add(w)) {
			sum += g[j].n
			j++
		}
		if sum > best {
			best, at = sum, g[i].at
		}
		sum -= g[i].n
	}
	return best, at
}

// load runs workers goroutines that Wait for weight tokens in a loop until ctx ends, and
// records when each Wait returned in rec, if not nil. The returned function waits for them.
func load(ctx context.Context, t *testing.T, l *Limiter, app, class string, workers, weight int, rec *recorder) (wait func()) {
	t.Helper()
	return loadWith(ctx, t, l, app, class, workers, weight, false, rec)
}

// loadAdmitted is load with each grant passed through Admit, as the worker does before a call.
func loadAdmitted(ctx context.Context, t *testing.T, l *Limiter, app, class string, workers, weight int, rec *recorder) (wait func()) {
	t.Helper()
	return loadWith(ctx, t, l, app, class, workers, weight, true, rec)
}

func loadWith(ctx context.Context, t *testing.T, l *Limiter, app, class string, workers, weight int, admit bool, rec *recorder) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := l.Wait(ctx, app, class, weight, nil)
				if err == nil && admit {
					err = l.Admit(ctx, app, class, weight)
				}
				if err != nil {
					if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Wait: %v", err)
					}
					return
				}
				if rec != nil {
					rec.add(weight)
				}
			}
		}()
	}
	return wg.Wait
}

// eventually polls cond until it holds or d passes, and returns how long that took.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// smallBurst is the burst the tests allow a bucket of rate tokens per second: 1 % of it, at
// least 1. It is fixed here rather than taken from the code, so that a bigger burst fails.
func smallBurst(rate float64) int { return max(1, int(math.Ceil(rate/100))) }

func fixedRate(r float64) func(app, class string) float64 {
	return func(string, string) float64 { return r }
}
