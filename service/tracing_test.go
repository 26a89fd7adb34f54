package service

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/internal/natstest"
)

// clearOTEL unsets the OTEL_* variables a test could inherit.
func clearOTEL(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, "")
	}
}

// TestTracingExportsJobSpans: with OTEL_EXPORTER_OTLP_ENDPOINT set, a job that carries a
// traceparent yields its spans at the collector, in the producer's trace, by the time Run
// has returned (the last spans are flushed at shutdown).
func TestTracingExportsJobSpans(t *testing.T) {
	var mu sync.Mutex
	var spans []string // "<service.name> <trace id> <name>"
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range req.ResourceSpans {
			service := ""
			for _, kv := range rs.Resource.Attributes {
				if kv.Key == "service.name" {
					service = kv.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans = append(spans, service+" "+hex.EncodeToString(s.TraceId)+" "+s.Name)
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(collector.Close)

	srv := natstest.Start(t, natstest.JetStream(t, ""))
	nc, js := natstest.Connect(t, srv)
	clearOTEL(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("PUSH_NATS_URL", srv.ClientURL())
	t.Setenv("PUSH_SANDBOX", "true")
	t.Setenv("PUSH_ADMIN_ADDR", "127.0.0.1:0")
	t.Setenv("PUSH_SHUTDOWN_TIMEOUT", "5s")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c, zerolog.Nop()) }()

	results, err := nc.SubscribeSync("push.results.p2p")
	if err != nil {
		t.Fatal(err)
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	m := nats.NewMsg("push.jobs.p2p")
	m.Data = []byte(`{"request_id":"traced-service-1","payload":{"fromAccount":"shop","toAccount":"u42","msg":"hi"}}`)
	m.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	deadline := time.Now().Add(30 * time.Second)
	for { // the worker creates the streams when it starts
		pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.PublishMsg(pctx, m)
		pcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not publish the job: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err := results.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.Get("Push-Status") != "sent" || len(res.Header.Get("traceparent")) != 55 || res.Header.Get("traceparent")[3:35] != traceID {
		t.Fatalf("result headers %v", res.Header)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"process push.jobs.p2p": false, "limiter wait": false, "POST /api/push/p2p/": false, "publish push.results.p2p": false}
	for _, s := range spans {
		for name := range want {
			if s == "pushworker "+traceID+" "+name {
				want[name] = true
			}
		}
	}
	for name, seen := range want {
		if !seen {
			t.Fatalf("span %q of service pushworker in trace %s not exported; got %v", name, traceID, spans)
		}
	}
}

// TestBadTracingVariableIsNamed: a bad OTEL_* value stops the start with an error naming it.
func TestBadTracingVariableIsNamed(t *testing.T) {
	clearOTEL(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	t.Setenv("PUSH_ADMIN_ADDR", "127.0.0.1:0")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = Run(ctx, c, zerolog.Nop())
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "OTEL_EXPORTER_OTLP_PROTOCOL" {
		t.Fatalf("error %v, want one naming OTEL_EXPORTER_OTLP_PROTOCOL", err)
	}
}
