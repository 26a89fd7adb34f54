// Package upstream talks to the push APIs: the MIMC and notify HTTP clients, the breakers
// that guard them, and Classify, the one place that turns an HTTP answer into an Outcome.
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pushworker/pushworker/internal/jsonobj"
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

// answer is the common envelope of both upstreams' answers, read in one pass. Names match
// case-insensitively, as encoding/json would.
type answer struct {
	code    int
	message *string
	data    []byte // aliases the body
}

var errMalformed = errors.New("malformed answer")

// readAnswer reads body; ok is false when it is not a JSON object with a numeric code.
func readAnswer(body []byte) (a answer, ok bool) {
	hasCode := false
	err := jsonobj.Each(body, func(name string, v []byte) error {
		switch {
		case strings.EqualFold(name, "code"):
			if string(v) == "null" {
				return nil
			}
			n, ok := number(v)
			if !ok {
				return errMalformed
			}
			a.code, hasCode = 0, true
			if c, err := strconv.Atoi(n); err == nil {
				a.code = c
			}
		case strings.EqualFold(name, "message"):
			m, err := jsonobj.OptString(name, v)
			if err != nil {
				return err
			}
			a.message = m
		case strings.EqualFold(name, "data"):
			a.data = v
		}
		return nil
	})
	return a, err == nil && hasCode
}

// number returns the text of a JSON number, or of a string holding one.
func number(v []byte) (string, bool) {
	if len(v) > 0 && v[0] == '"' {
		s := jsonobj.Unquote(v)
		_, err := strconv.ParseFloat(s, 64)
		return s, err == nil
	}
	return string(v), len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9')
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
	a, parsed := readAnswer(body)
	if parsed {
		ans.Code = a.code
		if a.message != nil {
			ans.Message = *a.message
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
	o.Data = a.data
	parseData(&o, shape, a.data)
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
func parseData(o *Outcome, shape jobs.Shape, data []byte) {
	if len(data) == 0 || data[0] != '{' {
		return
	}
	var packetIDs, succ, fail []string
	var taskID []byte
	err := jsonobj.Each(data, func(name string, v []byte) error {
		switch {
		case strings.EqualFold(name, "packetId"):
			o.PacketID = idString(v)
		case strings.EqualFold(name, "packetIds"):
			packetIDs = idList(v)
		case strings.EqualFold(name, "succPacketIds"):
			succ = idList(v)
		case strings.EqualFold(name, "failTopicIds"):
			fail = idList(v)
		case strings.EqualFold(name, "task_id"):
			taskID = v
		}
		return nil
	})
	if err != nil {
		o.PacketID = ""
		return
	}
	o.PacketIDs = packetIDs
	if shape == jobs.ShapeMultiTopic {
		o.PacketIDs = succ
		o.FailTopicIDs = fail
		if len(o.FailTopicIDs) > 0 {
			o.Kind = Partial
			o.Err = jobs.Errorf(jobs.KindUpstreamRejected, fmt.Sprintf("upstream could not push to %d of the topics (fail_topic_ids)", len(o.FailTopicIDs)))
			if len(o.PacketIDs) == 0 {
				o.Kind = Permanent
				o.Err.Detail = "upstream could not push to any of the topics (fail_topic_ids)"
			}
		}
	}
	if n, ok := number(taskID); ok {
		if v, err := strconv.ParseInt(n, 10, 64); err == nil {
			o.TaskID = &v
		}
	}
}

// idList reads a JSON list of ids (strings or numbers).
func idList(v []byte) []string {
	var rs []json.RawMessage
	if json.Unmarshal(v, &rs) != nil {
		return nil
	}
	return idStrings(rs)
}

// idString turns a JSON string or number into its text.
func idString(r []byte) string {
	if len(r) == 0 || string(r) == "null" {
		return ""
	}
	if r[0] == '"' {
		return jsonobj.Unquote(r)
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
