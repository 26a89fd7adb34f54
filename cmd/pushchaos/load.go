package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

// jobTypes are the eight job types, in the order the generator picks from.
var jobTypes = []jobs.Type{jobs.P2P, jobs.P2PMore, jobs.P2T, jobs.P2TMore, jobs.UCS, jobs.UCSMultiMsg, jobs.UCSMultiTopic, jobs.Notify}

// jobKind says what a job of the soak is meant to test.
type jobKind int

const (
	kindValid    jobKind = iota // a valid job: its result is sent (or failed, if faults outlast its attempts)
	kindInvalid                 // an unknown payload field: rejected at once, never sent upstream
	kindExpiring                // not_after 1.5 s after it is published: sent or expired
)

// Shares of the load (the rest is valid jobs).
const (
	invalidShare  = 0.01
	expiringShare = 0.01
	copyShare     = 0.02 // published again under another Nats-Msg-Id: a second stream message
	replayShare   = 0.02 // published again under the same Nats-Msg-Id: deduplicated on publish
	expiringAfter = 1500 * time.Millisecond
	publishFor    = 90 * time.Second // how long a publish is retried before it counts as ambiguous
)

// pubJob is everything the soak did with one request id.
type pubJob struct {
	ID       string
	Type     jobs.Type
	Kind     jobKind
	Seqs     []uint64 // the stream messages published under this request id
	Copy     bool     // a deliberate second stream message was asked for
	Replay   bool     // a deliberate same-Nats-Msg-Id publish was asked for
	ReplayOK bool     // ... and JetStream answered it as a duplicate of the first message
	// Ambiguous is set when a publish was not acknowledged within publishFor: the job may
	// or may not be in the stream, so a result under an unknown sequence is no violation.
	Ambiguous bool
}

// ledger is what the soak published.
type ledger struct {
	mu   sync.Mutex
	jobs map[string]*pubJob
	n    int // publishes acknowledged
}

func newLedger() *ledger { return &ledger{jobs: map[string]*pubJob{}} }

func (l *ledger) published() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// snapshot copies the ledger.
func (l *ledger) snapshot() map[string]*pubJob {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]*pubJob, len(l.jobs))
	for k, v := range l.jobs {
		c := *v
		c.Seqs = append([]uint64(nil), v.Seqs...)
		out[k] = &c
	}
	return out
}

// genJob makes job i of the soak: its type, kind and data. The request id is also the
// MIMC message text (the first of messages), so the upstream's recorder knows each call's
// job; notify carries it in setting.request_id, which the worker sets.
func genJob(seed uint64, i int, rng *rand.Rand) (id string, t jobs.Type, kind jobKind, data []byte) {
	id = fmt.Sprintf("chaos-%d-%d", seed, i)
	t = jobTypes[rng.IntN(len(jobTypes))]
	switch r := rng.Float64(); {
	case r < invalidShare:
		kind = kindInvalid
	case r < invalidShare+expiringShare:
		kind = kindExpiring
	}
	k := 2 + i%3 // list lengths (weights) of the list types
	topic := func(j int) string { return strconv.FormatInt(9007199254740993+int64((i+j)%50), 10) }
	list := func(f func(int) string) string {
		s := "["
		for j := range k {
			if j > 0 {
				s += ","
			}
			s += f(j)
		}
		return s + "]"
	}
	var payload string
	switch t {
	case jobs.P2P:
		payload = fmt.Sprintf(`"fromAccount":"chaos","toAccount":"u%d","msg":%q`, i%100, id)
	case jobs.P2PMore:
		payload = fmt.Sprintf(`"fromAccount":"chaos","toAccounts":%s,"msg":%q`, list(func(j int) string { return fmt.Sprintf(`"u%d"`, (i+j)%100) }), id)
	case jobs.P2T:
		payload = fmt.Sprintf(`"fromAccount":"chaos","topicId":%s,"msg":%q`, topic(0), id)
	case jobs.P2TMore:
		payload = fmt.Sprintf(`"fromAccount":"chaos","topicIds":%s,"msg":%q`, list(topic), id)
	case jobs.UCS:
		payload = fmt.Sprintf(`"fromAccount":"chaos","topicId":%s,"message":%q`, topic(0), id)
	case jobs.UCSMultiMsg:
		payload = fmt.Sprintf(`"fromAccount":"chaos","topicId":%s,"messages":%s`, topic(0),
			list(func(j int) string {
				if j == 0 {
					return strconv.Quote(id)
				}
				return fmt.Sprintf(`"part %d"`, j+1)
			}))
	case jobs.UCSMultiTopic:
		payload = fmt.Sprintf(`"fromAccount":"chaos","topicIds":%s,"message":%q`, list(topic), id)
	case jobs.Notify:
		payload = fmt.Sprintf(`"audience":{"alias":["u%d"]},"message":{"type":"text","title":"chaos","body":"job %d"}`, i%100, i)
	}
	if kind == kindInvalid {
		payload += `,"chaosInvalid":true`
	}
	envelope := fmt.Sprintf(`{"request_id":%q,`, id)
	if kind == kindExpiring {
		envelope += fmt.Sprintf(`"not_after":%q,`, time.Now().Add(expiringAfter).UTC().Format(time.RFC3339Nano))
	}
	return id, t, kind, []byte(envelope + `"payload":{` + payload + `}}`)
}

