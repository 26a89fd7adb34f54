// Package jobs is the producer-facing description of pushworker jobs: the job envelope and
// the typed payloads, the registry of job types (upstream path, rate class, weight,
// validation), decoding with validation, the result and DLQ formats, and Publish.
package jobs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushworker/pushworker/internal/jsonobj"
)

// Type is a job type: the last token of the subject <prefix>.jobs.<type>.
type Type string

// Job types (contract §3).
const (
	P2P           Type = "p2p"
	P2PMore       Type = "p2p_more"
	P2T           Type = "p2t"
	P2TMore       Type = "p2t_more"
	UCS           Type = "ucs"
	UCSMultiMsg   Type = "ucs_multi_msg"
	UCSMultiTopic Type = "ucs_multi_topic"
	Notify        Type = "notify"
)

// Upstream names.
const (
	UpstreamMIMC   = "mimc"
	UpstreamNotify = "notify"
)

// Shape is the response shape of an upstream call.
type Shape int

// Response shapes.
const (
	ShapePacketID   Shape = iota // data.packetId (or the older data.packetIds)
	ShapePacketIDs               // data.packetIds
	ShapeMultiTopic              // data.succPacketIds + data.failTopicIds
	ShapeNotifyTask              // data.task_id or data: true
)

// Spec describes one job type: everything the worker needs to know about it.
type Spec struct {
	Type     Type
	Upstream string // UpstreamMIMC or UpstreamNotify
	Path     string // upstream path
	Class    string // rate class
	Shape    Shape
	decode   func(in *payloadInput) ([]Call, *Error)
}

// Call is one upstream call of a job: the request body without credentials and its weight
// in rate tokens. MIMC jobs have one call; notify jobs one per audience chunk.
type Call struct {
	Body   []byte
	Weight int
}

var specs = []Spec{
	{Type: P2P, Upstream: UpstreamMIMC, Path: "/api/push/p2p/", Class: "p2p", Shape: ShapePacketID, decode: decodeMIMC},
	{Type: P2PMore, Upstream: UpstreamMIMC, Path: "/api/push/p2p/more", Class: "p2p", Shape: ShapePacketID, decode: decodeMIMC},
	{Type: P2T, Upstream: UpstreamMIMC, Path: "/api/push/p2t/", Class: "p2t", Shape: ShapePacketID, decode: decodeMIMC},
	{Type: P2TMore, Upstream: UpstreamMIMC, Path: "/api/push/p2t/more", Class: "p2t", Shape: ShapePacketID, decode: decodeMIMC},
	{Type: UCS, Upstream: UpstreamMIMC, Path: "/api/push/ucs/singleMsgPush", Class: "ucs", Shape: ShapePacketID, decode: decodeMIMC},
	{Type: UCSMultiMsg, Upstream: UpstreamMIMC, Path: "/api/push/ucs/multiMsgPush", Class: "ucs", Shape: ShapePacketIDs, decode: decodeMIMC},
	{Type: UCSMultiTopic, Upstream: UpstreamMIMC, Path: "/api/push/ucs/multiTopicPush", Class: "ucs", Shape: ShapeMultiTopic, decode: decodeMIMC},
	{Type: Notify, Upstream: UpstreamNotify, Path: "/push/notify", Class: "notify", Shape: ShapeNotifyTask, decode: decodeNotify},
}

// Specs returns every job type's spec, in a fixed order.
func Specs() []Spec { return append([]Spec(nil), specs...) }

// Lookup returns the spec of a job type.
func Lookup(t string) (*Spec, bool) {
	for i := range specs {
		if string(specs[i].Type) == t {
			return &specs[i], true
		}
	}
	return nil, false
}

// IsType reports whether t is a job type.
func IsType(t string) bool {
	_, ok := Lookup(t)
	return ok
}

// Job is the envelope a producer publishes on <prefix>.jobs.<type>.
type Job struct {
	RequestID    string          `json:"request_id,omitempty"`
	App          string          `json:"app,omitempty"`
	NotAfter     *time.Time      `json:"not_after,omitempty"`
	NotBefore    *time.Time      `json:"not_before,omitempty"` // not sent before then (README "Campaigns")
	Priority     Priority        `json:"priority,omitempty"`   // "" is normal
	ReplySubject string          `json:"reply_subject,omitempty"`
	Payload      json.RawMessage `json:"payload"`
}

