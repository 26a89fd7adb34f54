package worker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's Prometheus collectors.
type Metrics struct {
	jobs             *prometheus.CounterVec
	attempts         *prometheus.CounterVec
	waits            *prometheus.CounterVec
	dedupHits        *prometheus.CounterVec
	dlqWrites        *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	limiterWait      *prometheus.HistogramVec
	tokens           *prometheus.CounterVec
	inflight         prometheus.Gauge
	outboxBatches    prometheus.Counter
	outboxWrites     prometheus.Counter
	paused           *prometheus.GaugeVec
	cancels          prometheus.Gauge
	orphans          *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushworker_jobs_total", Help: "Jobs finished, by type and result status.",
		}, []string{"type", "status"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushworker_job_attempts_total", Help: "Upstream attempts that failed and were scheduled for retry, by type.",
		}, []string{"type", "kind"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushworker_job_delays_total", Help: "Jobs handed back to wait without using an attempt, by type and reason (breaker, paused, in_flight_copy, unrecorded).",
		}, []string{"type", "reason"}),
		dedupHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushworker_dedup_hits_total", Help: "Jobs answered with a stored result because their request id was already sent.",
		}, []string{"type"}),
		dlqWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushworker_dlq_writes_total", Help: "Entries written to the dead-letter stream, by type.",
		}, []string{"type"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pushworker_upstream_request_duration_seconds", Help: "Upstream call duration by upstream, path and outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"upstream", "path", "outcome"}),
		limiterWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pushworker_limiter_wait_seconds", Help: "Time jobs waited for rate budget, by class.",
			Buckets: []float64{.0001, .001, .005, .01, .05, .1, .5, 1, 5, 30},
		}, []string{"class"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushworker_limiter_tokens_total", Help: "Rate tokens of the upstream calls made, by app and class (the budget is pushworker_limiter_rate).",
		}, []string{"app", "class"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushworker_jobs_in_flight", Help: "Jobs being processed by this replica.",
		}),
		outboxBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushworker_outbox_batches_total", Help: "Batches of NATS writes (claims, records, results, acks) of rate-limited jobs sent together.",
		}),
		outboxWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushworker_outbox_writes_total", Help: "NATS writes of rate-limited jobs sent in batches; divided by the batches, the mean batch.",
		}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushworker_paused", Help: "1 for each operator pause in force, by app (* for every app) and target (job type or rate class).",
		}, []string{"app", "target"}),
		cancels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushworker_cancellations", Help: "Operator cancellations (request-id prefixes) in force.",
		}),
		orphans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushworker_consumer_resets_total", Help: "Consumers reset to deliver a job again that was left in the stream below their ack floor, by consumer.",
		}, []string{"consumer"}),
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.attempts, m.waits, m.dedupHits, m.dlqWrites, m.upstreamDuration, m.limiterWait, m.tokens, m.inflight, m.outboxBatches, m.outboxWrites, m.paused, m.cancels, m.orphans)
	}
	return m
}
