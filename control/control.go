// Package control holds the operator's campaign controls: pauses of a job type or rate
// class (for every app or one), and cancellations of jobs by request-id prefix. They live
// in the KV bucket <PREFIX>_CONTROL, so that they survive restarts and reach every replica:
// pushctl and the API write them through a Store, every worker keeps them in memory through
// a Watcher and checks a job against that copy (no KV read per job).
package control

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

// DefaultCancelFor is how long a cancellation lasts when no duration is given: long enough
// for any campaign to drain, short enough that a reused prefix works again the next day.
const DefaultCancelFor = 24 * time.Hour

// Pause holds the jobs of a type or rate class, for every app or one, until it is resumed
// or its Until passes.
type Pause struct {
	Target string    `json:"target"`           // a job type or a rate class
	App    string    `json:"app,omitempty"`    // "" : every app
	Since  time.Time `json:"since"`            // when it was set
	Until  time.Time `json:"until,omitzero"`   // zero: until resumed
	Reason string    `json:"reason,omitempty"` // free text from the operator
}

// Cancel makes every job whose request id starts with Prefix and that is not yet sent end
// as cancelled, until Until.
type Cancel struct {
	Prefix string    `json:"prefix"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
}

// Matches reports whether the pause holds a job of jobType (rate class class) of app.
func (p Pause) Matches(app, jobType, class string) bool {
	return (p.App == "" || p.App == app) && (p.Target == jobType || p.Target == class)
}

// Active reports whether the pause holds at now.
func (p Pause) Active(now time.Time) bool { return p.Until.IsZero() || now.Before(p.Until) }

// ErrUnknownTarget is the error of a pause of something that is neither a job type nor a
// rate class.
var ErrUnknownTarget = errors.New("unknown job type or rate class")

// CheckTarget validates the target of a pause or resume.
func CheckTarget(target string) error {
	if _, ok := jobs.Lookup(target); ok {
		return nil
	}
	if slices.Contains(Classes(), target) {
		return nil
	}
	var names []string
	for _, s := range jobs.Specs() {
		names = append(names, string(s.Type))
	}
	return fmt.Errorf("target %q: %w (job types: %s; classes: %s)", target, ErrUnknownTarget, strings.Join(names, ", "), strings.Join(Classes(), ", "))
}

// Classes lists the rate classes.
func Classes() []string {
	var cs []string
	for _, s := range jobs.Specs() {
		if !slices.Contains(cs, s.Class) {
			cs = append(cs, s.Class)
		}
	}
	return cs
}

// TypesOf lists the job types a target (type or class) covers.
func TypesOf(target string) []string {
	var ts []string
	for _, s := range jobs.Specs() {
		if string(s.Type) == target || s.Class == target {
			ts = append(ts, string(s.Type))
		}
	}
	return ts
}

// Keys: the parts that may hold any character are base64url-encoded (KV keys allow
// [-/_=.a-zA-Z0-9]).
var enc = base64.RawURLEncoding

func pauseKey(app, target string) string {
	return "pause." + enc.EncodeToString([]byte(app+"/"+target))
}

func cancelKey(prefix string) string { return "cancel." + enc.EncodeToString([]byte(prefix)) }

// Store reads and writes the controls.
type Store struct{ KV jetstream.KeyValue }

// Pause sets (or replaces) a pause.
func (s Store) Pause(ctx context.Context, p Pause) error {
	if err := CheckTarget(p.Target); err != nil {
		return err
	}
	if p.Since.IsZero() {
		p.Since = time.Now().UTC()
	}
	b, _ := json.Marshal(p)
	_, err := s.KV.Put(ctx, pauseKey(p.App, p.Target), b)
	return err
}

// Resume ends a pause; false when there was none for that target and app.
func (s Store) Resume(ctx context.Context, app, target string) (bool, error) {
	if err := CheckTarget(target); err != nil {
		return false, err
	}
	key := pauseKey(app, target)
	if _, err := s.KV.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, s.KV.Delete(ctx, key)
}

// Cancel records a cancellation by request-id prefix.
func (s Store) Cancel(ctx context.Context, c Cancel) error {
	if c.Prefix == "" || len(c.Prefix) > 128 {
		return errors.New("request_id_prefix must be 1-128 characters")
	}
	now := time.Now().UTC()
	if c.Since.IsZero() {
		c.Since = now
	}
	if c.Until.IsZero() {
		c.Until = now.Add(DefaultCancelFor)
	}
	b, _ := json.Marshal(c)
	_, err := s.KV.Put(ctx, cancelKey(c.Prefix), b)
	return err
}

// State reads every control now in force.
func (s Store) State(ctx context.Context) (*State, error) {
	keys, err := s.KV.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	st := &State{}
	for k := range keys.Keys() {
		e, err := s.KV.Get(ctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		st.add(k, e.Value())
	}
	st.sort()
	return st.Active(time.Now()), nil
}

// State is a snapshot of the controls. Its methods are safe on a nil State.
type State struct {
	Pauses  []Pause  `json:"pauses"`
	Cancels []Cancel `json:"cancels"`
}

func (st *State) add(key string, v []byte) {
	switch {
	case strings.HasPrefix(key, "pause."):
		var p Pause
		if json.Unmarshal(v, &p) == nil {
			st.Pauses = append(st.Pauses, p)
		}
	case strings.HasPrefix(key, "cancel."):
		var c Cancel
		if json.Unmarshal(v, &c) == nil {
			st.Cancels = append(st.Cancels, c)
		}
	}
}

func (st *State) sort() {
	sort.Slice(st.Pauses, func(i, j int) bool {
		return st.Pauses[i].App+"/"+st.Pauses[i].Target < st.Pauses[j].App+"/"+st.Pauses[j].Target
	})
	sort.Slice(st.Cancels, func(i, j int) bool { return st.Cancels[i].Prefix < st.Cancels[j].Prefix })
}

// Active returns the controls that still hold at now.
func (st *State) Active(now time.Time) *State {
	out := &State{Pauses: []Pause{}, Cancels: []Cancel{}}
	if st == nil {
		return out
	}
	for _, p := range st.Pauses {
		if p.Active(now) {
			out.Pauses = append(out.Pauses, p)
		}
	}
	for _, c := range st.Cancels {
		if now.Before(c.Until) {
			out.Cancels = append(out.Cancels, c)
		}
	}
	return out
}

// Empty reports whether nothing is paused or cancelled.
func (st *State) Empty() bool { return st == nil || len(st.Pauses)+len(st.Cancels) == 0 }

// Paused returns the pause that holds a job, the one that lasts longest when several do.
func (st *State) Paused(app, jobType, class string, now time.Time) (Pause, bool) {
	if st == nil {
		return Pause{}, false
	}
	var best Pause
	found := false
	for _, p := range st.Pauses {
		if !p.Matches(app, jobType, class) || !p.Active(now) {
			continue
		}
		if !found || p.Until.IsZero() || (!best.Until.IsZero() && p.Until.After(best.Until)) {
			best, found = p, true
		}
	}
	return best, found
}

// ConsumerPause is until when the consumer of jobType should be paused: the latest end of
// the pauses that hold the type for every app (a far future for an open-ended one); zero
// when none does. A pause of one app cannot pause the consumer, which every app shares.
func (st *State) ConsumerPause(jobType, class string, now time.Time) time.Time {
	var until time.Time
	if st == nil {
		return until
	}
	for _, p := range st.Pauses {
		if p.App != "" || !p.Matches("", jobType, class) || !p.Active(now) {
			continue
		}
		u := p.Until
		if u.IsZero() {
			u = OpenEnded
		}
		if u.After(until) {
			until = u
		}
	}
	return until
}

// OpenEnded is the consumer pause of a pause without an end.
var OpenEnded = time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)

// Cancelled returns the cancellation that covers a request id.
func (st *State) Cancelled(requestID string, now time.Time) (Cancel, bool) {
	if st == nil {
		return Cancel{}, false
	}
	for _, c := range st.Cancels {
		if strings.HasPrefix(requestID, c.Prefix) && now.Before(c.Until) {
			return c, true
		}
	}
	return Cancel{}, false
}

// Watcher keeps the controls in memory, fresh from the bucket.
type Watcher struct {
	cur atomic.Pointer[State]
	// OnChange, when set before Start, is called (from the watching goroutine) with every
	// new state, the first time with the bucket's state at start.
	OnChange func(*State)
	wg       sync.WaitGroup
}

// Load returns the current state (nil before Start).
func (w *Watcher) Load() *State {
	if w == nil {
		return nil
	}
	return w.cur.Load()
}

// Start loads the bucket's state and keeps following it until ctx ends. It returns once the
// state at start is loaded.
func (w *Watcher) Start(ctx context.Context, kv jetstream.KeyValue) error {
	kw, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching %s: %w", kv.Bucket(), err)
	}
	entries := map[string][]byte{}
	publish := func() {
		st := &State{}
		for k, v := range entries {
			st.add(k, v)
		}
		st.sort()
		w.cur.Store(st)
		if w.OnChange != nil {
			w.OnChange(st)
		}
	}
	apply := func(e jetstream.KeyValueEntry) {
		if e.Operation() == jetstream.KeyValuePut {
			entries[e.Key()] = e.Value()
		} else {
			delete(entries, e.Key())
		}
	}
	// Initial values, up to the nil marker.
	for e := range kw.Updates() {
		if e == nil {
			break
		}
		apply(e)
	}
	publish()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer kw.Stop()
		// Pauses with an end lapse on their own: re-publish when the next one does, so
		// that OnChange sees it (consumers resume) and the metric drops it.
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		rearm := func() {
			next := time.Hour
			now := time.Now()
			for _, p := range w.cur.Load().Pauses {
				if !p.Until.IsZero() && p.Until.After(now) {
					next = min(next, p.Until.Sub(now)+10*time.Millisecond)
				}
			}
			timer.Reset(next)
		}
		rearm()
		for {
			select {
			case e, ok := <-kw.Updates():
				if !ok {
					return
				}
				if e != nil {
					apply(e)
					publish()
					rearm()
				}
			case <-timer.C:
				publish()
				rearm()
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

// Wait waits for the watching goroutine to end (after ctx of Start ended).
func (w *Watcher) Wait() { w.wg.Wait() }

// Open opens the controls bucket, creating it (one replica, file storage) when no worker
// has yet.
func Open(ctx context.Context, js jetstream.JetStream, bucket string) (Store, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1, Storage: jetstream.FileStorage})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return Store{}, fmt.Errorf("KV bucket %s: %w", bucket, err)
	}
	return Store{KV: kv}, nil
}
