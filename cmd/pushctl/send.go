package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/pushworker/pushworker/jobs"
)

// sendOpts are the flags of "pushctl send".
type sendOpts struct {
	// payload
	payload, payloadFile string
	from, fromResource   string
	to, topics, messages listFlag
	msg, msgType         string
	isStore              optBool
	bizType              string
	audience             string
	title, body          string
	typ                  string // notify message.type; with --file, the job type
	attachmentURL        string

	// envelope
	requestID, app, notAfter, replySubject string
	at, in, priority                       string

	wait       waitFlag
	noValidate bool

	// --file
	file       string
	quiet      bool
	maxPending int
}

func (o *sendOpts) register(fs *flag.FlagSet) {
	o.to.split, o.topics.split = true, true
	fs.StringVar(&o.payload, "payload", "", "the payload as a JSON object (flags below set fields on top of it)")
	fs.StringVar(&o.payloadFile, "payload-file", "", "read the payload JSON object from this file")
	fs.StringVar(&o.from, "from", "", "MIMC fromAccount")
	fs.StringVar(&o.fromResource, "from-resource", "", "MIMC fromResource")
	fs.Var(&o.to, "to", "MIMC toAccount (p2p) or toAccounts (p2p_more); repeatable or comma separated")
	fs.Var(&o.topics, "topic", "MIMC topicId or topicIds (64-bit decimal); repeatable or comma separated")
	fs.StringVar(&o.msg, "msg", "", "the message text (msg or message, by type)")
	fs.StringVar(&o.msg, "message", "", "same as --msg")
	fs.Var(&o.messages, "messages", "one message of a ucs_multi_msg job; repeatable")
	fs.StringVar(&o.msgType, "msg-type", "", `MIMC msgType: "base64" when the messages are base64`)
	fs.Var(&o.isStore, "is-store", "MIMC isStore")
	fs.StringVar(&o.bizType, "biz-type", "", "MIMC bizType")
	fs.StringVar(&o.audience, "audience", "", "notify audience: all | tag:a,b | alias:a,b | user_id:1,2 | push_token:t1,t2")
	fs.StringVar(&o.title, "title", "", "notify message.title")
	fs.StringVar(&o.body, "body", "", "notify message.body")
	fs.StringVar(&o.typ, "type", "", "notify message.type (text|image|cmd); with --file: the job type of lines without a type field")
	fs.StringVar(&o.attachmentURL, "attachment-url", "", "notify message.attachment_url (.jpg, .jpeg or .png)")
	fs.StringVar(&o.requestID, "request-id", "", "the job's request id (default: a random id); also its Nats-Msg-Id")
	fs.StringVar(&o.app, "app", "", "the credential set (app) of the job (worker default: default)")
	fs.StringVar(&o.notAfter, "not-after", "", "do not send after this RFC 3339 time, or this duration from now (10m)")
	fs.StringVar(&o.at, "at", "", "send at this RFC 3339 time (not_before; the job waits in the stream as a scheduled message)")
	fs.StringVar(&o.in, "in", "", "send after this duration from now (not_before = now + duration)")
	fs.StringVar(&o.priority, "priority", "", "high, normal (default) or low: the job's lane within its app and rate class budget")
	fs.StringVar(&o.replySubject, "reply-subject", "", "publish the result here instead of <prefix>.results.<type>")
	fs.Var(&o.wait, "wait", "wait for the job's result and print it: --wait, --wait=1m or --wait 1m (default 30s)")
	fs.BoolVar(&o.noValidate, "no-validate", false, "publish without checking the job first")
	fs.StringVar(&o.file, "file", "", "publish every job of this NDJSON file (- for stdin)")
	fs.BoolVar(&o.quiet, "quiet", false, "with --file: no progress bar")
	fs.IntVar(&o.maxPending, "max-pending", 4096, "with --file: publishes awaiting their ack at most")
}

