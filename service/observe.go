package service

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/dashboard"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/limiter"
	"github.com/pushworker/pushworker/upstream"
)

// gauges are the state metrics sampled in the background: breaker state, rate budget
// and share, the jobs stream's pending and redelivered counts, and the dead-letter stream's
// entries.
type gauges struct {
	breaker     *prometheus.GaugeVec
	rate        *prometheus.GaugeVec
	share       *prometheus.GaugeVec
	replicas    prometheus.Gauge
	pending     *prometheus.GaugeVec
	ackPending  *prometheus.GaugeVec
	redelivered *prometheus.GaugeVec
	dlq         *prometheus.GaugeVec
}

func newGauges(reg prometheus.Registerer) *gauges {
	g := &gauges{
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushworker_breaker_open", Help: "1 while the gate of an app's upstream is open (kind=availability) or paused for a configuration error (kind=configuration).",
		}, []string{"app", "upstream", "host", "kind"}),
		rate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushworker_limiter_rate", Help: "Configured rate of an app's class for the whole deployment, in tokens per second.",
		}, []string{"app", "class"}),
		share: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushworker_limiter_budget_share", Help: "Fraction of an app's class rate this replica may use.",
		}, []string{"app", "class"}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushworker_replicas", Help: "Live replicas sharing the rate budget, as seen by this one.",
		}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushworker_jobs_pending", Help: "Jobs waiting in the jobs stream, by type.",
		}, []string{"type"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushworker_consumer_ack_pending", Help: "Jobs delivered and not yet acked, by consumer (one per job type).",
		}, []string{"consumer", "type"}),
		redelivered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushworker_consumer_redelivered", Help: "Jobs being redelivered (retries and hand-backs), by consumer (one per job type).",
		}, []string{"consumer", "type"}),
		dlq: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushworker_dlq_messages", Help: "Entries in the dead-letter stream, by type (written by rejected and failed jobs, deleted by pushctl dlq replay).",
		}, []string{"type"}),
	}
	reg.MustRegister(g.breaker, g.rate, g.share, g.replicas, g.pending, g.ackPending, g.redelivered, g.dlq)
	return g
}

// gate records a gate change.
func (g *gauges) gate(s upstream.GateState) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	g.breaker.WithLabelValues(s.App, s.Upstream, s.Host, "availability").Set(b(s.Open))
	g.breaker.WithLabelValues(s.App, s.Upstream, s.Host, "configuration").Set(b(s.Paused))
}

// sample refreshes the sampled gauges every few seconds until ctx ends, every second while
// the dashboard is watched, and hands the backlog to the dashboard's chart (ui may be nil).
func (g *gauges) sample(ctx context.Context, js jetstream.JetStream, c config.Config, lim *limiter.Limiter, coord *limiter.Coordinator, ui *dashboard.Dashboard) {
	n := broker.NamesFrom(c)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last time.Time
	for {
		if now := time.Now(); now.Sub(last) >= 5*time.Second-100*time.Millisecond || ui.Watched() {
			last = now
			g.sampleOnce(ctx, js, n, c, lim, coord, ui)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *gauges) sampleOnce(ctx context.Context, js jetstream.JetStream, n broker.Names, c config.Config, lim *limiter.Limiter, coord *limiter.Coordinator, ui *dashboard.Dashboard) {
	for _, app := range c.AppNames() {
		for _, class := range config.Classes {
			g.rate.WithLabelValues(app, class).Set(c.Apps[app].Rate(class))
			g.share.WithLabelValues(app, class).Set(lim.Share(app, class))
		}
	}
	g.replicas.Set(float64(coord.Replicas()))
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if st, err := js.Stream(cctx, n.DLQStream()); err == nil {
		if info, err := st.Info(cctx, jetstream.WithSubjectFilter(n.DLQSubject(">"))); err == nil {
			setByType(g.dlq, info.State.Subjects, n.DLQSubject(""))
		}
	}
	st, err := js.Stream(cctx, n.JobsStream())
	if err != nil {
		return
	}
	sample := dashboard.BacklogSample{At: time.Now()}
	byType := map[string]*dashboard.TypeBacklog{}
	for _, spec := range jobs.Specs() { // known types show 0, not nothing
		sample.Types = append(sample.Types, dashboard.TypeBacklog{Type: string(spec.Type)})
	}
	for i := range sample.Types {
		byType[sample.Types[i].Type] = &sample.Types[i]
	}
	var unknown []dashboard.TypeBacklog // appended at the end: byType points into sample.Types
	stored := false
	if info, err := st.Info(cctx, jetstream.WithSubjectFilter(n.JobsWildcard())); err == nil {
		stored = true
		g.pending.Reset()
		for _, spec := range jobs.Specs() {
			g.pending.WithLabelValues(string(spec.Type)).Set(0)
		}
		for subj, cnt := range info.State.Subjects {
			tail := strings.TrimPrefix(subj, n.Subject+".jobs.")
			if jobs.IsScheduleTail(tail) { // jobs due later are no type's backlog yet
				continue
			}
			typ, _ := jobs.SplitLane(tail) // lanes count for their type
			g.pending.WithLabelValues(typ).Add(float64(cnt))
			if tb := byType[typ]; tb != nil {
				tb.Stored += cnt
			} else {
				unknown = append(unknown, dashboard.TypeBacklog{Type: typ, Stored: cnt})
			}
		}
	}
	for _, lane := range broker.ConsumerLanes {
		for _, spec := range jobs.Specs() {
			name := n.LaneConsumer(string(spec.Type), lane)
			ci, err := st.Consumer(cctx, name)
			if err != nil {
				continue
			}
			info := ci.CachedInfo()
			if fresh, err := ci.Info(cctx); err == nil {
				info = fresh
			}
			g.ackPending.WithLabelValues(name, string(spec.Type)).Set(float64(info.NumAckPending))
			g.redelivered.WithLabelValues(name, string(spec.Type)).Set(float64(info.NumRedelivered))
			if tb := byType[string(spec.Type)]; tb != nil {
				tb.InFlight += info.NumAckPending
				tb.Redelivered += info.NumRedelivered
			}
		}
	}
	if stored {
		sample.Types = append(sample.Types, unknown...)
		ui.RecordBacklog(sample)
	}
}

// setByType sets v{type} to the message count of each subject <prefix><type>, and every
// known type without messages to 0 rather than no series.
func setByType(v *prometheus.GaugeVec, subjects map[string]uint64, prefix string) {
	v.Reset()
	for _, spec := range jobs.Specs() {
		v.WithLabelValues(string(spec.Type)).Set(0)
	}
	for subj, cnt := range subjects {
		v.WithLabelValues(strings.TrimPrefix(subj, prefix)).Set(float64(cnt))
	}
}
