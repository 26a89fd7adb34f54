package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/internal/natstest"
)

// streamsTestJS starts an embedded NATS server with JetStream, changed by opts, and
// returns a JetStream context connected to it.
func streamsTestJS(t *testing.T, opts ...func(*server.Options)) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Start(t, append([]func(*server.Options){natstest.JetStream(t, "")}, opts...)...))
	return js
}

// streamsTestConfig is the default configuration with vars set.
func streamsTestConfig(t *testing.T, vars map[string]string) config.Config {
	t.Helper()
	for k, v := range vars {
		t.Setenv(k, v)
	}
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ensureStreams(js jetstream.JetStream, c config.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return EnsureStreams(ctx, js, c)
}

// TestShortMaxAgesMakeValidStreams: a results or DLQ max age under 2m is valid; the
// duplicate window of those streams never exceeds their max age.
func TestShortMaxAgesMakeValidStreams(t *testing.T) {
	js := streamsTestJS(t)
	c := streamsTestConfig(t, map[string]string{"PUSH_RESULTS_MAX_AGE": "30s", "PUSH_DLQ_MAX_AGE": "90s"})
	if err := ensureStreams(js, c); err != nil {
		t.Fatalf("PUSH_RESULTS_MAX_AGE=30s PUSH_DLQ_MAX_AGE=90s: %v", err)
	}
	for name, age := range map[string]time.Duration{"PUSH_RESULTS": 30 * time.Second, "PUSH_DLQ": 90 * time.Second} {
		s, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if cfg.MaxAge != age || cfg.Duplicates <= 0 || cfg.Duplicates > age {
			t.Fatalf("%s: max age %v duplicates %v, want max age %v and a window no larger", name, cfg.MaxAge, cfg.Duplicates, age)
		}
	}
	// And back to the defaults: the update is accepted too.
	c.ResultsMaxAge, c.DLQMaxAge = 168*time.Hour, 720*time.Hour
	if err := ensureStreams(js, c); err != nil {
		t.Fatalf("update to the default max ages: %v", err)
	}
}

// TestStreamErrorsNameTheVariable: settings the server refuses stop the start with an
// error naming the variable.
func TestStreamErrorsNameTheVariable(t *testing.T) {
	t.Run("PUSH_STREAM_REPLICAS", func(t *testing.T) {
		js := streamsTestJS(t) // not clustered: 1 replica at most
		err := ensureStreams(js, streamsTestConfig(t, map[string]string{"PUSH_STREAM_REPLICAS": "3"}))
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != "PUSH_STREAM_REPLICAS" || !strings.Contains(err.Error(), "PUSH_STREAM_REPLICAS") {
			t.Fatalf("3 replicas on a single server: error %v, want one naming PUSH_STREAM_REPLICAS", err)
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("the server's error is not kept: %v", err)
		}
	})
	t.Run("PUSH_DUPLICATE_WINDOW", func(t *testing.T) {
		js := streamsTestJS(t, func(o *server.Options) { o.JetStreamLimits.Duplicates = time.Minute })
		err := ensureStreams(js, streamsTestConfig(t, map[string]string{"PUSH_DUPLICATE_WINDOW": "5m"}))
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != "PUSH_DUPLICATE_WINDOW" {
			t.Fatalf("a 5m window over the server's 1m limit: error %v, want one naming PUSH_DUPLICATE_WINDOW", err)
		}
		// Within the limit, all three streams are made (the results and DLQ windows
		// follow the server's limit as well).
		if err := ensureStreams(js, streamsTestConfig(t, map[string]string{"PUSH_DUPLICATE_WINDOW": "1m"})); err != nil {
			t.Fatalf("a 1m window within the server's 1m limit: %v", err)
		}
	})
}