func runSend(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("send", "<type> [flags] | --file jobs.ndjson [--type T]")
	var o sendOpts
	o.register(fs)
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if o.file != "" {
		if len(pos) > 1 || (len(pos) == 1 && o.typ != "" && pos[0] != o.typ) {
			return a.usageErr("send --file takes the job type from each line or from --type, not from arguments")
		}
		if len(pos) == 1 {
			o.typ = pos[0]
		}
		return a.sendFile(ctx, &o)
	}
	// "--wait 10s": the bool-like flag left its value as an argument.
	if o.wait.on && o.wait.bare && len(pos) == 2 {
		if d, err := time.ParseDuration(pos[1]); err == nil && d > 0 {
			o.wait.d = d
			pos = pos[:1]
		}
	}
	var typ string
	switch {
	case len(pos) == 1:
		typ = pos[0]
	case len(pos) == 0 && isJobType(o.typ):
		typ, o.typ = o.typ, ""
	default:
		return a.usageErr("send needs one job type (%s), or --file", typeList())
	}
	if !isJobType(typ) && !o.noValidate {
		return a.usageErr("unknown job type %q: want one of %s", typ, typeList())
	}
	payload, err := o.buildPayload(jobs.Type(typ))
	if err != nil {
		return a.usageErr("%v", err)
	}
	notAfter, err := parseNotAfter(o.notAfter, time.Now())
	if err != nil {
		return a.usageErr("%v", err)
	}
	notBefore, err := parseNotBefore(o.at, o.in, time.Now())
	if err != nil {
		return a.usageErr("%v", err)
	}
	if _, ok := jobs.ParsePriority(o.priority); !ok {
		return a.usageErr("--priority %q: want high, normal or low", o.priority)
	}
	reqID := o.requestID
	if reqID == "" {
		reqID = nuid.Next()
	}
	job := jobs.Job{RequestID: reqID, App: o.app, NotAfter: notAfter, NotBefore: notBefore, Priority: jobs.Priority(o.priority), ReplySubject: o.replySubject, Payload: payload}
	n := a.names()
	subject := n.JobSubject(typ)
	if !o.noValidate {
		data, err := json.Marshal(job)
		if err != nil {
			return a.fail(err)
		}
		if _, jerr := jobs.Decode(jobs.Meta{Subject: subject, MsgID: reqID}, data, jobs.Options{SubjectPrefix: n.Subject}); jerr != nil {
			return a.fail(fmt.Errorf("invalid %s job: %s (--no-validate publishes it anyway)", typ, jerr.Detail))
		}
	}

	sess, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()

	resultSubject := o.replySubject
	if resultSubject == "" {
		resultSubject = n.ResultSubject(typ)
	}
	var sub *nats.Subscription
	if o.wait.on {
		// Subscribe before publishing so that the result cannot slip by.
		if sub, err = sess.nc.SubscribeSync(resultSubject); err != nil {
			return a.fail(fmt.Errorf("subscribing to %s: %w", resultSubject, err))
		}
		defer sub.Unsubscribe()
		if err := sess.nc.FlushTimeout(5 * time.Second); err != nil {
			return a.fail(fmt.Errorf("cannot reach NATS at %s: %w", sess.url, err))
		}
	}

	pctx, cancel := apiContext(ctx)
	ack, err := jobs.Publish(pctx, sess.js, n.Subject, jobs.Type(typ), job) // Nats-Msg-Id = request id
	cancel()
	if err != nil {
		return a.fail(publishErr(sess, subject, err))
	}

	out := a.stdout
	if o.wait.on {
		out = a.stderr // stdout gets the result only
	}
	if a.g.json && !o.wait.on {
		writeJSONLine(out, map[string]any{"request_id": reqID, "subject": subject, "stream": ack.Stream, "seq": ack.Sequence, "duplicate": ack.Duplicate})
	} else if !a.g.json {
		note := ""
		if ack.Duplicate {
			note = " (duplicate: a job with this request id was published within the duplicate window; not enqueued again)"
		}
		fmt.Fprintf(out, "published %s job %s to %s seq %d%s\n", typ, reqID, ack.Stream, ack.Sequence, note)
	}
	if !o.wait.on {
		return exitOK
	}

	deadline := time.Now().Add(o.wait.d)
	var raw []byte
	if ack.Duplicate {
		// The first copy's result may be out already: look for it in the results stream.
		raw = storedResult(ctx, sess, resultSubject, reqID, time.Now().Add(-duplicateWindow(ctx, sess)-time.Minute))
	}
	if raw == nil {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		raw, err = waitResult(wctx, sub, reqID)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return a.fail(ctx.Err())
			}
			fmt.Fprintf(a.stderr, "pushctl: no result for %s on %s within %s\n", reqID, resultSubject, o.wait.d)
			return exitNoResult
		}
	}
	return a.printResult(raw)
}

// printResult prints a waited-for result and returns the exit code of its status.
func (a *app) printResult(raw []byte) int {
	var res jobs.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return a.fail(fmt.Errorf("result is not valid JSON: %v", err))
	}
	var buf bytes.Buffer
	if a.g.json {
		_ = json.Compact(&buf, raw)
	} else {
		_ = json.Indent(&buf, raw, "", "  ")
	}
	buf.WriteByte('\n')
	_, _ = a.stdout.Write(buf.Bytes())
	if res.Status == jobs.StatusSent || res.Status == jobs.StatusPartial {
		return exitOK
	}
	return exitNotSent
}

