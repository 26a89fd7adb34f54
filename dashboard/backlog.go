package dashboard

import (
	"sync"
	"time"
)

// backlogKeep is how far back the backlog chart goes.
const backlogKeep = 10 * time.Minute

// BacklogSample is the jobs stream's backlog per job type at one time, as the service's
// sampler reads it (stream subject counts and consumer info: no message is read).
type BacklogSample struct {
	At    time.Time
	Types []TypeBacklog
}

// TypeBacklog is one job type's backlog.
type TypeBacklog struct {
	Type        string `json:"type"`
	Stored      uint64 `json:"stored"`      // messages on the type's subject: waiting or in flight
	InFlight    int    `json:"in_flight"`   // delivered and not yet acked (consumer ack pending)
	Redelivered int    `json:"redelivered"` // being redelivered (retries, hand-backs)
}

// backlogRing keeps the samples of the last backlogKeep, at most one per second.
type backlogRing struct {
	mu      sync.Mutex
	samples []BacklogSample // oldest first
}

func (b *backlogRing) add(s BacklogSample) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.samples); n > 0 && s.At.Sub(b.samples[n-1].At) < 900*time.Millisecond {
		b.samples[n-1] = s // two samplers, or a fast one: keep one per second
		return
	}
	cut := 0
	for cut < len(b.samples) && s.At.Sub(b.samples[cut].At) > backlogKeep {
		cut++
	}
	if cut > 0 {
		b.samples = append(b.samples[:0], b.samples[cut:]...)
	}
	b.samples = append(b.samples, s)
}

// backlogView is the backlog part of the page's state.
type backlogView struct {
	Types     []string      `json:"types"`
	Current   []TypeBacklog `json:"current"`
	SampledAt time.Time     `json:"sampled_at,omitzero"`
	// Series holds, per sample, the unix milliseconds and the stored count of each type in
	// Types' order.
	Series [][]int64 `json:"series"`
}

func (b *backlogRing) view(types []string) backlogView {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := backlogView{Types: types, Current: []TypeBacklog{}, Series: make([][]int64, 0, len(b.samples))}
	idx := make(map[string]int, len(types))
	for i, t := range types {
		idx[t] = i
	}
	if n := len(b.samples); n > 0 {
		last := b.samples[n-1]
		v.SampledAt = last.At
		v.Current = append(v.Current, last.Types...)
	}
	// Types outside the list (an unknown type waiting for the sweeper) go into "other".
	other := len(types)
	for _, s := range b.samples {
		row := make([]int64, 1+len(types)+1)
		row[0] = s.At.UnixMilli()
		for _, t := range s.Types {
			i, ok := idx[t.Type]
			if !ok {
				i = other
			}
			row[1+i] += int64(t.Stored)
		}
		v.Series = append(v.Series, row)
	}
	v.Types = append(append([]string{}, types...), "other")
	return v
}
