package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

const dlqUsage = `list [--type T] [--kind K] [--since D] | show <seq> | replay [--type T] [--kind K] [--since D] [--seq N ...] [--dry-run]`

func runDLQ(ctx context.Context, a *app, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(a.stderr, "Usage: pushctl dlq %s\n", dlqUsage)
		fmt.Fprintln(a.stderr, "\n  list    one line per dead-lettered job: stream seq, time, type, request id, status, error kind, detail")
		fmt.Fprintln(a.stderr, "  show    one entry, pretty-printed, with the original job bytes decoded")
		fmt.Fprintln(a.stderr, "  replay  publish the original job bytes to the original subject, then delete the entry")
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	switch args[0] {
	case "list", "ls":
		return a.dlqList(ctx, args[1:])
	case "show":
		return a.dlqShow(ctx, args[1:])
	case "replay":
		return a.dlqReplay(ctx, args[1:])
	}
	return a.usageErr("unknown dlq command %q: want list, show or replay", args[0])
}

// dlqFilter selects DLQ entries.
type dlqFilter struct {
	typ, kind, requestID, since string
	from                        time.Time
}

func (f *dlqFilter) register(fs *flag.FlagSet) {
	fs.StringVar(&f.typ, "type", "", "only entries of this job type")
	fs.StringVar(&f.kind, "kind", "", "only entries with this error kind (e.g. upstream_unavailable)")
	fs.StringVar(&f.requestID, "request-id", "", "only entries of this request id")
	fs.StringVar(&f.since, "since", "", "only entries stored since this duration ago (1h) or RFC 3339 time")
}

func (f *dlqFilter) parse() error {
	var err error
	f.from, err = parseSince(f.since, time.Now())
	if err == nil && f.typ != "" && !validSubjectToken(f.typ) {
		err = fmt.Errorf("--type %q is not a job type", f.typ)
	}
	return err
}

func (f *dlqFilter) readOpts(s *session) readOpts {
	filter := s.names.Subject + ".dlq.>"
	if f.typ != "" {
		filter = s.names.DLQSubject(f.typ)
	}
	return readOpts{stream: s.names.DLQStream(), filters: []string{filter}, since: f.from}
}

func (f *dlqFilter) match(e *jobs.DLQEntry) bool {
	if f.kind != "" && (e.Result.Error == nil || string(e.Result.Error.Kind) != f.kind) {
		return false
	}
	return f.requestID == "" || e.Result.RequestID == f.requestID
}

// dlqEntry is one stored DLQ message.
type dlqEntry struct {
	seq     uint64
	time    time.Time
	subject string // the DLQ subject
	entry   jobs.DLQEntry
	err     error // the data is not a DLQ entry
}

func decodeDLQ(seq uint64, t time.Time, subject string, data []byte) dlqEntry {
	d := dlqEntry{seq: seq, time: t, subject: subject}
	d.err = json.Unmarshal(data, &d.entry)
	return d
}

// dlqType is the job type of an entry: its result's, else the DLQ subject's last token.
func (d *dlqEntry) dlqType() string {
	if d.entry.Result.Type != "" {
		return d.entry.Result.Type
	}
	return d.subject[strings.LastIndexByte(d.subject, '.')+1:]
}

func (a *app) dlqList(ctx context.Context, args []string) int {
	fs := a.newFlagSet("dlq list", "[--type T] [--kind K] [--request-id ID] [--since D]")
	var f dlqFilter
	f.register(fs)
	if pos, code, done := parseFlags(fs, args); done {
		return code
	} else if len(pos) > 0 {
		return a.usageErr("dlq list takes no arguments (got %q)", pos[0])
	}
	if err := f.parse(); err != nil {
		return a.usageErr("%v", err)
	}
	sess, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()
	count := 0
	err = sess.readStream(ctx, f.readOpts(sess), func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		d := decodeDLQ(meta.Sequence.Stream, meta.Timestamp, m.Subject(), m.Data())
		if d.err == nil && !f.match(&d.entry) {
			return nil
		}
		if d.err != nil && (f.kind != "" || f.requestID != "") {
			return nil
		}
		count++
		if a.g.json {
			writeJSONLine(a.stdout, map[string]any{"seq": d.seq, "time": d.time.UTC(), "dlq_subject": d.subject, "entry": json.RawMessage(compactOr(m.Data()))})
			return nil
		}
		fmt.Fprintln(a.stdout, dlqLine(&d))
		return nil
	})
	if err != nil {
		return a.fail(err)
	}
	if count == 0 && !a.g.json {
		fmt.Fprintln(a.stderr, "no DLQ entries")
	}
	return exitOK
}

