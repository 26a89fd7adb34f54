package upstream

import (
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/pushworker/pushworker/jobs"
)

// Errors returned by Gate.Allow.
var (
	// ErrOpen means the upstream failed repeatedly and the breaker is open.
	ErrOpen = errors.New("upstream breaker open")
	// ErrPaused means the upstream said the app's configuration is wrong; the app's calls
	// wait until a probe succeeds.
	ErrPaused = errors.New("app paused: upstream refused its configuration")
)

var (
	errUnavailable = errors.New("unavailable")
	errConfig      = errors.New("configuration")
	errExcluded    = errors.New("excluded")
)

// BreakerSettings tune the breakers.
type BreakerSettings struct {
	TripAfter  uint32        // consecutive retryable failures that open the breaker (default 5)
	OpenFor    time.Duration // open period before one probe (default 10s)
	ProbeEvery time.Duration // probe period of a paused app (default 5s)
	// OnChange is called when a gate opens, pauses or closes.
	OnChange func(g GateState)
}

// GateState describes one gate for readiness, metrics and logs.
type GateState struct {
	App, Upstream, Host string
	Open                bool // availability breaker not closed
	Paused              bool // configuration breaker not closed
	Since               time.Time
	Detail              string // the last configuration answer

	// LastFailure is the detail of the last call that failed for a retryable or
	// configuration reason (already scrubbed of secrets), at LastFailureAt, with the
	// upstream's answer when there was one.
	LastFailure   string
	LastFailureAt time.Time
	LastAnswer    *jobs.UpstreamAnswer
	// RemoteUntil is set while another replica's open breaker holds this gate closed.
	RemoteUntil time.Time
}

// Breakers holds one Gate per app, upstream and host.
type Breakers struct {
	s  BreakerSettings
	mu sync.Mutex
	m  map[gateKey]*Gate
}

type gateKey struct{ app, upstream, host string }

// NewBreakers returns an empty set of gates.
func NewBreakers(s BreakerSettings) *Breakers {
	if s.TripAfter == 0 {
		s.TripAfter = 5
	}
	if s.OpenFor <= 0 {
		s.OpenFor = 10 * time.Second
	}
	if s.ProbeEvery <= 0 {
		s.ProbeEvery = 5 * time.Second
	}
	return &Breakers{s: s, m: map[gateKey]*Gate{}}
}

// Gate guards the calls of one app to one upstream host: an availability breaker that opens
// after repeated retryable failures, and a configuration breaker that opens at the first
// answer saying the app's configuration is wrong. Both let one probe through at a time.
type Gate struct {
	key   gateKey
	b     *Breakers
	avail *gobreaker.TwoStepCircuitBreaker[struct{}]
	conf  *gobreaker.TwoStepCircuitBreaker[struct{}]

	mu     sync.Mutex
	state  GateState
	remote time.Time // opened by another replica until then
}

// For returns the gate of an app's calls to an upstream host.
func (b *Breakers) For(app, upstream, host string) *Gate {
	k := gateKey{app, upstream, host}
	b.mu.Lock()
	defer b.mu.Unlock()
	if g, ok := b.m[k]; ok {
		return g
	}
	g := &Gate{key: k, b: b, state: GateState{App: app, Upstream: upstream, Host: host}}
	excluded := func(err error) bool { return errors.Is(err, errExcluded) }
	g.avail = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "avail",
		MaxRequests: 1,
		Timeout:     b.s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= b.s.TripAfter },
		IsExcluded:  excluded,
		OnStateChange: func(_ string, _, to gobreaker.State) {
			g.changed(func(s *GateState) { s.Open = to != gobreaker.StateClosed })
		},
	})
	g.conf = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "conf",
		MaxRequests: 1,
		Timeout:     b.s.ProbeEvery,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
		IsExcluded:  excluded,
		OnStateChange: func(_ string, _, to gobreaker.State) {
			g.changed(func(s *GateState) { s.Paused = to != gobreaker.StateClosed })
		},
	})
	b.m[k] = g
	return g
}

