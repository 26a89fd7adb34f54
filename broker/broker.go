// Package broker owns pushworker's side of NATS: the connection (or an embedded server),
// the names of subjects, streams, consumers and buckets, and their idempotent set-up.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
)

// Names derives every NATS name from the subject and stream prefixes.
type Names struct {
	Subject string // "push"
	Stream  string // "PUSH"
}

// NamesFrom returns the names of a configuration.
func NamesFrom(c config.Config) Names { return Names{Subject: c.SubjectPrefix, Stream: c.StreamPrefix} }

// JobsStream is the work-queue stream of jobs.
func (n Names) JobsStream() string { return n.Stream + "_JOBS" }

// ResultsStream is the stream of results and notify stats.
func (n Names) ResultsStream() string { return n.Stream + "_RESULTS" }

// DLQStream is the dead-letter stream.
func (n Names) DLQStream() string { return n.Stream + "_DLQ" }

// DedupBucket is the KV bucket of request ids.
func (n Names) DedupBucket() string { return n.Stream + "_DEDUP" }

// LimiterBucket is the KV bucket the replicas share their rate budget through.
func (n Names) LimiterBucket() string { return n.Stream + "_LIMITER" }

// StatsBucket is the KV bucket of notify tasks being polled for delivery stats.
func (n Names) StatsBucket() string { return n.Stream + "_NOTIFY_TASKS" }

// ControlBucket is the KV bucket of the operator's pauses and cancellations.
func (n Names) ControlBucket() string { return n.Stream + "_CONTROL" }

// JobSubject is where jobs of type t are published.
func (n Names) JobSubject(t string) string { return n.Subject + ".jobs." + t }

// ScheduleWildcard matches the subjects of jobs waiting for their not_before as scheduled
// messages (jobs.ScheduleSubject): <prefix>.jobs._sched.>, inside JobsWildcard.
func (n Names) ScheduleWildcard() string { return n.Subject + ".jobs." + jobs.ScheduleToken + ".>" }

// JobsWildcard matches every job subject.
func (n Names) JobsWildcard() string { return n.Subject + ".jobs.>" }

// ResultSubject is the default result subject of type t.
func (n Names) ResultSubject(t string) string { return n.Subject + ".results." + t }

// NotifyStatsSubject is where notify delivery stats are published.
func (n Names) NotifyStatsSubject() string { return n.Subject + ".results.notify_stats" }

// DLQSubject is where rejected and failed jobs of type t go.
func (n Names) DLQSubject(t string) string { return n.Subject + ".dlq." + t }

// APISubject is the subject prefix of the request/reply API.
func (n Names) APISubject() string { return n.Subject + ".api" }

// ControlSubject carries messages between replicas (breaker state).
func (n Names) ControlSubject(s string) string { return n.Subject + ".internal." + s }

// Consumer is the durable consumer of a job type.
func (n Names) Consumer(jobType string) string { return "pushworker-" + jobType }

// LaneConsumer is the durable consumer of a job type's priority lane (README "Campaigns"):
// Consumer for normal jobs, pushworker-<type>-<lane> for the high and low lanes.
func (n Names) LaneConsumer(jobType string, lane jobs.Priority) string {
	if lane == jobs.PriorityHigh || lane == jobs.PriorityLow {
		return n.Consumer(jobType) + "-" + string(lane)
	}
	return n.Consumer(jobType)
}

// ConsumerLanes are the priority lanes that have a consumer each, normal first.
var ConsumerLanes = []jobs.Priority{jobs.PriorityNormal, jobs.PriorityHigh, jobs.PriorityLow}

// StartEmbedded starts an in-process NATS server with JetStream, listening on
// PUSH_EMBEDDED_LISTEN and storing in PUSH_DATA_DIR, synced as PUSH_EMBEDDED_SYNC says.
func StartEmbedded(c config.Config) (*server.Server, error) {
	opts, err := embeddedOptions(c)
	if err != nil {
		return nil, err
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not start on %s (is the port in use? set PUSH_EMBEDDED_LISTEN)", c.EmbeddedListen)
	}
	return s, nil
}