// dlqLine is the one-line form of a DLQ entry.
func dlqLine(d *dlqEntry) string {
	if d.err != nil {
		return fmt.Sprintf("%d  %s  %s  (not a DLQ entry: %v)", d.seq, fmtTime(d.time), d.subject, d.err)
	}
	r := &d.entry.Result
	kind, detail := "-", ""
	if r.Error != nil {
		kind, detail = string(r.Error.Kind), r.Error.Detail
	}
	reqID := r.RequestID
	if reqID == "" {
		reqID = "-"
	}
	return fmt.Sprintf("%d  %s  %s  %s  %s  %s  %s", d.seq, fmtTime(d.time), d.dlqType(), reqID, r.Status, kind, detail)
}

func (a *app) dlqShow(ctx context.Context, args []string) int {
	fs := a.newFlagSet("dlq show", "<seq>")
	pos, code, done := parseFlags(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return a.usageErr("dlq show needs one stream sequence")
	}
	seq, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || seq == 0 {
		return a.usageErr("dlq show: %q is not a stream sequence", pos[0])
	}
	sess, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()
	actx, cancel := apiContext(ctx)
	defer cancel()
	st, err := sess.stream(actx, sess.names.DLQStream())
	if err != nil {
		return a.fail(err)
	}
	raw, err := st.GetMsg(actx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return a.fail(fmt.Errorf("no message %d in stream %s", seq, sess.names.DLQStream()))
		}
		return a.fail(sess.streamErr(sess.names.DLQStream(), err))
	}
	d := decodeDLQ(raw.Sequence, raw.Time, raw.Subject, raw.Data)
	if d.err != nil {
		return a.fail(fmt.Errorf("message %d of %s is not a DLQ entry: %v", seq, sess.names.DLQStream(), d.err))
	}
	out, err := showEntry(&d)
	if err != nil {
		return a.fail(err)
	}
	if a.g.json {
		writeCompact(a.stdout, out)
	} else {
		var buf bytes.Buffer
		_ = json.Indent(&buf, out, "", "  ")
		buf.WriteByte('\n')
		_, _ = a.stdout.Write(buf.Bytes())
	}
	return exitOK
}

// showEntry is a DLQ entry for people: the original job bytes decoded (as JSON when they
// are JSON, else as text, else as base64).
func showEntry(d *dlqEntry) ([]byte, error) {
	type shown struct {
		Seq        uint64          `json:"seq"`
		Time       time.Time       `json:"time"`
		DLQSubject string          `json:"dlq_subject"`
		Subject    string          `json:"subject"`
		Data       json.RawMessage `json:"data,omitempty"`
		DataText   string          `json:"data_text,omitempty"`
		DataBase64 []byte          `json:"data_base64,omitempty"`
		Result     jobs.Result     `json:"result"`
	}
	s := shown{Seq: d.seq, Time: d.time.UTC(), DLQSubject: d.subject, Subject: d.entry.Subject, Result: d.entry.Result}
	switch data := d.entry.Data; {
	case json.Valid(data):
		s.Data = data
	case utf8.Valid(data):
		s.DataText = string(data)
	default:
		s.DataBase64 = data
	}
	return json.Marshal(s)
}

