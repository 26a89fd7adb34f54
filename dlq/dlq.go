// Package dlq reads and replays the dead-letter stream (PUSH_DLQ): what pushctl dlq and the
// dashboard share, so that a replay from either goes through the same code.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/jobs"
)

// apiTimeout bounds one JetStream API round trip.
const apiTimeout = 10 * time.Second

// Entry is one stored message of the DLQ stream.
type Entry struct {
	Seq     uint64
	Time    time.Time
	Subject string // the DLQ subject
	Entry   jobs.DLQEntry
	Err     error // the data is not a DLQ entry
}

// Decode reads a DLQ message.
func Decode(seq uint64, t time.Time, subject string, data []byte) Entry {
	e := Entry{Seq: seq, Time: t, Subject: subject}
	e.Err = json.Unmarshal(data, &e.Entry)
	return e
}

// Type is the job type of an entry: its result's, else the DLQ subject's last token.
func (e *Entry) Type() string {
	if e.Entry.Result.Type != "" {
		return e.Entry.Result.Type
	}
	return e.Subject[strings.LastIndexByte(e.Subject, '.')+1:]
}

// Filter selects DLQ entries. The zero Filter selects every entry.
type Filter struct {
	Type      string    // job type (the DLQ subject's last token)
	Kind      string    // the result's error kind
	RequestID string    // the result's request id
	Since     time.Time // stored at or after
}

// Subject is the DLQ subject filter of f.
func (f *Filter) Subject(n broker.Names) string {
	if f.Type != "" {
		return n.DLQSubject(f.Type)
	}
	return n.Subject + ".dlq.>"
}

// Match reports whether a decoded entry has f's error kind and request id.
func (f *Filter) Match(e *jobs.DLQEntry) bool {
	if f.Kind != "" && (e.Result.Error == nil || string(e.Result.Error.Kind) != f.Kind) {
		return false
	}
	return f.RequestID == "" || e.Result.RequestID == f.RequestID
}

// Shown is an entry for people: the original job bytes decoded (as JSON when they are
// JSON, else as text, else as base64).
type Shown struct {
	Seq        uint64          `json:"seq"`
	Time       time.Time       `json:"time"`
	DLQSubject string          `json:"dlq_subject"`
	Subject    string          `json:"subject"`
	Data       json.RawMessage `json:"data,omitempty"`
	DataText   string          `json:"data_text,omitempty"`
	DataBase64 []byte          `json:"data_base64,omitempty"`
	Omitted    string          `json:"omitted,omitempty"`
	Result     jobs.Result     `json:"result"`
}

// Show returns e for people.
func Show(e *Entry) Shown {
	s := Shown{Seq: e.Seq, Time: e.Time.UTC(), DLQSubject: e.Subject, Subject: e.Entry.Subject, Omitted: e.Entry.Omitted, Result: e.Entry.Result}
	switch data := e.Entry.Data; {
	case len(data) == 0:
	case json.Valid(data):
		s.Data = data
	case utf8.Valid(data):
		s.DataText = string(data)
	default:
		s.DataBase64 = data
	}
	return s
}

// Plan is what a replay of an entry publishes.
type Plan struct {
	Seq       uint64 // the DLQ entry
	Subject   string // the original job subject
	Data      []byte // the original job bytes
	RequestID string // set as the Push-Request-Id header; empty when the job had none
	// IDNote says which request id the replayed job gets, for people.
	IDNote string
}

// PlanReplay checks that an entry can be replayed and returns what the replay publishes.
// It refuses entries that are not DLQ entries, whose subject is not a job subject, whose
// job data was left out, and those of jobs that carried credentials (held redacted, they
// would be rejected again).
func PlanReplay(n broker.Names, e *Entry) (Plan, error) {
	if e.Err != nil {
		return Plan{}, fmt.Errorf("DLQ entry %d is not a DLQ entry: %v", e.Seq, e.Err)
	}
	d := &e.Entry
	jobPrefix := n.Subject + ".jobs."
	if !strings.HasPrefix(d.Subject, jobPrefix) || len(d.Subject) == len(jobPrefix) || strings.ContainsAny(d.Subject, "*> ") {
		return Plan{}, fmt.Errorf("DLQ entry %d: subject %q is not a job subject under %s", e.Seq, d.Subject, jobPrefix)
	}
	if len(d.Data) == 0 {
		if d.Omitted != "" {
			return Plan{}, fmt.Errorf("DLQ entry %d has no job data (omitted %s): send the job again from its producer", e.Seq, d.Omitted)
		}
		return Plan{}, fmt.Errorf("DLQ entry %d has no job data", e.Seq)
	}
	if d.Result.Error != nil && d.Result.Error.Kind == jobs.KindCredentialsInJob {
		return Plan{}, fmt.Errorf("DLQ entry %d: the job carried credentials, which the DLQ holds redacted; it would be rejected again: fix the producer and send it anew", e.Seq)
	}
	p := Plan{Seq: e.Seq, Subject: d.Subject, Data: d.Data, RequestID: d.Result.RequestID, IDNote: "request id " + d.Result.RequestID}
	// Keep the job's request id even when it came from a header of the original message
	// (not from its bytes); an id made from the old stream sequence means "none".
	if p.RequestID == "" || p.RequestID == fmt.Sprintf("seq-%d", d.Result.JobSeq) {
		p.RequestID, p.IDNote = "", "no request id: the worker gives it seq-<new stream sequence>"
	}
	return p, nil
}

