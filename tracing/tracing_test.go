package tracing_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/tracing"
)

var otelVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
}

// setEnv clears the OTEL_* variables and sets vars.
func setEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
}

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		vars     map[string]string
		want     tracing.Settings
		badVar   string
		disabled bool
	}{
		{name: "unset is off", vars: nil},
		{name: "endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			want: tracing.Settings{Enabled: true, Protocol: "http/protobuf", Endpoint: "http://collector:4318"}},
		{name: "traces endpoint wins, user info not shown", vars: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://u:secret@b:4318/v1/traces"},
			want: tracing.Settings{Enabled: true, Protocol: "http/protobuf", Endpoint: "https://b:4318/v1/traces"}},
		{name: "grpc", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: tracing.Settings{Enabled: true, Protocol: "grpc", Endpoint: "http://collector:4317"}},
		{name: "traces protocol wins", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
			want: tracing.Settings{Enabled: true, Protocol: "grpc", Endpoint: "http://c:4317"}},
		{name: "otlp exporter asked for, default endpoint", vars: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			want: tracing.Settings{Enabled: true, Protocol: "http/protobuf"}},
		{name: "sdk disabled", vars: map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "exporter none", vars: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "bad disabled", vars: map[string]string{"OTEL_SDK_DISABLED": "yes"}, badVar: "OTEL_SDK_DISABLED"},
		{name: "bad exporter", vars: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, badVar: "OTEL_TRACES_EXPORTER"},
		{name: "bad endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, badVar: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "bad protocol", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
			badVar: "OTEL_EXPORTER_OTLP_PROTOCOL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.vars)
			got, err := tracing.FromEnv()
			if tc.badVar != "" {
				var ce *config.Error
				if !errors.As(err, &ce) || ce.Var != tc.badVar {
					t.Fatalf("error %v, want one naming %s", err, tc.badVar)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestSetupOff: with nothing set there is no tracer provider, and Shutdown is a no-op.
func TestSetupOff(t *testing.T) {
	setEnv(t, nil)
	p, err := tracing.Setup(context.Background(), tracing.Options{})
	if err != nil || p.Enabled || p.TracerProvider() != nil {
		t.Fatalf("provider %+v, %v", p, err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestSetupBadResource: a malformed OTEL_RESOURCE_ATTRIBUTES stops the start, named.
func TestSetupBadResource(t *testing.T) {
	setEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_RESOURCE_ATTRIBUTES": "no-value"})
	_, err := tracing.Setup(context.Background(), tracing.Options{OnError: func(error) {}})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "OTEL_RESOURCE_ATTRIBUTES" {
		t.Fatalf("error %v, want one naming OTEL_RESOURCE_ATTRIBUTES", err)
	}
}

// exportedSpan sends one span through a Provider set up from the environment and returns
// what the collector received.
func exportedSpan(t *testing.T, received func() *coltrace.ExportTraceServiceRequest) *coltrace.ExportTraceServiceRequest {
	t.Helper()
	// OnError stays installed after the test: it must not use t.
	p, err := tracing.Setup(context.Background(), tracing.Options{Version: "v9", InstanceID: "replica-1", OnError: func(error) {}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Enabled || p.TracerProvider() == nil {
		t.Fatalf("tracing off: %+v", p.Settings)
	}
	_, sp := p.TracerProvider().Tracer("test").Start(context.Background(), "exported span")
	sp.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil { // flushes the batch
		t.Fatal(err)
	}
	req := received()
	if req == nil || len(req.ResourceSpans) != 1 {
		t.Fatalf("collector received %v", req)
	}
	rs := req.ResourceSpans[0]
	res := map[string]string{}
	for _, kv := range rs.Resource.Attributes {
		res[kv.Key] = kv.Value.GetStringValue()
	}
	if res["service.name"] != "pushworker-test" || res["service.version"] != "v9" || res["service.instance.id"] != "replica-1" || res["deployment.environment.name"] != "ci" {
		t.Fatalf("resource %v", res)
	}
	if len(rs.ScopeSpans) != 1 || len(rs.ScopeSpans[0].Spans) != 1 || rs.ScopeSpans[0].Spans[0].Name != "exported span" {
		t.Fatalf("spans %v", rs.ScopeSpans)
	}
	return req
}

// TestSetupExportsOverHTTP: spans reach an OTLP/HTTP collector at the endpoint of
// OTEL_EXPORTER_OTLP_ENDPOINT, with the resource of the options and OTEL_* variables.
func TestSetupExportsOverHTTP(t *testing.T) {
	var mu sync.Mutex
	var got *coltrace.ExportTraceServiceRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &coltrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = req
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	setEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_SERVICE_NAME": "pushworker-test",
		"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=ci"})
	exportedSpan(t, func() *coltrace.ExportTraceServiceRequest {
		mu.Lock()
		defer mu.Unlock()
		return got
	})
}

type collector struct {
	coltrace.UnimplementedTraceServiceServer
	mu  sync.Mutex
	got *coltrace.ExportTraceServiceRequest
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	c.got = req
	c.mu.Unlock()
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// TestSetupExportsOverGRPC: with OTEL_EXPORTER_OTLP_PROTOCOL=grpc spans reach an OTLP/gRPC
// collector (plaintext, as the endpoint's http scheme says).
func TestSetupExportsOverGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	gs := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(gs, c)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	setEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://" + ln.Addr().String(), "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_SERVICE_NAME": "pushworker-test", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=ci"})
	exportedSpan(t, func() *coltrace.ExportTraceServiceRequest {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.got
	})
}

// TestTraceparent: a span context goes into NATS headers and comes back, also from a
// header whose name is capitalised; anything else is no context.
func TestTraceparent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sc := tracing.ParseTraceparent(tp)
	if !sc.IsValid() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" || !sc.IsSampled() {
		t.Fatalf("parsed %v", sc)
	}
	if got := tracing.Traceparent(sc); got != tp {
		t.Fatalf("Traceparent %q", got)
	}
	h := nats.Header{}
	tracing.InjectSpan(sc, h)
	if h.Get("traceparent") != tp {
		t.Fatalf("headers %v", h)
	}
	if got := tracing.Extract(nats.Header{"Traceparent": {tp}}); !got.Equal(sc.WithRemote(true)) {
		t.Fatalf("extracted %v", got)
	}
	for _, bad := range []string{"", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "garbage"} {
		if tracing.ParseTraceparent(bad).IsValid() || tracing.Extract(nats.Header{"traceparent": {bad}}).IsValid() {
			t.Fatalf("%q parsed as a span context", bad)
		}
	}
	if tracing.Extract(nil).IsValid() || tracing.Traceparent(tracing.Extract(nil)) != "" {
		t.Fatal("no headers gave a span context")
	}
}