// embeddedOptions are the options of the embedded server of c.
func embeddedOptions(c config.Config) (*server.Options, error) {
	host, portS, err := net.SplitHostPort(c.EmbeddedListen)
	if err != nil {
		return nil, &config.Error{Var: "PUSH_EMBEDDED_LISTEN", Msg: err.Error()}
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, &config.Error{Var: "PUSH_EMBEDDED_LISTEN", Msg: "port must be a number"}
	}
	maxPayload := int32(8 << 20)
	if c.MaxJobBytes*2 > int(maxPayload) {
		maxPayload = int32(min(c.MaxJobBytes*2, 64<<20))
	}
	opts := &server.Options{
		ServerName: "pushworker-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   c.DataDir,
		MaxPayload: maxPayload,
		NoSigs:     true,
	}
	// As the server's own configuration file reads "sync_interval: always": SyncAlways with
	// the default interval for the background sync of the other files.
	always, interval := c.EmbeddedSyncPolicy()
	opts.SyncAlways = always
	opts.SyncInterval = interval
	return opts, nil
}

// Connect connects to url with the authentication and TLS settings of c.
func Connect(c config.Config, url, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.PingInterval(10 * time.Second),
	}
	if c.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(c.NATSCreds))
	}
	if c.NATSNKey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NATSNKey)
		if err != nil {
			return nil, &config.Error{Var: "PUSH_NATS_NKEY", Msg: err.Error()}
		}
		opts = append(opts, o)
	}
	if c.NATSUser != "" {
		opts = append(opts, nats.UserInfo(c.NATSUser, c.NATSPassword.Reveal()))
	}
	if !c.NATSToken.IsZero() {
		opts = append(opts, nats.Token(c.NATSToken.Reveal()))
	}
	if c.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(c.NATSTLSCA))
	}
	if c.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(c.NATSTLSCert, c.NATSTLSKey))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", redactURL(url), err)
	}
	return nc, nil
}

// redactURL hides passwords in nats://user:pass@host URLs.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "[redacted]" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// EnsureStreams creates or updates the jobs, results and DLQ streams (§2) when
// PUSH_MANAGE_STREAMS is true, and checks that they exist when it is false.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c config.Config) error {
	n := NamesFrom(c)
	cfgs := []jetstream.StreamConfig{
		{
			Name:        n.JobsStream(),
			Description: "pushworker jobs",
			Subjects:    []string{n.JobsWildcard()},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.StreamReplicas,
			Duplicates:  c.DuplicateWindow,
			MaxMsgSize:  -1,
			// Jobs due later wait as scheduled messages on <prefix>.jobs._sched.<type>.<id>
			// (ScheduleWildcard), which no consumer filters (README "Campaigns"); schedules
			// need roll-ups.
			AllowMsgSchedules: true,
			AllowRollup:       true,
		},
		{
			Name:        n.ResultsStream(),
			Description: "pushworker results and notify delivery stats",
			Subjects:    []string{n.Subject + ".results.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.StreamReplicas,
			MaxAge:      c.ResultsMaxAge,
			Duplicates:  0, // the server's default: 2m, less when the max age or the server's limit is less
		},
		{
			Name:        n.DLQStream(),
			Description: "pushworker jobs that were rejected or ran out of attempts",
			Subjects:    []string{n.Subject + ".dlq.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.StreamReplicas,
			MaxAge:      c.DLQMaxAge,
			Duplicates:  0, // as PUSH_RESULTS
		},
	}
	for _, sc := range cfgs {
		if !c.ManageStreams {
			if _, err := js.Stream(ctx, sc.Name); err != nil {
				return fmt.Errorf("stream %s: %w (PUSH_MANAGE_STREAMS is false, so it must exist)", sc.Name, err)
			}
			continue
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return streamError(sc, n, err)
		}
	}
	return nil
}

// replicaErrCodes are the server's answers to more replicas than it can place.
var replicaErrCodes = map[jetstream.ErrorCode]bool{
	jetstream.ErrorCode(server.ApiErrors[server.JSStreamReplicasNotSupportedErr].ErrCode): true, // not clustered
	jetstream.ErrorCode(server.ApiErrors[server.JSInsufficientResourcesErr].ErrCode):      true,
	jetstream.ErrorCode(server.ApiErrors[server.JSClusterNoPeersErrF].ErrCode):            true, // too few servers
}

// streamError explains a failed stream create or update, naming the variable at fault when
// the server refused a setting that comes from one.
func streamError(sc jetstream.StreamConfig, n Names, err error) error {
	err = fmt.Errorf("creating or updating stream %s: %w", sc.Name, err)
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return err
	}
	switch {
	case sc.Replicas > 1 && replicaErrCodes[apiErr.ErrorCode]:
		return &config.Error{Var: "PUSH_STREAM_REPLICAS", Err: err,
			Msg: fmt.Sprintf("the NATS server cannot place %d replicas (set at most the number of JetStream servers of the cluster, 1 without a cluster): %v", sc.Replicas, err)}
	case sc.Name == n.JobsStream() && strings.Contains(apiErr.Description, "duplicates window"):
		return &config.Error{Var: "PUSH_DUPLICATE_WINDOW", Err: err,
			Msg: fmt.Sprintf("the NATS server refuses a duplicate window of %v: %v", sc.Duplicates, err)}
	}
	return err
}

