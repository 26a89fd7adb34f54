package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/config"
)

// session is a connection to NATS with JetStream and the names of pushworker's resources.
type session struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	names broker.Names
	url   string // the server URL(s), passwords redacted
}

func (s *session) Close() { s.nc.Drain() }

// names returns the NATS names of the global --prefix and --stream-prefix.
func (a *app) names() broker.Names {
	return broker.Names{Subject: a.g.prefix, Stream: a.g.streamPrefix}
}

// connect connects to NATS with the global flags. Extra jetstream options configure the
// JetStream context (e.g. async publishing).
func (a *app) connect(opts ...jetstream.JetStreamOpt) (*session, error) {
	if a.g.prefix == "" || strings.ContainsAny(a.g.prefix, " *>") {
		return nil, fmt.Errorf("--prefix %q is not a valid subject prefix", a.g.prefix)
	}
	if a.g.streamPrefix == "" || strings.ContainsAny(a.g.streamPrefix, " .*>") {
		return nil, fmt.Errorf("--stream-prefix %q is not a valid stream name prefix", a.g.streamPrefix)
	}
	c := config.Config{
		NATSCreds:    a.g.creds,
		NATSNKey:     a.g.nkey,
		NATSUser:     a.g.user,
		NATSPassword: config.NewSecret(a.g.password),
		NATSToken:    config.NewSecret(a.g.token),
		NATSTLSCA:    a.g.tlsCA,
		NATSTLSCert:  a.g.tlsCert,
		NATSTLSKey:   a.g.tlsKey,
	}
	url := redactURL(a.g.server)
	nc, err := broker.Connect(c, a.g.server, "pushctl", nats.Timeout(5*time.Second))
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, err
		}
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		if errors.Is(err, nats.ErrNoServers) {
			if derr := dialError(a.g.server); derr != nil {
				err = derr // "connection refused" says more than "no servers available"
			}
		}
		return nil, fmt.Errorf("cannot reach NATS at %s: %w", url, err)
	}
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &session{nc: nc, js: js, names: a.names(), url: url}, nil
}

// stream opens a stream by name, with a clear error when it is missing.
func (s *session) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, s.streamErr(name, err)
	}
	return st, nil
}

// streamErr turns the error of an operation on a stream into a one-line explanation.
func (s *session) streamErr(name string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrNoStreamResponse):
		return fmt.Errorf("stream %s not found: is pushworker running with PUSH_MANAGE_STREAMS=true?", name)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("JetStream is not enabled at %s: %w", s.url, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("stream %s: no answer from JetStream at %s: %w", name, s.url, err)
	}
	return fmt.Errorf("stream %s: %w", name, err)
}

// dialError dials the first server of a URL list and returns why that fails, if it does.
func dialError(servers string) error {
	first, _, _ := strings.Cut(servers, ",")
	u, err := neturl.Parse(strings.TrimSpace(first))
	if err != nil || u.Host == "" {
		return nil
	}
	switch u.Scheme {
	case "nats", "tls", "":
	default:
		return nil
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return err
	}
	c.Close()
	return nil
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

// apiContext bounds one JetStream API round trip.
func apiContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 10*time.Second)
}