// replaySummary is the outcome of "dlq replay".
type replaySummary struct {
	Replayed   int      `json:"replayed"`
	Failed     int      `json:"failed"`
	NotDeleted int      `json:"not_deleted,omitempty"` // replayed, but the DLQ entry stayed
	DryRun     bool     `json:"dry_run,omitempty"`
	Errors     []string `json:"errors,omitempty"`
}

func (a *app) dlqReplay(ctx context.Context, args []string) int {
	fs := a.newFlagSet("dlq replay", "[--type T] [--kind K] [--since D] [--seq N ...] [--dry-run]")
	var f dlqFilter
	f.register(fs)
	seqs := &listFlag{split: true}
	fs.Var(seqs, "seq", "replay this DLQ stream sequence; repeatable or comma separated")
	dryRun := fs.Bool("dry-run", false, "print what would be replayed, change nothing")
	if pos, code, done := parseFlags(fs, args); done {
		return code
	} else if len(pos) > 0 {
		return a.usageErr("dlq replay takes no arguments (got %q); use --seq", pos[0])
	}
	if err := f.parse(); err != nil {
		return a.usageErr("%v", err)
	}
	var want []uint64
	for _, s := range seqs.values {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return a.usageErr("--seq %q is not a stream sequence", s)
		}
		want = append(want, n)
	}
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })

	sess, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()
	actx, cancel := apiContext(ctx)
	st, err := sess.stream(actx, sess.names.DLQStream())
	cancel()
	if err != nil {
		return a.fail(err)
	}

	sum := replaySummary{DryRun: *dryRun}
	replay := func(d *dlqEntry) {
		if err := a.replayOne(ctx, sess, st, d, *dryRun); err != nil {
			sum.Failed++
			if len(sum.Errors) < 20 {
				sum.Errors = append(sum.Errors, err.Error())
			}
			var nd *notDeletedError
			if errors.As(err, &nd) {
				sum.Failed--
				sum.Replayed++
				sum.NotDeleted++
			}
			if !a.g.json {
				fmt.Fprintln(a.stderr, "pushctl:", err)
			}
			return
		}
		sum.Replayed++
	}

	if len(want) > 0 {
		for _, seq := range want {
			if ctx.Err() != nil {
				break
			}
			gctx, cancel := apiContext(ctx)
			raw, err := st.GetMsg(gctx, seq)
			cancel()
			if err != nil {
				sum.Failed++
				msg := fmt.Sprintf("DLQ entry %d: %v", seq, err)
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					msg = fmt.Sprintf("DLQ entry %d: no such message in %s", seq, sess.names.DLQStream())
				}
				sum.Errors = append(sum.Errors, msg)
				if !a.g.json {
					fmt.Fprintln(a.stderr, "pushctl:", msg)
				}
				continue
			}
			d := decodeDLQ(raw.Sequence, raw.Time, raw.Subject, raw.Data)
			if !matchesDLQFilters(&f, &d, sess) {
				continue
			}
			replay(&d)
		}
	} else {
		err = sess.readStream(ctx, f.readOpts(sess), func(m jetstream.Msg) error {
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			d := decodeDLQ(meta.Sequence.Stream, meta.Timestamp, m.Subject(), m.Data())
			if d.err == nil && !f.match(&d.entry) {
				return nil
			}
			replay(&d)
			return nil
		})
		if err != nil {
			return a.fail(err)
		}
	}

	if a.g.json {
		writeJSONLine(a.stdout, sum)
	} else {
		verb := "replayed"
		if sum.DryRun {
			verb = "would replay"
		}
		fmt.Fprintf(a.stdout, "%s %d, failed %d", verb, sum.Replayed, sum.Failed)
		if sum.NotDeleted > 0 {
			fmt.Fprintf(a.stdout, ", %d replayed but still in the DLQ", sum.NotDeleted)
		}
		fmt.Fprintln(a.stdout)
	}
	if sum.Failed > 0 || sum.NotDeleted > 0 || ctx.Err() != nil {
		return exitError
	}
	return exitOK
}

