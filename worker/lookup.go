package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

// Record is what the dedup bucket holds for a request id, for people (the dashboard's
// lookup): either a job in flight with its failed attempts so far, or an accepted job's
// stored result.
type Record struct {
	State      string               `json:"state"` // "inflight" or "done"
	JobSeq     uint64               `json:"job_seq"`
	Failures   int                  `json:"failures"`
	LastAnswer *jobs.UpstreamAnswer `json:"last_answer,omitempty"`
	LastError  *jobs.Error          `json:"last_error,omitempty"`
	Result     json.RawMessage      `json:"result,omitempty"` // a jobs.Result, as published
	Updated    time.Time            `json:"updated"`
}

// LookupRecord reads the dedup record of a request id from the dedup bucket kv. It returns
// jetstream.ErrKeyNotFound when there is none (rejected, failed and expired jobs leave
// none, and records expire after PUSH_DEDUP_TTL).
func LookupRecord(ctx context.Context, kv jetstream.KeyValue, requestID string) (*Record, error) {
	e, err := kv.Get(ctx, dedupKey(requestID))
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, err
	}
	return &Record{State: rec.State, JobSeq: rec.Seq, Failures: rec.Failures, LastAnswer: rec.Last, LastError: rec.LastErr, Result: rec.Result, Updated: rec.Updated}, nil
}
