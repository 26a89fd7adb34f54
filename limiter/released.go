package limiter

import (
	"sync"
	"time"
)

// released records the tokens this replica let go in the last second, by the time they
// actually left Admit, and paces them. The bucket decides when tokens are due; this record
// guards what the upstream sees: callers whose tokens came due while they could not go (a
// scheduler stall on a busy machine, or every concurrency slot busy behind a slow upstream)
// would otherwise go out together with the callers due after them.
//
// Two rules, both at the replica's current share of the rate:
//   - pace: calls leave at the share's rate, with at most one burst (the bucket's) ahead
//     of it (a virtual-clock pacer, GCRA). A pile of such callers drains at the rate
//     instead of all at once. The chaos soak saw what all at once does: three replicas,
//     each holding the callers of 2 s of an upstream latency spike, each let a whole
//     second of its share go within 250 ms; their calls queued for connections and
//     arrived spread out, so that the upstream counted 362 tokens in one second of a
//     300/s class.
//   - window: no sliding second holds more than the share's rate. The bucket's burst is
//     not added here: it is left for the way to the upstream, which counts a call when it
//     arrives, 1–20 ms after it left on a busy machine (the soak saw each of three
//     replicas' seconds 1–3 tokens fuller at the upstream than when they left).
type released struct {
	mu   sync.Mutex
	at   []int64 // unix nanoseconds, oldest first, from head
	n    []int
	head int
	sum  int
	tat  int64 // the pacer's clock: when the calls let go so far are paid for at the rate
}

// window is the span the upstream's limit is measured over.
const window = int64(time.Second)

// paceAbove is how much faster than the rate the pacer lets callers go: a pile left by a
// stall drains a little faster than the rate, within the window's limit, so that the
// stall's time is made up instead of lost for good (paced at exactly the rate, the
// replicas of pushbench's precision run reached 0.95-0.98 of the rate, from 0.97-0.99).
const paceAbove = 1.1

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

// take records n tokens released at now if the pacer and the last window leave room for
// them at rate tokens per second with burst ahead (a release heavier than the rate goes
// when the window is empty). Otherwise it returns when to look again; 0 means not before
// the rate changes (a share of 0).
func (r *released) take(now int64, n int, rate, burst float64) (ok bool, retry int64) {
	if rate <= 0 {
		return false, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge(now)
	slack := int64(burst / rate * float64(time.Second))
	if r.tat-now > slack {
		return false, r.tat - slack
	}
	limit := max(rate, 1)
	if r.sum > 0 && float64(r.sum+n) > limit {
		need := float64(r.sum+n) - limit
		if float64(n) > limit {
			need = float64(r.sum) // wait for an empty window
		}
		retry = r.at[len(r.at)-1] + window + 1
		acc := 0
		for i := r.head; i < len(r.at); i++ {
			acc += r.n[i]
			if float64(acc) >= need {
				retry = r.at[i] + window + 1
				break
			}
		}
		return false, retry
	}
	r.tat = max(r.tat, now) + int64(float64(n)/(rate*paceAbove)*float64(time.Second))
	r.at = append(r.at, now)
	r.n = append(r.n, n)
	r.sum += n
	return true, 0
}

// admit holds a caller whose tokens are due until the pacer and the window of the
// replica's current share let it go (released).
func (e *entry) admit(w *waiter, n int) wake {
	for {
		b := e.cur.Load()
		now := time.Now()
		if !w.l.leased(now) {
			// The replica has not seen its own heartbeat for too long: the others may
			// count it as gone and take its share.
			if why := w.sleep(b.changed, now.Add(leasePoll)); why == stopped {
				return stopped
			}
			continue
		}
		ok, retry := e.rel.take(now.UnixNano(), n, b.rate, float64(b.burst))
		if ok {
			return woke
		}
		at := time.Time{} // until the share changes
		if retry > 0 {
			at = b.onTick(time.Unix(0, retry))
		}
		if why := w.sleep(b.changed, at); why == stopped {
			return stopped
		}
	}
}