// ConsumerTypes lists the job types in the order their consumers are set up: first the
// types named like their rate class. Earlier versions had one consumer per rate class, for
// every type of the class (pushworker-p2p also took p2p_more); a work-queue stream refuses
// consumers whose filters overlap, so those are narrowed to their own type before the other
// types' consumers are created.
func ConsumerTypes() []jobs.Spec {
	specs := jobs.Specs()
	sort.SliceStable(specs, func(i, j int) bool {
		return string(specs[i].Type) == specs[i].Class && string(specs[j].Type) != specs[j].Class
	})
	return specs
}

// ConsumerSettings size a job type's consumer.
type ConsumerSettings struct {
	AckWait       time.Duration
	MaxAckPending int
	// PauseUntil keeps the consumer paused (an operator's pause of the type for every
	// app, README "Campaigns"); zero: not paused.
	PauseUntil time.Time
	// Lane is the priority lane the consumer reads (PriorityNormal or "": the type's
	// subject itself).
	Lane jobs.Priority
}

// EnsureConsumer creates or updates the durable pull consumer of a job type. Each type has
// its own, so that a backlog of one type never holds back the jobs of another.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, n Names, jobType string, s ConsumerSettings) (jetstream.Consumer, error) {
	spec, ok := jobs.Lookup(jobType)
	if !ok {
		return nil, fmt.Errorf("unknown job type %q", jobType)
	}
	desc := "pushworker jobs of type " + jobType + " (rate class " + spec.Class + ")"
	if s.Lane == jobs.PriorityHigh || s.Lane == jobs.PriorityLow {
		desc = "pushworker " + string(s.Lane) + " priority jobs of type " + jobType + " (rate class " + spec.Class + ")"
	}
	cc := jetstream.ConsumerConfig{
		Durable:       n.LaneConsumer(jobType, s.Lane),
		Description:   desc,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: s.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: jobs.JobSubject(n.Subject, jobType, s.Lane),
	}
	if !s.PauseUntil.IsZero() {
		cc.PauseUntil = &s.PauseUntil
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, n.JobsStream(), cc)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cc.Durable, err)
	}
	return cons, nil
}

// KV creates or updates a KV bucket (so that a changed TTL takes effect), or opens it as it
// is when it cannot be updated (PUSH_MANAGE_STREAMS=false, or a configuration the server
// will not change).
func KV(ctx context.Context, js jetstream.JetStream, c config.Config, bucket string, ttl time.Duration) (jetstream.KeyValue, error) {
	if c.ManageStreams {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   bucket,
			TTL:      ttl,
			Storage:  jetstream.FileStorage,
			Replicas: c.StreamReplicas,
			History:  1,
		})
		if err == nil {
			return kv, nil
		}
		if kv, err2 := js.KeyValue(ctx, bucket); err2 == nil {
			return kv, nil
		}
		return nil, fmt.Errorf("creating KV bucket %s: %w", bucket, err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, TTL: ttl, Storage: jetstream.FileStorage, Replicas: c.StreamReplicas, History: 1})
	}
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", bucket, err)
	}
	return kv, nil
}