// NewJob returns a job carrying p as its payload.
func NewJob(requestID string, p Payload) (Job, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return Job{}, err
	}
	return Job{RequestID: requestID, Payload: b}, nil
}

// Meta is what the worker knows of a job message besides its data.
type Meta struct {
	Subject string // the subject it arrived on
	MsgID   string // its Nats-Msg-Id header, if any
	// RequestID is its Push-Request-Id header, if any: set by pushctl dlq replay so a job
	// keeps its request id when that came from a header of the original message.
	RequestID string
	Seq       uint64 // its stream sequence
}

// Options bound decoding.
type Options struct {
	SubjectPrefix string // "push" by default
	MaxBytes      int    // 0: no limit
}

// Decoded is a job after decoding and validation. On error, the fields that could be
// resolved (request id, type, app, reply subject) are still filled so that the result can
// name them.
type Decoded struct {
	Spec         *Spec
	Type         string
	RequestID    string
	App          string
	NotAfter     time.Time // zero when not set
	NotBefore    time.Time // zero when not set
	Priority     Priority  // PriorityNormal when not set
	ReplySubject string    // where the result goes
	Calls        []Call
	// JSON is the job's data when it parsed as a JSON object (for the DLQ).
	JSON json.RawMessage
}

// Weight is the sum of the weights of the job's calls.
func (d *Decoded) Weight() int {
	w := 0
	for _, c := range d.Calls {
		w += c.Weight
	}
	return w
}

// CredentialFields are payload fields that reject a job: credentials live only in the
// worker's configuration.
var CredentialFields = []string{"appId", "appKey", "appSecret", "access-token", "access_token", "token"}

// envelope is a job's data read member by member; Payload aliases the data.
type envelope struct {
	RequestID, App, NotAfter, NotBefore, Priority, ReplySubject *string
	Payload                                                     []byte
}

// errInvalidMember marks an envelope error that is about one member, not the JSON text.
type errInvalidMember struct{ error }

