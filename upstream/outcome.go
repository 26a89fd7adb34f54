// Package upstream talks to the push APIs: the MIMC and notify HTTP clients, the breakers
// that guard them, and Classify, the one place that turns an HTTP answer into an Outcome.
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pushworker/pushworker/jobs"
)

// Kind is what an upstream answer means for the job.
type Kind int

// Outcome kinds.
const (
	Sent          Kind = iota // accepted
	Partial                   // accepted in part (ucs_multi_topic failTopicIds, split notify)
	Retryable                 // try again later; counts against the attempts
	Permanent                 // the request itself is wrong; retrying cannot fix it
	Configuration             // the worker's configuration is wrong for this app: pause the app's upstream
)

func (k Kind) String() string {
	switch k {
	case Sent:
		return "sent"
	case Partial:
		return "partial"
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case Configuration:
		return "configuration"
	}
	return "unknown"
}

// Outcome is the classified result of one upstream call.
type Outcome struct {
	Kind Kind
	// Answer is the upstream's answer; nil when there was none (network error, timeout).
	Answer *jobs.UpstreamAnswer
	// RateLimited is set for HTTP 429 and rate-limit answers: the limiter backs off.
	RateLimited bool
	// Err says why the call did not succeed (nil for Sent).
	Err *jobs.Error

	PacketID     string
	PacketIDs    []string
	FailTopicIDs []string
	TaskID       *int64
	// Data is the raw data field of a successful answer (request/reply API).
	Data json.RawMessage
}

// Accepted reports whether the upstream took the request (fully or in part).
func (o Outcome) Accepted() bool { return o.Kind == Sent || o.Kind == Partial }

// notify codes of contract §10.
var notifyCodes = map[int]Kind{
	10002: Permanent, 12002: Permanent, 12005: Permanent,
	10003: Configuration, 10008: Configuration, 10010: Configuration, 12006: Configuration,
	30021: Configuration, 30022: Configuration, 30023: Configuration, 40000: Configuration,
	12001: Retryable, 12003: Retryable, 12004: Retryable, 20000: Retryable,
}