// matchesDLQFilters applies --type, --since and the entry filters to an entry read by
// sequence.
func matchesDLQFilters(f *dlqFilter, d *dlqEntry, s *session) bool {
	if f.typ != "" && d.subject != s.names.DLQSubject(f.typ) {
		return false
	}
	if !f.from.IsZero() && d.time.Before(f.from) {
		return false
	}
	return d.err != nil || f.match(&d.entry)
}

// notDeletedError reports a replayed entry that could not be deleted from the DLQ.
type notDeletedError struct {
	seq uint64
	err error
}

func (e *notDeletedError) Error() string {
	return fmt.Sprintf("DLQ entry %d was replayed but could not be deleted (delete it with nats stream rmm, or it is replayed again): %v", e.seq, e.err)
}

// replayOne publishes an entry's original bytes to its original subject, waits for the
// stream's ack and only then deletes the entry from the DLQ. No Nats-Msg-Id is set: the
// jobs stream's duplicate window would drop a replay of a job published minutes ago.
func (a *app) replayOne(ctx context.Context, sess *session, dlq jetstream.Stream, d *dlqEntry, dryRun bool) error {
	if d.err != nil {
		return fmt.Errorf("DLQ entry %d is not a DLQ entry: %v", d.seq, d.err)
	}
	e := &d.entry
	jobPrefix := sess.names.Subject + ".jobs."
	if !strings.HasPrefix(e.Subject, jobPrefix) || len(e.Subject) == len(jobPrefix) || strings.ContainsAny(e.Subject, "*> ") {
		return fmt.Errorf("DLQ entry %d: subject %q is not a job subject under %s", d.seq, e.Subject, jobPrefix)
	}
	if len(e.Data) == 0 {
		if e.Omitted != "" {
			return fmt.Errorf("DLQ entry %d has no job data (omitted %s): send the job again from its producer", d.seq, e.Omitted)
		}
		return fmt.Errorf("DLQ entry %d has no job data", d.seq)
	}
	if e.Result.Error != nil && e.Result.Error.Kind == jobs.KindCredentialsInJob {
		return fmt.Errorf("DLQ entry %d: the job carried credentials, which the DLQ holds redacted; it would be rejected again: fix the producer and send it anew", d.seq)
	}
	reqID := e.Result.RequestID
	idNote := "request id " + reqID
	if reqID == "" || reqID == fmt.Sprintf("seq-%d", e.Result.JobSeq) {
		idNote = "no request id: the worker gives it seq-<new stream sequence>"
	}
	if dryRun {
		if !a.g.json {
			fmt.Fprintf(a.stdout, "would replay DLQ entry %d to %s (%s, %d bytes)\n", d.seq, e.Subject, idNote, len(e.Data))
		}
		return nil
	}
	m := nats.NewMsg(e.Subject)
	m.Data = e.Data
	// Keep the job's request id even when it came from a header of the original message
	// (not from its bytes); an id made from the old stream sequence means "none".
	if reqID != "" && reqID != fmt.Sprintf("seq-%d", e.Result.JobSeq) {
		m.Header.Set(jobs.HeaderRequestID, reqID)
	}
	pctx, cancel := apiContext(ctx)
	ack, err := sess.js.PublishMsg(pctx, m)
	cancel()
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = sess.streamErr(sess.names.JobsStream(), err)
		}
		return fmt.Errorf("DLQ entry %d not replayed: %w", d.seq, err)
	}
	dctx, cancel := apiContext(ctx)
	err = dlq.DeleteMsg(dctx, d.seq)
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return &notDeletedError{seq: d.seq, err: err}
	}
	if !a.g.json {
		fmt.Fprintf(a.stdout, "replayed DLQ entry %d to %s (%s) as %s seq %d\n", d.seq, e.Subject, idNote, ack.Stream, ack.Sequence)
	}
	return nil
}

// compactOr returns data compacted, or data as a JSON string when it is not JSON.
func compactOr(data []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, data) == nil {
		return buf.Bytes()
	}
	b, _ := json.Marshal(string(data))
	return b
}