// waitResult returns the data of the first message on sub for the request id.
func waitResult(ctx context.Context, sub *nats.Subscription, reqID string) ([]byte, error) {
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, err
		}
		if resultRequestID(msg.Header, msg.Data) == reqID {
			return msg.Data, nil
		}
	}
}

// resultRequestID is the request id of a result message: its Push-Request-Id header, or
// the request_id of its data.
func resultRequestID(h nats.Header, data []byte) string {
	if id := h.Get(jobs.HeaderRequestID); id != "" {
		return id
	}
	var r struct {
		RequestID string `json:"request_id"`
	}
	_ = json.Unmarshal(data, &r)
	return r.RequestID
}

// storedResult looks for a result of the request id stored on subject since a time.
func storedResult(ctx context.Context, sess *session, subject, reqID string, since time.Time) []byte {
	var found []byte
	_ = sess.readStream(ctx, readOpts{stream: sess.names.ResultsStream(), filters: []string{subject}, since: since},
		func(m jetstream.Msg) error {
			if resultRequestID(m.Headers(), m.Data()) == reqID {
				found = append([]byte(nil), m.Data()...)
				return errStop
			}
			return nil
		})
	return found
}

// duplicateWindow is the jobs stream's duplicate window (2m when it cannot be read).
func duplicateWindow(ctx context.Context, sess *session) time.Duration {
	actx, cancel := apiContext(ctx)
	defer cancel()
	if st, err := sess.js.Stream(actx, sess.names.JobsStream()); err == nil && st.CachedInfo().Config.Duplicates > 0 {
		return st.CachedInfo().Config.Duplicates
	}
	return 2 * time.Minute
}

// publishErr explains a failed publish of a job.
func publishErr(sess *session, subject string, err error) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return sess.streamErr(sess.names.JobsStream(), jetstream.ErrStreamNotFound)
	}
	return fmt.Errorf("publishing to %s: %w", subject, err)
}

func isJobType(t string) bool {
	_, ok := jobs.Lookup(t)
	return ok
}

func typeList() string {
	var names []string
	for _, s := range jobs.Specs() {
		names = append(names, string(s.Type))
	}
	return strings.Join(names, ", ")
}

// mimcShape names the fields of a MIMC job type that flags fill.
type mimcShape struct {
	to, topic, msg               string
	toList, topicList, msgIsList bool
}

var mimcShapes = map[jobs.Type]mimcShape{
	jobs.P2P:           {to: "toAccount", msg: "msg"},
	jobs.P2PMore:       {to: "toAccounts", toList: true, msg: "msg"},
	jobs.P2T:           {topic: "topicId", msg: "msg"},
	jobs.P2TMore:       {topic: "topicIds", topicList: true, msg: "msg"},
	jobs.UCS:           {topic: "topicId", msg: "message"},
	jobs.UCSMultiMsg:   {topic: "topicId", msg: "messages", msgIsList: true},
	jobs.UCSMultiTopic: {topic: "topicIds", topicList: true, msg: "message"},
}

