package tracing

import "go.opentelemetry.io/otel/attribute"

// Attributes of pushworker's spans besides the semantic conventions' (README "Tracing").
const (
	JobType      = attribute.Key("pushworker.job.type")      // job type: p2p, notify, …
	App          = attribute.Key("pushworker.app")           // the job's app
	JobSeq       = attribute.Key("pushworker.job_seq")       // the job's stream sequence
	Delivery     = attribute.Key("pushworker.delivery")      // JetStream's delivery count of the message
	Attempt      = attribute.Key("pushworker.attempt")       // the attempt this delivery makes (1 = first)
	Status       = attribute.Key("pushworker.status")        // the result's status
	Attempts     = attribute.Key("pushworker.attempts")      // the result's attempts
	Duplicate    = attribute.Key("pushworker.duplicate")     // the result is a stored one, replayed
	RateClass    = attribute.Key("pushworker.rate_class")    // limiter wait: the class
	Weight       = attribute.Key("pushworker.weight")        // limiter wait: tokens
	Upstream     = attribute.Key("pushworker.upstream")      // upstream call: mimc or notify
	Outcome      = attribute.Key("pushworker.outcome")       // upstream call: sent, partial, retryable, permanent, configuration
	UpstreamCode = attribute.Key("pushworker.upstream.code") // upstream call: the answer's body code
	DelayMillis  = attribute.Key("pushworker.delay_ms")      // "handed back" event: the delay before the next delivery
	LinkRelation = attribute.Key("pushworker.link")          // a link's meaning
)

// LinkPreviousAttempt is the LinkRelation of a retry's link to the delivery whose attempt
// failed before it.
const LinkPreviousAttempt = "previous_attempt"