func (g *Gate) changed(f func(*GateState)) {
	g.mu.Lock()
	before := g.state
	f(&g.state)
	if before.Open != g.state.Open || before.Paused != g.state.Paused {
		g.state.Since = time.Now()
	}
	st := g.state
	g.mu.Unlock()
	if g.b.s.OnChange != nil && (before.Open != st.Open || before.Paused != st.Paused) {
		g.b.s.OnChange(st)
	}
}

// Allow asks to make one call. When the call may go, done must be called with its outcome.
// Otherwise err is ErrOpen or ErrPaused and wait says when to ask again.
func (g *Gate) Allow() (done func(Outcome), wait time.Duration, err error) {
	g.mu.Lock()
	remote := g.remote
	g.mu.Unlock()
	if d := time.Until(remote); d > 0 {
		return nil, d, ErrOpen
	}
	confDone, err := g.conf.Allow()
	if err != nil {
		return nil, g.b.s.ProbeEvery, ErrPaused
	}
	availDone, err := g.avail.Allow()
	if err != nil {
		confDone(errExcluded)
		return nil, g.b.s.OpenFor, ErrOpen
	}
	return func(o Outcome) {
		switch {
		case o.Kind == Configuration:
			g.mu.Lock()
			if o.Err != nil {
				g.state.Detail = o.Err.Detail
			}
			g.noteFailure(o)
			g.mu.Unlock()
			confDone(errConfig)
			availDone(errExcluded)
		case o.Kind == Retryable && !o.RateLimited:
			g.mu.Lock()
			g.noteFailure(o)
			g.mu.Unlock()
			confDone(errExcluded)
			availDone(errUnavailable)
		default:
			confDone(nil)
			availDone(nil)
		}
	}, 0, nil
}

// noteFailure records a failed call's detail and answer for State. g.mu must be held.
func (g *Gate) noteFailure(o Outcome) {
	g.state.LastFailure, g.state.LastFailureAt, g.state.LastAnswer = "", time.Now(), nil
	if o.Err != nil {
		g.state.LastFailure = o.Err.Detail
	}
	if o.Answer != nil {
		a := *o.Answer
		g.state.LastAnswer = &a
	}
}

// ClearRemote ends an opening that came from another replica (its probe succeeded).
func (g *Gate) ClearRemote() {
	g.mu.Lock()
	g.remote = time.Time{}
	g.mu.Unlock()
}

// OpenUntil opens the gate until t because another replica's breaker opened.
func (g *Gate) OpenUntil(t time.Time) {
	g.mu.Lock()
	if t.After(g.remote) {
		g.remote = t
	}
	g.mu.Unlock()
}

// State returns the gate's state.
func (g *Gate) State() GateState {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.state
	if time.Now().Before(g.remote) {
		st.RemoteUntil = g.remote
	}
	return st
}

// States returns the state of every gate, sorted by app, upstream and host.
func (b *Breakers) States() []GateState {
	b.mu.Lock()
	gates := make([]*Gate, 0, len(b.m))
	for _, g := range b.m {
		gates = append(gates, g)
	}
	b.mu.Unlock()
	out := make([]GateState, 0, len(gates))
	for _, g := range gates {
		out = append(out, g.State())
	}
	sort.Slice(out, func(i, j int) bool {
		a, c := out[i], out[j]
		if a.App != c.App {
			return a.App < c.App
		}
		if a.Upstream != c.Upstream {
			return a.Upstream < c.Upstream
		}
		return a.Host < c.Host
	})
	return out
}

// Blocked reports whether the gate is open (not half-open) and for how long to wait; it
// does not take a probe slot.
func (g *Gate) Blocked() (time.Duration, bool) {
	g.mu.Lock()
	remote := g.remote
	g.mu.Unlock()
	if d := time.Until(remote); d > 0 {
		return min(d, g.b.s.OpenFor), true
	}
	if g.conf.State() == gobreaker.StateOpen {
		return g.b.s.ProbeEvery, true
	}
	if g.avail.State() == gobreaker.StateOpen {
		return g.b.s.OpenFor, true
	}
	return 0, false
}

// ProbeEvery is how often a paused app is probed.
func (b *Breakers) ProbeEvery() time.Duration { return b.s.ProbeEvery }

// OpenFor is how long an open breaker stays open before a probe.
func (b *Breakers) OpenFor() time.Duration { return b.s.OpenFor }
