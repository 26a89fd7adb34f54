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
//
// It also keeps the replica's share of the rate over the last second (shares): the most a
// replica may have sent in a sliding second is what its shares allowed over that second,
// not what its share of this moment allows for a whole second. Otherwise a replica whose
// share was just raised could send the new share's second at once, into a second that
// still holds what the others sent at their old, higher shares: the chaos soak saw three
// replicas, each holding callers whose tokens came due while every concurrency slot was
// busy (an upstream answering in 2 s), put 362 tokens into one second of a 300/s class as
// shares moved between them.
type released struct {
	mu     sync.Mutex
	at     []int64 // unix nanoseconds, oldest first, from head
	n      []int
	head   int
	sum    int
	shares []shareSince // the shares in force over the last window, oldest first
}

// shareSince is a share of the rate in force from a time on (unix nanoseconds).
type shareSince struct {
	from  int64
	share float64
}

// setShare records that share is in force from now on.
func (r *released) setShare(now int64, share float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Forget the shares that ended before the window: keep the one in force at its start.
	i := 0
	for i+1 < len(r.shares) && r.shares[i+1].from <= now-window {
		i++
	}
	r.shares = append(r.shares[i:], shareSince{from: now, share: share})
}

// allowed returns the fraction of the rate the shares allowed over the window before now:
// the mean share over that second. r.mu must be held.
func (r *released) allowed(now int64) float64 {
	if len(r.shares) == 0 {
		return 0
	}
	start := now - window
	acc := 0.0
	for i, s := range r.shares {
		from := max(s.from, start)
		if i == 0 {
			from = start // the first share recorded counts as in force before it too
		}
		to := now
		if i+1 < len(r.shares) {
			to = min(r.shares[i+1].from, now)
		}
		if to > from {
			acc += s.share * float64(to-from)
		}
	}
	return acc / float64(window)
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
// rate times the shares allowed over that window plus burst (a release heavier than that
// goes when the window is empty). Otherwise it returns when enough will have left the
// window, or, while the allowance grows after a raised share, soon.
func (r *released) take(now int64, n int, rate, burst float64) (ok bool, retry int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge(now)
	limit := max(rate*r.allowed(now)+burst, 1)
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
	retry = r.at[len(r.at)-1] + window + 1
	acc := 0
	for i := r.head; i < len(r.at); i++ {
		acc += r.n[i]
		if float64(acc) >= need {
			retry = r.at[i] + window + 1
			break
		}
	}
	if last := r.shares[len(r.shares)-1]; len(r.shares) > 1 && last.from > now-window {
		retry = min(retry, now+rampCheck) // the allowance is still moving
	}
	return false, retry
}

// rampCheck is how often a caller held by Admit looks again while its replica's allowance
// moves after a changed share.
const rampCheck = int64(10 * time.Millisecond)

// admit holds a caller whose tokens are due until releasing them keeps the last second of
// releases within what the replica's shares allowed over that second. The bucket's burst
// is not added here: it is what the way to the upstream may add, since the upstream counts
// a call when it arrives, not when it left Admit, and on a busy machine calls arrive a few
// to 20 ms apart from when they left (the chaos soak saw each of three replicas' seconds
// 1–3 tokens fuller at the upstream than at Admit).
func (e *entry) admit(w *waiter, n int) wake {
	for {
		b := e.cur.Load()
		ok, retry := e.rel.take(time.Now().UnixNano(), n, e.rate, 0)
		if ok {
			return woke
		}
		if why := w.sleep(b.changed, b.onTick(time.Unix(0, retry))); why == stopped {
			return stopped
		}
	}
}
