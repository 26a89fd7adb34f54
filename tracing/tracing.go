// Package tracing is pushworker's OpenTelemetry tracing: a tracer provider with an OTLP
// exporter set up from the standard OTEL_* variables (off when they do not ask for it), and
// the W3C trace context carried in NATS message headers.
package tracing

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pushworker/pushworker/config"
)

// OTLP protocols (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Settings are what the environment asks of tracing. The exporters, the sampler and the
// batch span processor read their other OTEL_* variables themselves.
type Settings struct {
	Enabled  bool
	Protocol string // ProtocolHTTP or ProtocolGRPC
	Endpoint string // the endpoint variable's value without user info; empty: the exporter's default
}

// FromEnv reads the variables that decide whether and how spans are exported. Tracing is on
// when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set, or
// OTEL_TRACES_EXPORTER is otlp; OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true turn it
// off. A bad value is a *config.Error that names the variable.
func FromEnv() (Settings, error) {
	var s Settings
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED"))); v {
	case "true":
		return s, nil
	case "", "false":
	default:
		return s, &config.Error{Var: "OTEL_SDK_DISABLED", Msg: "must be true or false"}
	}
	exporter := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")))
	switch exporter {
	case "none":
		return s, nil
	case "", "otlp":
	default:
		return s, &config.Error{Var: "OTEL_TRACES_EXPORTER", Msg: "must be otlp or none (the only exporters pushworker has)"}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return s, &config.Error{Var: name, Msg: "must be an http(s) URL"}
		}
		u.User = nil
		s.Endpoint = u.String()
		break
	}
	if s.Endpoint == "" && exporter == "" {
		return s, nil // nothing asks for spans
	}
	s.Enabled = true
	s.Protocol = ProtocolHTTP
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		switch v := strings.TrimSpace(os.Getenv(name)); v {
		case "":
			continue
		case ProtocolHTTP, ProtocolGRPC:
			s.Protocol = v
		default:
			return s, &config.Error{Var: name, Msg: "must be http/protobuf or grpc"}
		}
		break
	}
	return s, nil
}

// Options describe the process in its spans' resource. OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override them.
type Options struct {
	ServiceName string // default "pushworker"
	Version     string
	InstanceID  string
	// OnError receives the SDK's errors (an export that failed, a bad sampler variable).
	OnError func(error)
}

// Provider is the process's tracer provider.
type Provider struct {
	Settings
	tp *sdktrace.TracerProvider
}

// Setup starts tracing as the environment asks (FromEnv). When it is off, the Provider's
// TracerProvider is nil and nothing else happens. When it is on, it also installs
// o.OnError as OpenTelemetry's global error handler.
func Setup(ctx context.Context, o Options) (*Provider, error) {
	s, err := FromEnv()
	if err != nil || !s.Enabled {
		return &Provider{Settings: s}, err
	}
	if o.OnError != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(o.OnError))
	}
	if o.ServiceName == "" {
		o.ServiceName = "pushworker"
	}
	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName(o.ServiceName))}
	if o.Version != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(o.Version)))
	}
	if o.InstanceID != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceInstanceID(o.InstanceID)))
	}
	res, err := resource.New(ctx, append(attrs, resource.WithTelemetrySDK(), resource.WithFromEnv())...)
	if err != nil {
		return nil, &config.Error{Var: "OTEL_RESOURCE_ATTRIBUTES", Msg: err.Error(), Err: err}
	}
	var exp sdktrace.SpanExporter
	if s.Protocol == ProtocolGRPC {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, errors.Join(errors.New("tracing: OTLP exporter"), err)
	}
	return &Provider{Settings: s, tp: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))}, nil
}

// TracerProvider returns the provider to make spans with, or nil when tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil || p.tp == nil {
		return nil
	}
	return p.tp
}

// Shutdown exports the spans not yet sent and stops the exporter, within ctx.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.tp == nil {
		return nil
	}
	return p.tp.Shutdown(ctx)
}
