package sandbox

import (
	"sync"
	"time"
)

// window is the limiter of one app and class: an exact sliding one-second window of
// accepted tokens. It keeps one entry per accepted call of the last second in a ring, so
// that admitting a call costs amortised O(1) under one mutex.
type window struct {
	mu    sync.Mutex
	rate  float64 // tokens per second; 0 = unlimited
	limit float64 // rate × (1 + tolerance)

	ring []windowEntry // power-of-two length
	head int
	n    int
	sum  int64 // tokens in the window

	calls, tokens, limited, worst int64
}

type windowEntry struct {
	at     int64 // nanoseconds since the server's epoch
	weight int64
}

func newWindow(rate, tolerance float64) *window {
	if rate < 0 {
		rate = 0
	}
	return &window{rate: rate, limit: rate * (1 + tolerance), ring: make([]windowEntry, 64)}
}

// admit records a call of weight at now and reports whether it is within the limit. A
// refused call is counted as rate limited and leaves the window as it was.
func (w *window) admit(now, weight int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(now)
	// A call heavier than the limit is accepted into an empty window; see the package doc.
	if w.limit > 0 && w.sum > 0 && float64(w.sum+weight) > w.limit {
		w.limited++
		return false
	}
	if w.n == len(w.ring) {
		w.grow()
	}
	w.ring[(w.head+w.n)&(len(w.ring)-1)] = windowEntry{at: now, weight: weight}
	w.n++
	w.sum += weight
	w.calls++
	w.tokens += weight
	if w.sum > w.worst {
		w.worst = w.sum
	}
	return true
}

// expire drops the entries at or before now - 1 s: the window is (now-1s, now].
func (w *window) expire(now int64) {
	cutoff := now - int64(time.Second)
	mask := len(w.ring) - 1
	for w.n > 0 {
		e := &w.ring[w.head]
		if e.at > cutoff {
			break
		}
		w.sum -= e.weight
		w.head = (w.head + 1) & mask
		w.n--
	}
}

func (w *window) grow() {
	ring := make([]windowEntry, 2*len(w.ring))
	mask := len(w.ring) - 1
	for i := 0; i < w.n; i++ {
		ring[i] = w.ring[(w.head+i)&mask]
	}
	w.ring, w.head = ring, 0
}

// stats returns the window's counters.
func (w *window) stats() ClassStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return ClassStats{Rate: w.rate, Calls: w.calls, Tokens: w.tokens, RateLimited: w.limited, WorstWindow: w.worst}
}

// reset empties the window and zeroes its counters.
func (w *window) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ring = make([]windowEntry, 64)
	w.head, w.n, w.sum = 0, 0, 0
	w.calls, w.tokens, w.limited, w.worst = 0, 0, 0, 0
}
