package dashboard

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/pushworker/pushworker/jobs"
)

// Bounds of the recent results: whatever the rate of results, the collector keeps at most
// keepSentPerSecond sent or partial results and keepOtherPerSecond others per second (the
// others are rarer and more interesting), and at most ringSize in all. Every result is
// counted, only the kept ones are decoded.
const (
	ringSize           = 1000
	keepSentPerSecond  = 20
	keepOtherPerSecond = 50
	rateWindow         = 60 // seconds of per-status counts
)

// statuses are the result statuses counted, in display order; the last counts results
// without a known status.
var statuses = []string{string(jobs.StatusSent), string(jobs.StatusPartial), string(jobs.StatusRejected), string(jobs.StatusFailed), string(jobs.StatusExpired), "other"}

func statusIndex(s string) int {
	for i, st := range statuses[:len(statuses)-1] {
		if st == s {
			return i
		}
	}
	return len(statuses) - 1
}

// kept is one result the collector kept.
type kept struct {
	At      time.Time   `json:"at"`
	Subject string      `json:"subject"`
	Result  jobs.Result `json:"result"`
}

// second counts the results of one wall-clock second.
type second struct {
	unix     int64
	byStatus [6]int64
	sent     int // kept of them
	other    int
}

// collector samples results into a bounded ring and counts them all.
type collector struct {
	mu      sync.Mutex
	ring    [ringSize]kept
	next    int // where the next kept result goes
	n       int // kept results in ring
	secs    [rateWindow]second
	totals  [6]int64
	seen    int64
	skipped int64 // counted, not kept (sampling)
	since   time.Time
}

// reset forgets everything (a new watch starts).
func (c *collector) reset(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.ring[:])
	c.next, c.n = 0, 0
	c.secs = [rateWindow]second{}
	c.totals = [6]int64{}
	c.seen, c.skipped, c.since = 0, 0, now
}

// add counts one result, with its status from the Push-Status header, and keeps it if
// this second's sample has room. data is only decoded when kept; a kept result's data
// must not change afterwards.
func (c *collector) add(now time.Time, subject, status string, data []byte) {
	si := statusIndex(status)
	sec := now.Unix()
	c.mu.Lock()
	s := &c.secs[sec%rateWindow]
	if s.unix != sec {
		*s = second{unix: sec}
	}
	s.byStatus[si]++
	c.totals[si]++
	c.seen++
	keep := false
	if si <= 1 { // sent, partial
		if s.sent < keepSentPerSecond {
			s.sent++
			keep = true
		}
	} else if s.other < keepOtherPerSecond {
		s.other++
		keep = true
	}
	if !keep {
		c.skipped++
	}
	c.mu.Unlock()
	if !keep {
		return
	}
	var r jobs.Result
	if json.Unmarshal(data, &r) != nil {
		r = jobs.Result{Status: jobs.Status(status)}
	}
	c.put(kept{At: now, Subject: subject, Result: r})
}

// put stores a kept result (also one read back from the stream when a watch starts).
func (c *collector) put(k kept) {
	c.mu.Lock()
	c.ring[c.next] = k
	c.next = (c.next + 1) % ringSize
	c.n = min(c.n+1, ringSize)
	c.mu.Unlock()
}

// resultFilter selects kept results; empty fields select all.
type resultFilter struct{ status, typ, app, requestID string }

func (f resultFilter) match(r *jobs.Result) bool {
	return (f.status == "" || string(r.Status) == f.status) && (f.typ == "" || r.Type == f.typ) &&
		(f.app == "" || r.App == f.app) && (f.requestID == "" || r.RequestID == f.requestID)
}

// recent returns up to limit kept results matching f, newest first.
func (c *collector) recent(f resultFilter, limit int) []kept {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []kept{}
	for i := 1; i <= c.n && len(out) < limit; i++ {
		k := &c.ring[(c.next-i+ringSize)%ringSize]
		if f.match(&k.Result) {
			out = append(out, *k)
		}
	}
	return out
}

// resultsView is the results part of the page's state.
type resultsView struct {
	Since    time.Time         `json:"since"`
	Statuses []string          `json:"statuses"`
	Totals   []int64           `json:"totals"`     // since Since, per status
	PerSec   []float64         `json:"per_second"` // over the last 5 complete seconds
	Seen     int64             `json:"seen"`
	Sampled  bool              `json:"sampled"` // some results were counted but not kept
	Dropped  int64             `json:"dropped"` // lost by a slow subscription, not even counted
	Recent   []kept            `json:"recent"`
	Filter   map[string]string `json:"filter"`
}

func (c *collector) view(now time.Time, f resultFilter, limit int, dropped int64) resultsView {
	rec := c.recent(f, limit)
	c.mu.Lock()
	defer c.mu.Unlock()
	v := resultsView{Since: c.since, Statuses: statuses, Totals: append([]int64{}, c.totals[:]...), PerSec: make([]float64, len(statuses)),
		Seen: c.seen, Sampled: c.skipped > 0, Dropped: dropped, Recent: rec,
		Filter: map[string]string{"status": f.status, "type": f.typ, "app": f.app}}
	const span = 5
	cur := now.Unix()
	for back := int64(1); back <= span; back++ {
		s := &c.secs[(cur-back)%rateWindow]
		if s.unix != cur-back {
			continue
		}
		for i, n := range s.byStatus {
			v.PerSec[i] += float64(n) / span
		}
	}
	return v
}