// NotDeletedError reports a replayed entry that could not be deleted from the DLQ.
type NotDeletedError struct {
	Seq uint64
	Err error
}

func (e *NotDeletedError) Error() string {
	return fmt.Sprintf("DLQ entry %d was replayed but could not be deleted (delete it with nats stream rmm, or it is replayed again): %v", e.Seq, e.Err)
}

// Unwrap returns the cause.
func (e *NotDeletedError) Unwrap() error { return e.Err }

// Replay publishes an entry's original bytes to its original subject, waits for the jobs
// stream's ack and only then deletes the entry from the DLQ stream dlqStream. No
// Nats-Msg-Id is set: the jobs stream's duplicate window would drop a replay of a job
// published minutes ago. A replay whose entry could not be deleted returns the ack and a
// *NotDeletedError.
func Replay(ctx context.Context, js jetstream.JetStream, dlqStream jetstream.Stream, n broker.Names, e *Entry) (Plan, *jetstream.PubAck, error) {
	p, err := PlanReplay(n, e)
	if err != nil {
		return p, nil, err
	}
	m := nats.NewMsg(p.Subject)
	m.Data = p.Data
	if p.RequestID != "" {
		m.Header.Set(jobs.HeaderRequestID, p.RequestID)
	}
	pctx, cancel := context.WithTimeout(ctx, apiTimeout)
	ack, err := js.PublishMsg(pctx, m)
	cancel()
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = fmt.Errorf("stream %s not found: is pushworker running with PUSH_MANAGE_STREAMS=true?", n.JobsStream())
		}
		return p, nil, fmt.Errorf("DLQ entry %d not replayed: %w", e.Seq, err)
	}
	dctx, cancel := context.WithTimeout(ctx, apiTimeout)
	err = dlqStream.DeleteMsg(dctx, e.Seq)
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return p, ack, &NotDeletedError{Seq: e.Seq, Err: err}
	}
	return p, ack, nil
}

// Page is a page of DLQ entries, newest first.
type Page struct {
	Entries []Entry
	// Scanned is how many messages were read to fill it.
	Scanned int
	// More is set when older entries may match too (read them with before set to the
	// last entry's sequence).
	More bool
}

// Newest returns up to limit entries matching f with sequences below before (0: from the
// newest), newest first. It reads the stream backwards in growing windows and at most
// maxScan messages, so a large DLQ costs no more than a small one; an entry that is not
// a DLQ entry matches unless f has a kind or request id.
func Newest(ctx context.Context, st jetstream.Stream, n broker.Names, f Filter, before uint64, limit, maxScan int) (Page, error) {
	var p Page
	ictx, cancel := context.WithTimeout(ctx, apiTimeout)
	info, err := st.Info(ictx)
	cancel()
	if err != nil {
		return p, err
	}
	first, end := info.State.FirstSeq, info.State.LastSeq
	if before > 0 {
		end = min(end, before-1)
	}
	limit, maxScan = max(limit, 1), max(maxScan, limit)
	window := uint64(max(2*limit, 64))
	subject := f.Subject(n)
	exhausted := false // no older entry can match
	for len(p.Entries) < limit && p.Scanned < maxScan {
		if end == 0 || end < first {
			exhausted = true
			break
		}
		window = min(window, uint64(maxScan-p.Scanned))
		start := first
		if end-first+1 > window {
			start = end - window + 1
		}
		var found []Entry
		tooOld := false
		sctx, cancel := context.WithTimeout(ctx, apiTimeout)
		scanned, err := broker.ScanRange(sctx, st, []string{subject}, start, end, false, func(m jetstream.Msg) bool {
			meta, err := m.Metadata()
			if err != nil {
				return true
			}
			if !f.Since.IsZero() && meta.Timestamp.Before(f.Since) {
				tooOld = true
				return true
			}
			e := Decode(meta.Sequence.Stream, meta.Timestamp, m.Subject(), m.Data())
			if e.Err == nil && !f.Match(&e.Entry) || e.Err != nil && (f.Kind != "" || f.RequestID != "") {
				return true
			}
			found = append(found, e)
			return true
		})
		cancel()
		p.Scanned += scanned
		if err != nil {
			return p, err
		}
		slices.Reverse(found)
		p.Entries = append(p.Entries, found...)
		if tooOld || start == first {
			exhausted = true
			break
		}
		end, window = start-1, window*4
	}
	p.More = !exhausted
	if len(p.Entries) > limit {
		p.Entries, p.More = p.Entries[:limit], true
	}
	return p, nil
}
