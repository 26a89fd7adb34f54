package notifystats

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the poller's Prometheus collectors.
type Metrics struct {
	polls     *prometheus.CounterVec
	published prometheus.Counter
	tasks     prometheus.Gauge
}

// NewMetrics creates the collectors and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushworker_notify_stats_polls_total", Help: "Delivery stats calls for a batch of notify tasks, by outcome (ok, failed, skipped: the app's notify upstream was paused or open, or it has no notify credentials).",
		}, []string{"outcome"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushworker_notify_stats_published_total", Help: "Delivery stats changes published to <prefix>.results.notify_stats.",
		}),
		tasks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushworker_notify_stats_tasks", Help: "Notify tasks this replica polls the delivery stats of.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.polls, m.published, m.tasks)
	}
	return m
}