// answer is the common envelope of both upstreams' answers.
type answer struct {
	Code    *json.Number    `json:"code"`
	Message *string         `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// Classify decides the outcome of one upstream call from the transport error, the HTTP
// status and the body: HTTP status first, then the body's code (contract §10). It is the
// only place that knows which answers are retryable.
func Classify(upstream string, shape jobs.Shape, err error, status int, body []byte) Outcome {
	if err != nil {
		detail := "upstream call failed: " + err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			detail = "upstream call timed out"
		}
		return Outcome{Kind: Retryable, Err: jobs.Errorf(jobs.KindUpstreamUnavailable, detail)}
	}
	ans := &jobs.UpstreamAnswer{HTTPStatus: status}
	var a answer
	parsed := json.Unmarshal(body, &a) == nil && a.Code != nil
	if parsed {
		if c, err := strconv.Atoi(a.Code.String()); err == nil {
			ans.Code = c
		}
		if a.Message != nil {
			ans.Message = *a.Message
		}
	}
	o := Outcome{Answer: ans}
	fail := func(k Kind, ek jobs.ErrorKind, detail string) Outcome {
		o.Kind, o.Err = k, jobs.Errorf(ek, detail)
		return o
	}
	switch {
	case status == 429 || (status == 200 && parsed && (ans.Code == 429 || rateExceeded(ans.Message))):
		o.RateLimited = true
		return fail(Retryable, jobs.KindUpstreamUnavailable, "upstream rate limit exceeded"+describe(upstream, ans))
	case status == 401 || status == 403:
		return fail(Configuration, jobs.KindUpstreamUnavailable, "upstream refused the app's credentials"+describe(upstream, ans))
	case status == 408 || status >= 500:
		return fail(Retryable, jobs.KindUpstreamUnavailable, "upstream unavailable"+describe(upstream, ans))
	case status >= 400:
		return fail(Permanent, jobs.KindUpstreamRejected, "upstream rejected the request"+describe(upstream, ans))
	case status < 200 || status > 299:
		return fail(Retryable, jobs.KindUpstreamUnavailable, "unexpected upstream answer"+describe(upstream, ans))
	case !parsed:
		return fail(Retryable, jobs.KindUpstreamUnavailable, fmt.Sprintf("malformed %s answer (HTTP %d): %s", upstream, status, snippet(body)))
	case ans.Code != 200:
		k, known := Retryable, false
		if upstream == jobs.UpstreamNotify {
			k, known = notifyCodes[ans.Code]
		}
		switch {
		case k == Permanent:
			return fail(k, jobs.KindUpstreamRejected, "upstream rejected the request"+describe(upstream, ans))
		case k == Configuration:
			return fail(k, jobs.KindUpstreamUnavailable, "upstream says the app's configuration is wrong"+describe(upstream, ans))
		case known:
			return fail(Retryable, jobs.KindUpstreamUnavailable, "upstream failed"+describe(upstream, ans))
		default:
			return fail(Retryable, jobs.KindUpstreamUnavailable, "upstream answered an unknown code"+describe(upstream, ans))
		}
	}
	o.Kind = Sent
	o.Data = a.Data
	parseData(&o, shape, a.Data)
	return o
}

func describe(upstream string, a *jobs.UpstreamAnswer) string {
	s := fmt.Sprintf(" (%s HTTP %d", upstream, a.HTTPStatus)
	if a.Code != 0 {
		s += fmt.Sprintf(", code %d", a.Code)
	}
	if a.Message != "" {
		s += ": " + a.Message
	}
	return s + ")"
}

func rateExceeded(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "rate") && (strings.Contains(m, "exceed") || strings.Contains(m, "limit")) ||
		strings.Contains(m, "too many requests") || strings.Contains(msg, "限流") || strings.Contains(msg, "频率")
}

func snippet(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// parseData reads the ids of a successful answer. Missing ids do not make an accepted
// request fail: the result then simply has none.
func parseData(o *Outcome, shape jobs.Shape, data json.RawMessage) {
	if len(data) == 0 || data[0] != '{' {
		return
	}
	var d struct {
		PacketID      json.RawMessage   `json:"packetId"`
		PacketIDs     []json.RawMessage `json:"packetIds"`
		SuccPacketIDs []json.RawMessage `json:"succPacketIds"`
		FailTopicIDs  []json.RawMessage `json:"failTopicIds"`
		TaskID        *json.Number      `json:"task_id"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if dec.Decode(&d) != nil {
		return
	}
	o.PacketID = idString(d.PacketID)
	o.PacketIDs = idStrings(d.PacketIDs)
	if shape == jobs.ShapeMultiTopic {
		o.PacketIDs = idStrings(d.SuccPacketIDs)
		o.FailTopicIDs = idStrings(d.FailTopicIDs)
		if len(o.FailTopicIDs) > 0 {
			o.Kind = Partial
			o.Err = jobs.Errorf(jobs.KindUpstreamRejected, fmt.Sprintf("upstream could not push to %d of the topics (fail_topic_ids)", len(o.FailTopicIDs)))
			if len(o.PacketIDs) == 0 {
				o.Kind = Permanent
				o.Err.Detail = "upstream could not push to any of the topics (fail_topic_ids)"
			}
		}
	}
	if d.TaskID != nil {
		if v, err := d.TaskID.Int64(); err == nil {
			o.TaskID = &v
		}
	}
}

// idString turns a JSON string or number into its text.
func idString(r json.RawMessage) string {
	if len(r) == 0 || string(r) == "null" {
		return ""
	}
	if r[0] == '"' {
		var s string
		if json.Unmarshal(r, &s) == nil {
			return s
		}
		return ""
	}
	return string(r)
}

func idStrings(rs []json.RawMessage) []string {
	if len(rs) == 0 {
		return nil
	}
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		if s := idString(r); s != "" {
			out = append(out, s)
		}
	}
	return out
}
