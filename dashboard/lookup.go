package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/dlq"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/worker"
)

// Bounds of a lookup: it reads the headers of at most this many of the newest messages of
// the results and DLQ streams, and shows at most lookupMatches of each.
const (
	lookupResultsWindow = 20000
	lookupDLQWindow     = 5000
	lookupMatches       = 10
)

// storedMsg is a message found in a stream.
type storedMsg struct {
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"time"`
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
}

// lookupView is what the dashboard knows of one request id.
type lookupView struct {
	RequestID string         `json:"request_id"`
	Found     bool           `json:"found"`
	Recent    []kept         `json:"recent"`           // in the recent sample
	Record    *worker.Record `json:"record,omitempty"` // its dedup record
	Results   []storedMsg    `json:"results"`          // in PUSH_RESULTS, newest first
	DLQ       []dlqRow       `json:"dlq"`              // in PUSH_DLQ, newest first
	Searched  searched       `json:"searched"`
	Errors    []string       `json:"errors,omitempty"`
}

// searched says how far back a lookup looked.
type searched struct {
	Results int `json:"results"` // newest result messages whose headers were read
	DLQ     int `json:"dlq"`
}

// lookup finds a request id: in the recent sample, in the dedup bucket (jobs in flight
// with their failures so far, accepted jobs with their result), and among the newest
// messages of the results and DLQ streams, reading headers only.
func (d *Dashboard) lookup(_ http.ResponseWriter, r *http.Request) (any, error) {
	id := r.URL.Query().Get("request_id")
	if id == "" || len(id) > 128 {
		return nil, badRequest("request_id must be 1 to 128 characters")
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	v := lookupView{RequestID: id, Recent: d.results.recent(resultFilter{requestID: id}, lookupMatches), Results: []storedMsg{}, DLQ: []dlqRow{}}
	fail := func(what string, err error) { v.Errors = append(v.Errors, what+": "+err.Error()) }

	if kv, err := d.js.KeyValue(ctx, d.n.DedupBucket()); err != nil {
		fail("dedup bucket", err)
	} else if rec, err := worker.LookupRecord(ctx, kv, id); err == nil {
		v.Record = rec
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		fail("dedup record", err)
	}

	found, n, err := d.findByRequestID(ctx, d.n.ResultsStream(), d.n.Subject+".results.>", id, d.lookupWindows[0])
	v.Searched.Results = n
	if err != nil {
		fail("results stream", err)
	}
	for _, m := range found {
		if m.Subject != d.n.NotifyStatsSubject() {
			v.Results = append(v.Results, storedMsg{Seq: m.Sequence, Time: m.Time, Subject: m.Subject, Data: m.Data})
		}
	}
	found, n, err = d.findByRequestID(ctx, d.n.DLQStream(), d.n.Subject+".dlq.>", id, d.lookupWindows[1])
	v.Searched.DLQ = n
	if err != nil {
		fail("DLQ stream", err)
	}
	for _, m := range found {
		e := dlq.Decode(m.Sequence, m.Time, m.Subject, m.Data)
		v.DLQ = append(v.DLQ, rowOf(&e))
	}
	v.Found = len(v.Recent) > 0 || v.Record != nil || len(v.Results) > 0 || len(v.DLQ) > 0
	return v, nil
}

// findByRequestID returns the newest messages (at most lookupMatches, newest first) among
// the newest window messages of a stream on filter whose Push-Request-Id header is id. It
// reads headers only, then each match.
func (d *Dashboard) findByRequestID(ctx context.Context, stream, filter, id string, window int) ([]*jetstream.RawStreamMsg, int, error) {
	st, err := d.js.Stream(ctx, stream)
	if err != nil {
		return nil, 0, err
	}
	last := st.CachedInfo().State.LastSeq
	if last == 0 {
		return nil, 0, nil
	}
	from := uint64(1)
	if last > uint64(window) {
		from = last - uint64(window) + 1
	}
	var seqs []uint64
	n, err := broker.ScanRange(ctx, st, []string{filter}, from, last, true, func(m jetstream.Msg) bool {
		if m.Headers().Get(jobs.HeaderRequestID) == id {
			if meta, err := m.Metadata(); err == nil {
				seqs = append(seqs, meta.Sequence.Stream)
			}
		}
		return true
	})
	if err != nil {
		return nil, n, err
	}
	slices.Reverse(seqs)
	var out []*jetstream.RawStreamMsg
	for _, seq := range seqs[:min(len(seqs), lookupMatches)] {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted meanwhile (a replayed DLQ entry)
		}
		out = append(out, m)
	}
	return out, n, nil
}
