package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/pushworker/pushworker/control"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/limiter"
)

// pingWait is how long status collects the answers of service instances.
const pingWait = 500 * time.Millisecond

// statusReport is what "pushctl status" shows (and prints with --json).
type statusReport struct {
	Streams   []streamStatus    `json:"streams"`
	Consumers []consumerStatus  `json:"consumers"`
	Pending   map[string]uint64 `json:"pending_by_type"`
	Limiter   limiterStatus     `json:"limiter"`
	Services  []micro.Ping      `json:"services"`
	Controls  *control.State    `json:"controls"`
	Problems  []string          `json:"problems,omitempty"`
}

type streamStatus struct {
	Name      string    `json:"name"`
	Found     bool      `json:"found"`
	Messages  uint64    `json:"messages"`
	Bytes     uint64    `json:"bytes"`
	FirstSeq  uint64    `json:"first_seq"`
	LastSeq   uint64    `json:"last_seq"`
	LastTime  time.Time `json:"last_time,omitzero"`
	Consumers int       `json:"consumers"`
	Replicas  int       `json:"replicas,omitempty"`
}

type consumerStatus struct {
	Stream         string `json:"stream"`
	Name           string `json:"name"`
	NumPending     uint64 `json:"num_pending"`
	NumAckPending  int    `json:"num_ack_pending"`
	NumRedelivered int    `json:"num_redelivered"`
	NumWaiting     int    `json:"num_waiting"`
	Paused         bool   `json:"paused,omitempty"`
}

type limiterStatus struct {
	Bucket   string         `json:"bucket"`
	Found    bool           `json:"found"`
	Replicas []limiterEntry `json:"replicas"`
}

// limiterEntry is one replica's key of the limiter bucket with its raw value.
type limiterEntry struct {
	Replica string          `json:"replica"`
	Updated time.Time       `json:"updated"`
	Value   json.RawMessage `json:"value"`
}

func runStatus(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("status", "")
	if pos, code, done := parseFlags(fs, args); done {
		return code
	} else if len(pos) > 0 {
		return a.usageErr("status takes no arguments (got %q)", pos[0])
	}
	sess, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()
	rep, err := collectStatus(ctx, sess)
	if err != nil {
		return a.fail(err)
	}
	if a.g.json {
		writeJSONLine(a.stdout, rep)
	} else {
		a.printStatus(sess, rep)
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(a.stderr, "pushctl:", p)
	}
	if len(rep.Problems) > 0 {
		return exitError
	}
	return exitOK
}