// buildPayload returns the payload of a job of type t: --payload or --payload-file, with
// the fields given by flags set on top.
func (o *sendOpts) buildPayload(t jobs.Type) (json.RawMessage, error) {
	p, err := o.basePayload()
	if err != nil {
		return nil, err
	}
	set := func(k string, v any) {
		b, _ := json.Marshal(v)
		p[k] = b
	}
	mimcGiven := o.from != "" || o.fromResource != "" || len(o.to.values) > 0 || len(o.topics.values) > 0 ||
		o.msg != "" || len(o.messages.values) > 0 || o.msgType != "" || o.isStore.set || o.bizType != ""
	notifyGiven := o.audience != "" || o.title != "" || o.body != "" || o.typ != "" || o.attachmentURL != ""

	if t == jobs.Notify {
		if mimcGiven {
			return nil, fmt.Errorf("--from, --to, --topic, --msg, --messages, --msg-type, --is-store and --biz-type are for MIMC jobs, not notify")
		}
		if o.audience != "" {
			aud, err := parseAudience(o.audience)
			if err != nil {
				return nil, err
			}
			p["audience"] = aud
		}
		if o.title != "" || o.body != "" || o.typ != "" || o.attachmentURL != "" {
			msg := map[string]json.RawMessage{}
			if raw, ok := p["message"]; ok && string(raw) != "null" {
				if err := json.Unmarshal(raw, &msg); err != nil {
					return nil, fmt.Errorf("payload.message must be a JSON object")
				}
			}
			for k, v := range map[string]string{"type": o.typ, "title": o.title, "body": o.body, "attachment_url": o.attachmentURL} {
				if v != "" {
					b, _ := json.Marshal(v)
					msg[k] = b
				}
			}
			set("message", msg)
		}
		return json.Marshal(p)
	}

	shape, ok := mimcShapes[t]
	if !ok { // an unknown type with --no-validate: only the payload flags
		if mimcGiven || notifyGiven {
			return nil, fmt.Errorf("field flags need a known job type; give the payload with --payload")
		}
		return json.Marshal(p)
	}
	if notifyGiven {
		return nil, fmt.Errorf("--audience, --title, --body, --type and --attachment-url are for notify jobs, not %s", t)
	}
	if o.from != "" {
		set("fromAccount", o.from)
	}
	if o.fromResource != "" {
		set("fromResource", o.fromResource)
	}
	if to := o.to.values; len(to) > 0 {
		switch {
		case shape.to == "":
			return nil, fmt.Errorf("--to does not apply to a %s job", t)
		case shape.toList:
			set(shape.to, to)
		case len(to) > 1:
			return nil, fmt.Errorf("a %s job has one --to; use %s for several", t, pluralType[t])
		default:
			set(shape.to, to[0])
		}
	}
	if ids := o.topics.values; len(ids) > 0 {
		for _, id := range ids {
			if _, err := strconv.ParseInt(id, 10, 64); err != nil {
				return nil, fmt.Errorf("--topic %q is not a 64-bit decimal topic id", id)
			}
		}
		// Decimal strings: the worker sends them as JSON numbers with every digit.
		switch {
		case shape.topic == "":
			return nil, fmt.Errorf("--topic does not apply to a %s job", t)
		case shape.topicList:
			set(shape.topic, ids)
		case len(ids) > 1:
			hint := ""
			if m, ok := pluralType[t]; ok {
				hint = "; use " + string(m) + " for several"
			}
			return nil, fmt.Errorf("a %s job has one --topic%s", t, hint)
		default:
			set(shape.topic, ids[0])
		}
	}
	if shape.msgIsList {
		list := o.messages.values
		if o.msg != "" {
			list = append([]string{o.msg}, list...)
		}
		if len(list) > 0 {
			set(shape.msg, list)
		}
	} else {
		if len(o.messages.values) > 0 {
			return nil, fmt.Errorf("--messages is for ucs_multi_msg jobs; use --msg")
		}
		if o.msg != "" {
			set(shape.msg, o.msg)
		}
	}
	if o.msgType != "" {
		set("msgType", o.msgType)
	}
	if o.isStore.set {
		set("isStore", o.isStore.v)
	}
	if o.bizType != "" {
		set("bizType", o.bizType)
	}
	return json.Marshal(p)
}

// pluralType is the type that sends to several targets what t sends to one.
var pluralType = map[jobs.Type]jobs.Type{jobs.P2P: jobs.P2PMore, jobs.P2T: jobs.P2TMore, jobs.UCS: jobs.UCSMultiTopic}

func (o *sendOpts) basePayload() (map[string]json.RawMessage, error) {
	var raw []byte
	switch {
	case o.payload != "" && o.payloadFile != "":
		return nil, fmt.Errorf("give --payload or --payload-file, not both")
	case o.payload != "":
		raw = []byte(o.payload)
	case o.payloadFile != "":
		b, err := os.ReadFile(o.payloadFile)
		if err != nil {
			return nil, fmt.Errorf("--payload-file: %v", err)
		}
		raw = b
	}
	p := map[string]json.RawMessage{}
	if raw != nil {
		if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
			return nil, fmt.Errorf("the payload must be a JSON object")
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("the payload is not a valid JSON object: %v", err)
		}
	}
	return p, nil
}

// parseAudience reads --audience: all, or <key>:<v1,v2,...> with key tag, alias, user_id
// or push_token. User ids stay exact (JSON numbers written from their digits).
func parseAudience(s string) (json.RawMessage, error) {
	if s == jobs.AudienceAll {
		return json.RawMessage(`"all"`), nil
	}
	key, list, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("--audience %q: want all or tag:a,b | alias:a,b | user_id:1,2 | push_token:t1,t2", s)
	}
	var items []json.RawMessage
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		if key == "user_id" {
			if _, err := strconv.ParseUint(v, 10, 63); err != nil {
				return nil, fmt.Errorf("--audience user_id %q is not a user id", v)
			}
			items = append(items, json.RawMessage(v))
			continue
		}
		b, _ := json.Marshal(v)
		items = append(items, b)
	}
	switch key {
	case "tag", "alias", "user_id", "push_token":
	default:
		return nil, fmt.Errorf("--audience key %q: want tag, alias, user_id or push_token", key)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("--audience %s: the list is empty", key)
	}
	return json.Marshal(map[string][]json.RawMessage{key: items})
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w interface{ Write([]byte) (int, error) }, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	_, _ = w.Write(append(b, '\n'))
}
