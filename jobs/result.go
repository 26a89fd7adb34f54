package jobs

import (
	"encoding/json"
	"time"
)

// Status is the outcome of a job as published in its result (contract §5).
type Status string

// Result statuses.
const (
	StatusSent     Status = "sent"
	StatusPartial  Status = "partial"
	StatusRejected Status = "rejected"
	StatusFailed   Status = "failed"
	StatusExpired  Status = "expired"
	// StatusCancelled: an operator cancelled the job before it was sent (README "Campaigns").
	StatusCancelled Status = "cancelled"
)

// ErrorKind names why a job did not end as sent.
type ErrorKind string

// Error kinds of a result's error (contract §5).
const (
	KindInvalidJob          ErrorKind = "invalid_job"
	KindUnknownType         ErrorKind = "unknown_type"
	KindUnknownApp          ErrorKind = "unknown_app"
	KindCredentialsInJob    ErrorKind = "credentials_in_job"
	KindTooLarge            ErrorKind = "too_large"
	KindUpstreamRejected    ErrorKind = "upstream_rejected"
	KindUpstreamUnavailable ErrorKind = "upstream_unavailable"
	KindExpired             ErrorKind = "expired"
	KindCancelled           ErrorKind = "cancelled"
)

// Error is a result's error: a kind from the list above and a human-readable detail that
// names the field or cause. It is also the error type the decoder returns.
type Error struct {
	Kind   ErrorKind `json:"kind"`
	Detail string    `json:"detail"`
}

func (e *Error) Error() string { return string(e.Kind) + ": " + e.Detail }

// Errorf returns an *Error of kind k.
func Errorf(k ErrorKind, detail string) *Error { return &Error{Kind: k, Detail: detail} }

// UpstreamAnswer is the last answer of the upstream: HTTP status and the body's code and message.
type UpstreamAnswer struct {
	HTTPStatus int    `json:"http_status"`
	Code       int    `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
}

// Result is the one message published for every job taken off the stream.
type Result struct {
	RequestID    string          `json:"request_id"`
	Type         string          `json:"type"`
	App          string          `json:"app"`
	Status       Status          `json:"status"`
	PacketID     string          `json:"packet_id,omitempty"`
	PacketIDs    []string        `json:"packet_ids,omitempty"`
	FailTopicIDs []string        `json:"fail_topic_ids,omitempty"`
	TaskID       *int64          `json:"task_id,omitempty"`
	TaskIDs      []int64         `json:"task_ids,omitempty"`
	Attempts     int             `json:"attempts"`
	Duplicate    bool            `json:"duplicate"`
	Upstream     *UpstreamAnswer `json:"upstream,omitempty"`
	Error        *Error          `json:"error,omitempty"`
	JobSeq       uint64          `json:"job_seq"`
	EnqueuedAt   time.Time       `json:"enqueued_at"`
	CompletedAt  time.Time       `json:"completed_at"`
	// DueAt is a scheduled job's not_before; SentAt when its (last) upstream call was made.
	DueAt  *time.Time `json:"due_at,omitempty"`
	SentAt *time.Time `json:"sent_at,omitempty"`
}

// DLQEntry is what a rejected or failed job leaves on <prefix>.dlq.<type>.
type DLQEntry struct {
	Subject string          `json:"subject"`
	Data    []byte          `json:"data"` // original job bytes; base64 in JSON
	Job     json.RawMessage `json:"job,omitempty"`
	Result  Result          `json:"result"`
	// Omitted says what was left out of an entry that would not fit in one NATS message
	// (a job of more than about 40 % of max_payload): first job, then data as well.
	Omitted string `json:"omitted,omitempty"`
}

// NotifyStats is one change of a notify task's delivery stats, published on
// <prefix>.results.notify_stats.
type NotifyStats struct {
	TaskID    int64                   `json:"task_id"`
	RequestID string                  `json:"request_id"`
	App       string                  `json:"app,omitempty"`
	Channels  map[string]ChannelStats `json:"channels"`
	At        time.Time               `json:"at"`
}

// ChannelStats are one channel's counters of a notify task.
type ChannelStats struct {
	Target   int64 `json:"target"`
	Sent     int64 `json:"sent"`
	Received int64 `json:"received"`
}

// Header names set on results and DLQ entries.
const (
	HeaderRequestID = "Push-Request-Id"
	HeaderStatus    = "Push-Status"
)