// A member that is wrong does not stop the reading: the others (request_id, reply_subject)
// are still read, so that the rejection reaches the producer under its own request id and
// on its reply subject. The first such error is returned.
func (e *envelope) read(data []byte) error {
	var first error
	err := jsonobj.Each(data, func(name string, v []byte) error {
		var err error
		switch name {
		case "request_id":
			e.RequestID, err = jsonobj.OptString(name, v)
		case "app":
			e.App, err = jsonobj.OptString(name, v)
		case "not_after":
			e.NotAfter, err = jsonobj.OptString(name, v)
		case "not_before":
			e.NotBefore, err = jsonobj.OptString(name, v)
		case "priority":
			e.Priority, err = jsonobj.OptString(name, v)
		case "reply_subject":
			e.ReplySubject, err = jsonobj.OptString(name, v)
		case "payload":
			e.Payload = v
		default:
			err = fmt.Errorf("%s: unknown field (a job has request_id, app, not_after, not_before, priority, reply_subject and payload)", name)
		}
		if err != nil && first == nil {
			first = errInvalidMember{err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return first
}

// Decode validates a job message and returns it ready to send. The error, when not nil, is
// the reason the job is rejected, with its kind and a detail naming the field.
func Decode(m Meta, data []byte, o Options) (*Decoded, *Error) {
	prefix := o.SubjectPrefix
	if prefix == "" {
		prefix = "push"
	}
	d := &Decoded{App: "default"}
	var lane Priority
	d.Type, lane = SplitLane(strings.TrimPrefix(m.Subject, prefix+".jobs."))
	d.RequestID = fallbackRequestID(m)
	d.ReplySubject = prefix + ".results." + d.Type

	var env envelope
	envErr := env.read(data)
	if _, ok := envErr.(errInvalidMember); envErr == nil || ok {
		d.JSON = data
		if env.RequestID != nil && validRequestID(*env.RequestID) {
			d.RequestID = *env.RequestID
		}
		if env.App != nil && *env.App != "" {
			d.App = *env.App
		}
		if env.ReplySubject != nil && validReplySubject(*env.ReplySubject, prefix) {
			d.ReplySubject = *env.ReplySubject
		}
	}
	if o.MaxBytes > 0 && len(data) > o.MaxBytes {
		return d, Errorf(KindTooLarge, fmt.Sprintf("job is %d bytes, more than the limit of %d", len(data), o.MaxBytes))
	}
	spec, ok := Lookup(d.Type)
	if !ok {
		return d, Errorf(KindUnknownType, fmt.Sprintf("unknown job type %q (subject %s)", d.Type, m.Subject))
	}
	d.Spec = spec
	if im, ok := envErr.(errInvalidMember); ok {
		return d, Errorf(KindInvalidJob, im.Error())
	}
	if envErr != nil {
		return d, Errorf(KindInvalidJob, "job is not a valid JSON object: "+envErr.Error())
	}
	if env.RequestID != nil && !validRequestID(*env.RequestID) {
		return d, Errorf(KindInvalidJob, "request_id must be 1-128 printable ASCII characters")
	}
	if env.App != nil && *env.App == "" {
		return d, Errorf(KindInvalidJob, "app must not be empty")
	}
	if env.NotAfter != nil {
		t, err := time.Parse(time.RFC3339Nano, *env.NotAfter)
		if err != nil {
			return d, Errorf(KindInvalidJob, "not_after must be an RFC 3339 time: "+err.Error())
		}
		d.NotAfter = t
	}
	if env.NotBefore != nil {
		t, err := time.Parse(time.RFC3339Nano, *env.NotBefore)
		if err != nil {
			return d, Errorf(KindInvalidJob, "not_before must be an RFC 3339 time: "+err.Error())
		}
		d.NotBefore = t
		if !d.NotAfter.IsZero() && t.After(d.NotAfter) {
			return d, Errorf(KindInvalidJob, fmt.Sprintf("not_before %s is after not_after %s", *env.NotBefore, *env.NotAfter))
		}
	}
	d.Priority = lane // the subject's lane, unless the job names its priority
	if env.Priority != nil {
		p, ok := ParsePriority(*env.Priority)
		if !ok {
			return d, Errorf(KindInvalidJob, fmt.Sprintf("priority %q must be high, normal or low", *env.Priority))
		}
		d.Priority = p
	}
	if env.ReplySubject != nil && !validReplySubject(*env.ReplySubject, prefix) {
		return d, Errorf(KindInvalidJob, fmt.Sprintf("reply_subject %q must be a subject under %s.results. without wildcards", *env.ReplySubject, prefix))
	}
	if len(env.Payload) == 0 || string(env.Payload) == "null" {
		return d, Errorf(KindInvalidJob, "payload is required")
	}
	if env.Payload[0] != '{' {
		return d, Errorf(KindInvalidJob, "payload must be a JSON object")
	}
	fields := make(map[string]json.RawMessage, 8)
	_ = jsonobj.Each(env.Payload, func(name string, v []byte) error { // validated with the job
		fields[name] = v
		return nil
	})
	for _, f := range CredentialFields {
		if _, ok := fields[f]; ok {
			return d, Errorf(KindCredentialsInJob, fmt.Sprintf("payload.%s: credentials must not be in a job; they come from the worker's configuration of app %q", f, d.App))
		}
	}
	calls, jerr := spec.decode(&payloadInput{spec: spec, raw: env.Payload, fields: fields, requestID: d.RequestID})
	if jerr != nil {
		return d, jerr
	}
	d.Calls = calls
	return d, nil
}

// payloadInput is what a type's decoder gets.
type payloadInput struct {
	spec      *Spec
	raw       json.RawMessage
	fields    map[string]json.RawMessage
	requestID string
}

func fallbackRequestID(m Meta) string {
	if validRequestID(m.RequestID) {
		return m.RequestID
	}
	if validRequestID(m.MsgID) {
		return m.MsgID
	}
	return "seq-" + strconv.FormatUint(m.Seq, 10)
}

func validRequestID(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func validReplySubject(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix+".results.")
	if !ok || rest == "" || len(s) > 255 {
		return false
	}
	for _, tok := range strings.Split(rest, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= ' ' || c > '~' {
				return false
			}
		}
	}
	return true
}
