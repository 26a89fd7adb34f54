package limiter

import (
	"sync"
	"time"
)

// released records the tokens this replica let go in the last second, by the time they
// actually left Wait. The bucket decides when tokens are due; this record guards what the
// upstream sees: a caller that wakes late (a scheduler stall on a busy machine) would
// otherwise go out together with the callers due after it, and that bunch could put more
// than the rate into one sliding second at the upstream.
type released struct {
	mu   sync.Mutex
	at   []int64 // unix nanoseconds, oldest first, from head
	n    []int
	head int
	sum  int
}

// window is the span the upstream's limit is measured over.
const window = int64(time.Second)

// purge forgets releases older than one window before now. r.mu must be held.
func (r *released) purge(now int64) {
	for r.head < len(r.at) && r.at[r.head] <= now-window {
		r.sum -= r.n[r.head]
		r.head++
	}
	if r.head > 64 && r.head*2 > len(r.at) {
		k := copy(r.at, r.at[r.head:])
		copy(r.n, r.n[r.head:])
		r.at, r.n, r.head = r.at[:k], r.n[:k], 0
	}
}

// lastSecond returns the tokens released in the window before now.
func (r *released) lastSecond(now int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge(now)
	return r.sum
}

// take records n tokens released at now if the last window leaves room for them under
// limit (a release heavier than the limit goes when the window is empty). Otherwise it
// returns when enough will have left the window.
func (r *released) take(now int64, n int, limit float64) (ok bool, retry int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge(now)
	if r.sum == 0 || float64(r.sum+n) <= limit {
		r.at = append(r.at, now)
		r.n = append(r.n, n)
		r.sum += n
		return true, 0
	}
	need := float64(r.sum+n) - limit
	if float64(n) > limit {
		need = float64(r.sum) // wait for an empty window
	}
	acc := 0
	for i := r.head; i < len(r.at); i++ {
		acc += r.n[i]
		if float64(acc) >= need {
			return false, r.at[i] + window + 1
		}
	}
	return false, r.at[len(r.at)-1] + window + 1
}

// admit holds a caller whose tokens are due until releasing them keeps the last second of
// releases within the bucket's rate plus its burst.
func (e *entry) admit(w *waiter, n int) wake {
	for {
		b := e.cur.Load()
		limit := b.rate + float64(b.burst)
		if b.lim == nil || limit < 1 {
			limit = 1
		}
		ok, retry := e.rel.take(time.Now().UnixNano(), n, limit)
		if ok {
			return woke
		}
		if why := w.sleep(b.changed, b.onTick(time.Unix(0, retry))); why == stopped {
			return stopped
		}
	}
}
