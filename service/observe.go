package service

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
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

// sample refreshes the sampled gauges every few seconds until ctx ends.
func (g *gauges) sample(ctx context.Context, js jetstream.JetStream, c config.Config, lim *limiter.Limiter, coord *limiter.Coordinator) {
	n := broker.NamesFrom(c)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		for _, app := range c.AppNames() {
			for _, class := range config.Classes {
				g.rate.WithLabelValues(app, class).Set(c.Apps[app].Rate(class))
				g.share.WithLabelValues(app, class).Set(lim.Share(app, class))
			}
		}
		g.replicas.Set(float64(coord.Replicas()))
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if st, err := js.Stream(cctx, n.JobsStream()); err == nil {
			if info, err := st.Info(cctx, jetstream.WithSubjectFilter(n.JobsWildcard())); err == nil {
				setByType(g.pending, info.State.Subjects, n.JobSubject(""))
			}
			for _, spec := range jobs.Specs() {
				name := n.Consumer(string(spec.Type))
				if ci, err := st.Consumer(cctx, name); err == nil {
					info := ci.CachedInfo()
					if fresh, err := ci.Info(cctx); err == nil {
						info = fresh
					}
					g.ackPending.WithLabelValues(name, string(spec.Type)).Set(float64(info.NumAckPending))
					g.redelivered.WithLabelValues(name, string(spec.Type)).Set(float64(info.NumRedelivered))
				}
			}
		}
		if st, err := js.Stream(cctx, n.DLQStream()); err == nil {
			if info, err := st.Info(cctx, jetstream.WithSubjectFilter(n.DLQSubject(">"))); err == nil {
				setByType(g.dlq, info.State.Subjects, n.DLQSubject(""))
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
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