func collectStatus(ctx context.Context, s *session) (*statusReport, error) {
	n := s.names
	rep := &statusReport{Pending: map[string]uint64{}, Consumers: []consumerStatus{}, Services: []micro.Ping{}}
	actx, cancel := apiContext(ctx)
	defer cancel()

	for _, name := range []string{n.JobsStream(), n.ResultsStream(), n.DLQStream()} {
		ss := streamStatus{Name: name}
		st, err := s.js.Stream(actx, name)
		if err != nil {
			if !errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, s.streamErr(name, err) // NATS or JetStream itself is the problem
			}
			rep.Problems = append(rep.Problems, s.streamErr(name, err).Error())
			rep.Streams = append(rep.Streams, ss)
			continue
		}
		info := st.CachedInfo()
		ss.Found = true
		ss.Messages, ss.Bytes = info.State.Msgs, info.State.Bytes
		ss.FirstSeq, ss.LastSeq, ss.LastTime = info.State.FirstSeq, info.State.LastSeq, info.State.LastTime
		ss.Consumers, ss.Replicas = info.State.Consumers, info.Config.Replicas
		rep.Streams = append(rep.Streams, ss)

		lister := st.ListConsumers(actx)
		for ci := range lister.Info() {
			if !strings.HasPrefix(ci.Name, "pushworker") {
				continue
			}
			rep.Consumers = append(rep.Consumers, consumerStatus{
				Stream: name, Name: ci.Name, NumPending: ci.NumPending, NumAckPending: ci.NumAckPending,
				NumRedelivered: ci.NumRedelivered, NumWaiting: ci.NumWaiting, Paused: ci.Paused,
			})
		}
		if err := lister.Err(); err != nil {
			return nil, s.streamErr(name, err)
		}

		if name == n.JobsStream() {
			full, err := st.Info(actx, jetstream.WithSubjectFilter(n.JobsWildcard()))
			if err != nil {
				return nil, s.streamErr(name, err)
			}
			prefix := n.Subject + ".jobs."
			for subj, count := range full.State.Subjects {
				tail := strings.TrimPrefix(subj, prefix)
				if jobs.IsScheduleTail(tail) { // jobs due later: no type's pending yet
					continue
				}
				rep.Pending[tail] += count
			}
		}
	}

	rep.Limiter = limiterStatus{Bucket: n.LimiterBucket(), Replicas: []limiterEntry{}}
	kv, err := s.js.KeyValue(actx, n.LimiterBucket())
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
	case err != nil:
		return nil, fmt.Errorf("KV bucket %s: %w", n.LimiterBucket(), err)
	default:
		rep.Limiter.Found = true
		keys, err := kv.ListKeys(actx)
		if err != nil {
			return nil, fmt.Errorf("KV bucket %s: %w", n.LimiterBucket(), err)
		}
		for k := range keys.Keys() {
			e, err := kv.Get(actx, k)
			if err != nil {
				continue // deleted meanwhile
			}
			v := json.RawMessage(e.Value())
			if !json.Valid(v) {
				v, _ = json.Marshal(string(e.Value()))
			}
			rep.Limiter.Replicas = append(rep.Limiter.Replicas, limiterEntry{Replica: k, Updated: e.Created(), Value: v})
		}
		sort.Slice(rep.Limiter.Replicas, func(i, j int) bool { return rep.Limiter.Replicas[i].Replica < rep.Limiter.Replicas[j].Replica })
	}

	rep.Controls = &control.State{Pauses: []control.Pause{}, Cancels: []control.Cancel{}}
	if kv, err := s.js.KeyValue(actx, n.ControlBucket()); err == nil {
		st, err := control.Store{KV: kv}.State(actx)
		if err != nil {
			return nil, fmt.Errorf("KV bucket %s: %w", n.ControlBucket(), err)
		}
		rep.Controls = st
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("KV bucket %s: %w", n.ControlBucket(), err)
	}

	pings, err := pingServices(ctx, s.nc, "pushworker")
	if err != nil {
		return nil, err
	}
	rep.Services = pings
	return rep, nil
}

