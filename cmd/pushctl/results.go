package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/jobs"
)

func runResults(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("results", "[--follow] [--request-id ID] [--status S] [--type T] [--since D] [--subject S]")
	follow := fs.Bool("follow", false, "keep printing new results until interrupted")
	fs.BoolVar(follow, "f", false, "same as --follow")
	reqID := fs.String("request-id", "", "only the results of this request id")
	status := fs.String("status", "", "only results with this status (sent|partial|rejected|failed|expired)")
	typ := fs.String("type", "", "only results of this job type (notify_stats prints the notify delivery stats)")
	since := fs.String("since", "", "only results stored since this duration ago (1h) or RFC 3339 time")
	subject := fs.String("subject", "", "read only this result subject, e.g. a reply subject (default <prefix>.results.>)")
	if pos, code, done := parseFlags(fs, args); done {
		return code
	} else if len(pos) > 0 {
		return a.usageErr("results takes no arguments (got %q)", pos[0])
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		return a.usageErr("%v", err)
	}
	switch jobs.Status(*status) {
	case "", jobs.StatusSent, jobs.StatusPartial, jobs.StatusRejected, jobs.StatusFailed, jobs.StatusExpired:
	default:
		return a.usageErr("--status %q: want sent, partial, rejected, failed or expired", *status)
	}
	n := a.names()
	if *typ == "notify_stats" {
		return a.printStats(ctx, *follow, *reqID, from)
	}
	filter := n.Subject + ".results.>"
	if *subject != "" {
		filter = *subject
	}
	sess, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()
	statsSubject := n.NotifyStatsSubject()
	err = sess.readStream(ctx, readOpts{stream: n.ResultsStream(), filters: []string{filter}, since: from, follow: *follow},
		func(m jetstream.Msg) error {
			if m.Subject() == statsSubject {
				return nil
			}
			h := m.Headers()
			if *reqID != "" && h.Get(jobs.HeaderRequestID) != "" && h.Get(jobs.HeaderRequestID) != *reqID {
				return nil // cheap check before decoding
			}
			if *status != "" && h.Get(jobs.HeaderStatus) != "" && h.Get(jobs.HeaderStatus) != *status {
				return nil
			}
			var res jobs.Result
			decodeErr := json.Unmarshal(m.Data(), &res)
			if decodeErr == nil {
				if (*reqID != "" && res.RequestID != *reqID) || (*status != "" && string(res.Status) != *status) || (*typ != "" && res.Type != *typ) {
					return nil
				}
			} else if *reqID != "" || *status != "" || *typ != "" {
				return nil
			}
			if a.g.json {
				writeCompact(a.stdout, m.Data())
				return nil
			}
			meta, _ := m.Metadata()
			if decodeErr != nil {
				fmt.Fprintf(a.stdout, "%s  %s  (not a result: %v)\n", fmtTime(meta.Timestamp), m.Subject(), decodeErr)
				return nil
			}
			fmt.Fprintln(a.stdout, resultLine(&res, meta.Timestamp))
			return nil
		})
	if err != nil {
		return a.fail(err)
	}
	return exitOK
}

// resultLine is the one-line form of a result: time, request id, type, status, ids, error.
func resultLine(r *jobs.Result, stored time.Time) string {
	t := r.CompletedAt
	if t.IsZero() {
		t = stored
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  %s  %s", fmtTime(t), r.RequestID, r.Type, r.Status)
	if r.Duplicate {
		b.WriteString("  duplicate")
	}
	if r.PacketID != "" {
		b.WriteString("  packet_id=" + r.PacketID)
	}
	if len(r.PacketIDs) > 0 {
		b.WriteString("  packet_ids=" + strings.Join(r.PacketIDs, ","))
	}
	if len(r.FailTopicIDs) > 0 {
		b.WriteString("  fail_topic_ids=" + strings.Join(r.FailTopicIDs, ","))
	}
	if r.TaskID != nil {
		b.WriteString("  task_id=" + strconv.FormatInt(*r.TaskID, 10))
	}
	if len(r.TaskIDs) > 0 {
		ids := make([]string, len(r.TaskIDs))
		for i, id := range r.TaskIDs {
			ids[i] = strconv.FormatInt(id, 10)
		}
		b.WriteString("  task_ids=" + strings.Join(ids, ","))
	}
	fmt.Fprintf(&b, "  attempts=%d  job_seq=%d", r.Attempts, r.JobSeq)
	if r.Error != nil {
		fmt.Fprintf(&b, "  error=%s: %s", r.Error.Kind, r.Error.Detail)
	}
	return b.String()
}

func runStats(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("stats", "[--follow] [--request-id ID] [--since D]")
	follow := fs.Bool("follow", false, "keep printing new stats until interrupted")
	fs.BoolVar(follow, "f", false, "same as --follow")
	reqID := fs.String("request-id", "", "only the stats of this request id's notify tasks")
	since := fs.String("since", "", "only stats stored since this duration ago (1h) or RFC 3339 time")
	if pos, code, done := parseFlags(fs, args); done {
		return code
	} else if len(pos) > 0 {
		return a.usageErr("stats takes no arguments (got %q)", pos[0])
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		return a.usageErr("%v", err)
	}
	return a.printStats(ctx, *follow, *reqID, from)
}

// printStats prints the notify delivery stats: a line per change.
func (a *app) printStats(ctx context.Context, follow bool, reqID string, since time.Time) int {
	sess, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()
	n := sess.names
	err = sess.readStream(ctx, readOpts{stream: n.ResultsStream(), filters: []string{n.NotifyStatsSubject()}, since: since, follow: follow},
		func(m jetstream.Msg) error {
			var st jobs.NotifyStats
			decodeErr := json.Unmarshal(m.Data(), &st)
			if reqID != "" && (decodeErr != nil || st.RequestID != reqID) {
				return nil
			}
			if a.g.json {
				writeCompact(a.stdout, m.Data())
				return nil
			}
			meta, _ := m.Metadata()
			if decodeErr != nil {
				fmt.Fprintf(a.stdout, "%s  (not notify stats: %v)\n", fmtTime(meta.Timestamp), decodeErr)
				return nil
			}
			fmt.Fprintln(a.stdout, statsLine(&st, meta.Timestamp))
			return nil
		})
	if err != nil {
		return a.fail(err)
	}
	return exitOK
}

// statsLine is the one-line form of a notify stats change.
func statsLine(s *jobs.NotifyStats, stored time.Time) string {
	t := s.At
	if t.IsZero() {
		t = stored
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  task=%d  request=%s", fmtTime(t), s.TaskID, s.RequestID)
	if s.App != "" {
		b.WriteString("  app=" + s.App)
	}
	names := make([]string, 0, len(s.Channels))
	for ch := range s.Channels {
		names = append(names, ch)
	}
	sort.Strings(names)
	for _, ch := range names {
		c := s.Channels[ch]
		fmt.Fprintf(&b, "  %s target=%d sent=%d received=%d", ch, c.Target, c.Sent, c.Received)
	}
	return b.String()
}

// writeCompact writes JSON data as one line.
func writeCompact(w io.Writer, data []byte) {
	var buf bytes.Buffer
	if json.Compact(&buf, data) != nil {
		buf.Reset()
		buf.Write(bytes.ReplaceAll(data, []byte("\n"), []byte(" ")))
	}
	buf.WriteByte('\n')
	_, _ = w.Write(buf.Bytes())
}
