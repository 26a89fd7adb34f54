package jobs

import (
	"encoding/json"
	"strconv"
	"time"
)

// AppendJSON appends r encoded exactly as json.Marshal encodes it, without reflection: the
// worker encodes one result per job.
func (r *Result) AppendJSON(b []byte) []byte {
	b = append(b, `{"request_id":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"type":`...)
	b = appendString(b, r.Type)
	b = append(b, `,"app":`...)
	b = appendString(b, r.App)
	b = append(b, `,"status":`...)
	b = appendString(b, string(r.Status))
	if r.PacketID != "" {
		b = append(b, `,"packet_id":`...)
		b = appendString(b, r.PacketID)
	}
	if len(r.PacketIDs) > 0 {
		b = append(b, `,"packet_ids":`...)
		b = appendStrings(b, r.PacketIDs)
	}
	if len(r.FailTopicIDs) > 0 {
		b = append(b, `,"fail_topic_ids":`...)
		b = appendStrings(b, r.FailTopicIDs)
	}
	if r.TaskID != nil {
		b = append(b, `,"task_id":`...)
		b = strconv.AppendInt(b, *r.TaskID, 10)
	}
	if len(r.TaskIDs) > 0 {
		b = append(b, `,"task_ids":[`...)
		for i, id := range r.TaskIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, id, 10)
		}
		b = append(b, ']')
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, `,"duplicate":`...)
	b = strconv.AppendBool(b, r.Duplicate)
	if u := r.Upstream; u != nil {
		b = append(b, `,"upstream":{"http_status":`...)
		b = strconv.AppendInt(b, int64(u.HTTPStatus), 10)
		if u.Code != 0 {
			b = append(b, `,"code":`...)
			b = strconv.AppendInt(b, int64(u.Code), 10)
		}
		if u.Message != "" {
			b = append(b, `,"message":`...)
			b = appendString(b, u.Message)
		}
		b = append(b, '}')
	}
	if e := r.Error; e != nil {
		b = append(b, `,"error":{"kind":`...)
		b = appendString(b, string(e.Kind))
		b = append(b, `,"detail":`...)
		b = appendString(b, e.Detail)
		b = append(b, '}')
	}
	b = append(b, `,"job_seq":`...)
	b = strconv.AppendUint(b, r.JobSeq, 10)
	b = append(b, `,"enqueued_at":`...)
	b = appendTime(b, r.EnqueuedAt)
	b = append(b, `,"completed_at":`...)
	b = appendTime(b, r.CompletedAt)
	if r.DueAt != nil {
		b = append(b, `,"due_at":`...)
		b = appendTime(b, *r.DueAt)
	}
	if r.SentAt != nil {
		b = append(b, `,"sent_at":`...)
		b = appendTime(b, *r.SentAt)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string the way encoding/json writes it: plain printable
// ASCII directly, anything else (escapes, HTML characters, UTF-8) through json.Marshal.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendStrings(b []byte, l []string) []byte {
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

func appendTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		q, _ := json.Marshal(t) // an error for such years, as json.Marshal gives
		return append(b, q...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