// pingServices collects the answers of a micro service's instances for pingWait.
func pingServices(ctx context.Context, nc *nats.Conn, name string) ([]micro.Ping, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.PING."+name, inbox, nil); err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, pingWait)
	defer cancel()
	out := []micro.Ping{}
	for {
		m, err := sub.NextMsgWithContext(pctx)
		if err != nil {
			break
		}
		var p micro.Ping
		if json.Unmarshal(m.Data, &p) == nil && p.ID != "" {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (a *app) printStatus(s *session, rep *statusReport) {
	w := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "NATS %s\n\n", s.url)
	fmt.Fprintln(w, "STREAM\tMESSAGES\tBYTES\tFIRST SEQ\tLAST SEQ\tLAST MESSAGE\tCONSUMERS")
	for _, st := range rep.Streams {
		if !st.Found {
			fmt.Fprintf(w, "%s\tnot found\t\t\t\t\t\n", st.Name)
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%s\t%d\n", st.Name, st.Messages, humanBytes(st.Bytes), st.FirstSeq, st.LastSeq, fmtTime(st.LastTime), st.Consumers)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CONSUMER\tSTREAM\tPENDING\tACK PENDING\tREDELIVERED\tWAITING PULLS")
	if len(rep.Consumers) == 0 {
		fmt.Fprintln(w, "(none: no pushworker has started yet)\t\t\t\t\t")
	}
	for _, c := range rep.Consumers {
		name := c.Name
		if c.Paused {
			name += " (paused)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\n", name, c.Stream, c.NumPending, c.NumAckPending, c.NumRedelivered, c.NumWaiting)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "JOB TYPE\tIN STREAM")
	types := make([]string, 0, len(rep.Pending))
	for t := range rep.Pending {
		types = append(types, t)
	}
	sort.Strings(types)
	if len(types) == 0 {
		fmt.Fprintln(w, "(no jobs waiting)\t")
	}
	for _, t := range types {
		fmt.Fprintf(w, "%s\t%d\n", t, rep.Pending[t])
	}
	fmt.Fprintln(w)
	w.Flush()

	fmt.Fprintf(a.stdout, "Rate limiter (KV %s):", rep.Limiter.Bucket)
	switch {
	case !rep.Limiter.Found:
		fmt.Fprintln(a.stdout, " bucket not found (no replica shares a budget yet)")
	case len(rep.Limiter.Replicas) == 0:
		fmt.Fprintln(a.stdout, " no replicas")
	default:
		fmt.Fprintf(a.stdout, " %d replicas\n", len(rep.Limiter.Replicas))
		for _, r := range rep.Limiter.Replicas {
			fmt.Fprintf(a.stdout, "  %s  updated %s", r.Replica, fmtTime(r.Updated))
			if budgets := limiterBudgets(r.Value); len(budgets) > 0 {
				fmt.Fprintln(a.stdout)
				for _, b := range budgets {
					fmt.Fprintf(a.stdout, "    %s\n", b)
				}
				continue
			}
			fmt.Fprintf(a.stdout, "  %s\n", truncate(string(r.Value), 200))
		}
	}
	fmt.Fprintf(a.stdout, "\nOperator controls (KV %s):", s.names.ControlBucket())
	if rep.Controls.Empty() {
		fmt.Fprintln(a.stdout, " nothing paused or cancelled")
	} else {
		fmt.Fprintln(a.stdout)
		for _, p := range rep.Controls.Pauses {
			fmt.Fprintf(a.stdout, "  paused %s for %s since %s until %s", p.Target, appLabel(p.App), fmtTime(p.Since), untilLabel(p.Until))
			if p.Reason != "" {
				fmt.Fprintf(a.stdout, " (%s)", p.Reason)
			}
			fmt.Fprintln(a.stdout)
		}
		for _, c := range rep.Controls.Cancels {
			fmt.Fprintf(a.stdout, "  cancelled request ids %q since %s until %s\n", c.Prefix, fmtTime(c.Since), untilLabel(c.Until))
		}
	}
	fmt.Fprintf(a.stdout, "\nService instances ($SRV.PING.pushworker):")
	if len(rep.Services) == 0 {
		fmt.Fprintf(a.stdout, " none answered within %s\n", pingWait)
		return
	}
	fmt.Fprintf(a.stdout, " %d\n", len(rep.Services))
	for _, p := range rep.Services {
		fmt.Fprintf(a.stdout, "  %s  version %s\n", p.ID, p.Version)
	}
}

// limiterBudgets reads the per-(app, class) budgets of a limiter heartbeat, one line each;
// nil when the value has another shape (then the raw value is shown).
func limiterBudgets(v json.RawMessage) []string {
	hb, err := limiter.DecodeHeartbeat(v)
	if err != nil {
		return nil
	}
	var out []string
	for _, b := range hb.Budgets {
		line := fmt.Sprintf("app %s class %s: share %.0f%%, used %.0f%%", b.App, b.Class, 100*b.Share, 100*b.Used)
		if b.Hungry {
			line += ", hungry"
		}
		out = append(out, line)
	}
	return out
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