// loader publishes the soak's jobs at a steady rate.
type loader struct {
	js     jetstream.JetStream
	seed   uint64
	rate   float64
	led    *ledger
	tasks  chan pubTask
	firsts sync.WaitGroup // first publishes not yet done (they queue the follow-ups)
	later  sync.WaitGroup // follow-up publishes (copies, replays) not yet queued
	errors int
	emu    sync.Mutex
}

// pubTask is one publish.
type pubTask struct {
	job    *pubJob
	data   []byte
	msgID  string
	follow string // "": the first publish; "copy" or "replay"
	delay  time.Duration
}

// run publishes jobs for d and then waits for every publish, follow-ups included.
func (l *loader) run(ctx context.Context, d time.Duration, rng *rand.Rand) {
	l.tasks = make(chan pubTask, 4096)
	var pubs sync.WaitGroup
	for range 16 {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for t := range l.tasks {
				l.publish(ctx, t)
				if t.follow == "" {
					l.firsts.Done()
				}
			}
		}()
	}
	start := time.Now()
	n := int(l.rate * d.Seconds())
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if wait := time.Until(start.Add(time.Duration(float64(i) / l.rate * float64(time.Second)))); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		id, t, kind, data := genJob(l.seed, i, rng)
		j := &pubJob{ID: id, Type: t, Kind: kind, Copy: rng.Float64() < copyShare, Replay: rng.Float64() < replayShare}
		delay := time.Duration(200+rng.IntN(4800)) * time.Millisecond
		l.led.mu.Lock()
		l.led.jobs[id] = j
		l.led.mu.Unlock()
		l.firsts.Add(1)
		l.tasks <- pubTask{job: j, data: data, msgID: id, delay: delay}
	}
	// Follow-ups are queued by the publishers of the first publishes: wait for those, then
	// until no follow-up is left to queue.
	l.firsts.Wait()
	l.later.Wait()
	close(l.tasks)
	pubs.Wait()
}

func (l *loader) publish(ctx context.Context, t pubTask) {
	m := nats.NewMsg("push.jobs." + string(t.job.Type))
	m.Data = t.data
	m.Header.Set(nats.MsgIdHdr, t.msgID)
	first := time.Now()
	var ack *jetstream.PubAck
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		ack, err = l.js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			break
		}
		l.emu.Lock()
		l.errors++
		l.emu.Unlock()
		if ctx.Err() != nil || time.Since(first) > publishFor {
			l.led.mu.Lock()
			t.job.Ambiguous = true
			l.led.mu.Unlock()
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	l.led.mu.Lock()
	defer l.led.mu.Unlock()
	l.led.n++
	switch {
	case t.follow == "replay" && ack.Duplicate && len(t.job.Seqs) > 0 && ack.Sequence == t.job.Seqs[0]:
		t.job.ReplayOK = true
	case !ack.Duplicate || !contains(t.job.Seqs, ack.Sequence):
		// A new stream message (a first publish retried after a timeout answers Duplicate
		// with the sequence it was stored under).
		t.job.Seqs = append(t.job.Seqs, ack.Sequence)
	}
	if t.follow != "" {
		return
	}
	queue := func(kind, msgID string) {
		l.later.Add(1)
		time.AfterFunc(t.delay, func() {
			defer l.later.Done()
			l.tasks <- pubTask{job: t.job, data: t.data, msgID: msgID, follow: kind}
		})
	}
	if t.job.Copy {
		queue("copy", t.msgID+"/copy")
	}
	if t.job.Replay {
		queue("replay", t.msgID)
	}
}

func contains(s []uint64, v uint64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
