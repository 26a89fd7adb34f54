package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Priority is a job's lane within its app and rate class budget (README "Campaigns").
type Priority string

// Priorities, from first served to last.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// Lanes are the priorities that have job subjects of their own, <prefix>.jobs.<type>.<lane>,
// each read by its own consumer so that a backlog of one lane never holds another's jobs
// back in the stream. Normal jobs keep the subject <prefix>.jobs.<type>.
var Lanes = []Priority{PriorityHigh, PriorityLow}

// JobSubject is the subject a job of type t and priority p is published on.
func JobSubject(subjectPrefix, t string, p Priority) string {
	if subjectPrefix == "" {
		subjectPrefix = "push"
	}
	if p == PriorityHigh || p == PriorityLow {
		return subjectPrefix + ".jobs." + t + "." + string(p)
	}
	return subjectPrefix + ".jobs." + t
}

// SplitLane splits the subject tail after <prefix>.jobs. into the job type and the lane
// of the subject (PriorityNormal when it names none).
func SplitLane(tail string) (string, Priority) {
	for _, p := range Lanes {
		if t, ok := strings.CutSuffix(tail, "."+string(p)); ok {
			return t, p
		}
	}
	return tail, PriorityNormal
}

// ParsePriority reads a job's priority; "" is normal.
func ParsePriority(s string) (Priority, bool) {
	switch Priority(s) {
	case PriorityHigh, PriorityNormal, PriorityLow:
		return Priority(s), true
	case "":
		return PriorityNormal, true
	}
	return "", false
}

// Lane is the priority's index: 0 high, 1 normal, 2 low.
func (p Priority) Lane() int {
	switch p {
	case PriorityHigh:
		return 0
	case PriorityLow:
		return 2
	}
	return 1
}

// ScheduleToken is the first subject token after <prefix>.jobs. of the jobs waiting as
// scheduled messages. It is no job type (types are the fixed registry, none starts with
// "_"), so no consumer filters its subjects and none decodes their messages.
const ScheduleToken = "_sched"

// ScheduleSubject is where a job of type t due later waits as a JetStream scheduled message
// (<prefix>.jobs._sched.<type>.<id>, inside the jobs stream's <prefix>.jobs.>): no consumer
// reads it; at its time the server publishes its data and headers on <prefix>.jobs.<type>
// (or its lane subject) and removes it. id is one subject token.
func ScheduleSubject(subjectPrefix string, t string, id string) string {
	if subjectPrefix == "" {
		subjectPrefix = "push"
	}
	return subjectPrefix + ".jobs." + ScheduleToken + "." + t + "." + id
}

// IsScheduleTail reports whether the subject tail after <prefix>.jobs. is that of a
// scheduled message (ScheduleSubject), not a job's.
func IsScheduleTail(tail string) bool {
	return tail == ScheduleToken || strings.HasPrefix(tail, ScheduleToken+".")
}

// ScheduleID is the schedule subject token of a job: derived from its request id, so that
// scheduling the same job again replaces its schedule (the server rolls a schedule subject
// up), or a fresh one when it has none.
func ScheduleID(requestID string) string {
	if requestID == "" {
		return nuid.Next()
	}
	sum := sha256.Sum256([]byte(requestID))
	return hex.EncodeToString(sum[:16])
}

// ScheduleAt is the time a schedule fires for a job due at t: the server's schedules have
// whole seconds, so t rounded up, never early.
func ScheduleAt(t time.Time) time.Time {
	r := t.Truncate(time.Second)
	if r.Before(t) {
		r = r.Add(time.Second)
	}
	return r.UTC()
}

// Schedule stores msg (a job message for <prefix>.jobs.<t>, data and headers) as a
// scheduled message that the server publishes on that subject (msg.Subject, the job's lane
// subject) at due. Its request id goes
// into the Push-Request-Id header, since the server drops Nats-Msg-Id when it fires. msgID,
// when not empty, deduplicates the schedule's own publish.
func Schedule(ctx context.Context, js jetstream.JetStream, subjectPrefix string, t string, requestID, msgID string, msg *nats.Msg, due time.Time) (*jetstream.PubAck, error) {
	if subjectPrefix == "" {
		subjectPrefix = "push"
	}
	m := nats.NewMsg(ScheduleSubject(subjectPrefix, t, ScheduleID(requestID)))
	m.Data = msg.Data
	for k, vs := range msg.Header {
		if k == nats.MsgIdHdr {
			continue
		}
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	if requestID != "" && m.Header.Get(HeaderRequestID) == "" {
		m.Header.Set(HeaderRequestID, requestID)
	}
	if msgID != "" {
		m.Header.Set(nats.MsgIdHdr, msgID)
	}
	m.Header.Set("Nats-Schedule", "@at "+ScheduleAt(due).Format(time.RFC3339))
	target := msg.Subject
	if target == "" {
		target = subjectPrefix + ".jobs." + t
	}
	m.Header.Set("Nats-Schedule-Target", target)
	return js.PublishMsg(ctx, m)
}
