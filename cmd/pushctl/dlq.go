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
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/dlq"
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

// dlqFilter is the command line form of a dlq.Filter.
type dlqFilter struct {
	dlq.Filter
	since string
}

func (f *dlqFilter) register(fs *flag.FlagSet) {
	fs.StringVar(&f.Type, "type", "", "only entries of this job type")
	fs.StringVar(&f.Kind, "kind", "", "only entries with this error kind (e.g. upstream_unavailable)")
	fs.StringVar(&f.RequestID, "request-id", "", "only entries of this request id")
	fs.StringVar(&f.since, "since", "", "only entries stored since this duration ago (1h) or RFC 3339 time")
}

func (f *dlqFilter) parse() error {
	var err error
	f.Since, err = parseSince(f.since, time.Now())
	if err == nil && f.Type != "" && !validSubjectToken(f.Type) {
		err = fmt.Errorf("--type %q is not a job type", f.Type)
	}
	return err
}

func (f *dlqFilter) readOpts(s *session) readOpts {
	return readOpts{stream: s.names.DLQStream(), filters: []string{f.Subject(s.names)}, since: f.Since}
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
		d := dlq.Decode(meta.Sequence.Stream, meta.Timestamp, m.Subject(), m.Data())
		if d.Err == nil && !f.Match(&d.Entry) {
			return nil
		}
		if d.Err != nil && (f.Kind != "" || f.RequestID != "") {
			return nil
		}
		count++
		if a.g.json {
			writeJSONLine(a.stdout, map[string]any{"seq": d.Seq, "time": d.Time.UTC(), "dlq_subject": d.Subject, "entry": json.RawMessage(compactOr(m.Data()))})
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
func dlqLine(d *dlq.Entry) string {
	if d.Err != nil {
		return fmt.Sprintf("%d  %s  %s  (not a DLQ entry: %v)", d.Seq, fmtTime(d.Time), d.Subject, d.Err)
	}
	r := &d.Entry.Result
	kind, detail := "-", ""
	if r.Error != nil {
		kind, detail = string(r.Error.Kind), r.Error.Detail
	}
	reqID := r.RequestID
	if reqID == "" {
		reqID = "-"
	}
	return fmt.Sprintf("%d  %s  %s  %s  %s  %s  %s", d.Seq, fmtTime(d.Time), d.Type(), reqID, r.Status, kind, detail)
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
	d := dlq.Decode(raw.Sequence, raw.Time, raw.Subject, raw.Data)
	if d.Err != nil {
		return a.fail(fmt.Errorf("message %d of %s is not a DLQ entry: %v", seq, sess.names.DLQStream(), d.Err))
	}
	out, err := json.Marshal(dlq.Show(&d))
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
	replay := func(d *dlq.Entry) {
		if err := a.replayOne(ctx, sess, st, d, *dryRun); err != nil {
			sum.Failed++
			if len(sum.Errors) < 20 {
				sum.Errors = append(sum.Errors, err.Error())
			}
			var nd *dlq.NotDeletedError
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
			d := dlq.Decode(raw.Sequence, raw.Time, raw.Subject, raw.Data)
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
			d := dlq.Decode(meta.Sequence.Stream, meta.Timestamp, m.Subject(), m.Data())
			if d.Err == nil && !f.Match(&d.Entry) {
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
func matchesDLQFilters(f *dlqFilter, d *dlq.Entry, s *session) bool {
	if f.Type != "" && d.Subject != s.names.DLQSubject(f.Type) {
		return false
	}
	if !f.Since.IsZero() && d.Time.Before(f.Since) {
		return false
	}
	return d.Err != nil || f.Match(&d.Entry)
}

// replayOne replays one entry through dlq.Replay (the dashboard's replay goes the same
// way), or with dryRun only says what it would do.
func (a *app) replayOne(ctx context.Context, sess *session, st jetstream.Stream, d *dlq.Entry, dryRun bool) error {
	if dryRun {
		p, err := dlq.PlanReplay(sess.names, d)
		if err != nil {
			return err
		}
		if !a.g.json {
			fmt.Fprintf(a.stdout, "would replay DLQ entry %d to %s (%s, %d bytes)\n", d.Seq, p.Subject, p.IDNote, len(p.Data))
		}
		return nil
	}
	p, ack, err := dlq.Replay(ctx, sess.js, st, sess.names, d)
	if err != nil {
		return err
	}
	if !a.g.json {
		fmt.Fprintf(a.stdout, "replayed DLQ entry %d to %s (%s) as %s seq %d\n", d.Seq, p.Subject, p.IDNote, ack.Stream, ack.Sequence)
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
