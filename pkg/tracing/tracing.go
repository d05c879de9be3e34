// Package tracing makes OpenTelemetry spans for the proxy's requests: a
// server span per request and a client span per upstream try, with W3C
// trace context read from and written to the protocol's own carrier (a
// codec.TraceCarrier's attributes "traceparent" and "tracestate").
//
// Cost: a listener without tracing config has a nil *Listener and the proxy
// does nothing more than check it. With tracing on, each request is asked
// for its caller's traceparent (the caller's sampled flag decides, when it
// sent one) or draws a random number (Sample); only a request sampled in
// has its names gathered and a span allocated (Start). Carriers answer a
// request without traceparent without decoding anything more (Dubbo looks
// for the key in the raw attachments first). Spans go to an OTLP/gRPC receiver through a batching exporter that
// drops spans when its queue is full rather than block a request.
package tracing

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// The carrier keys of W3C trace context.
const (
	KeyTraceparent = "traceparent"
	KeyTracestate  = "tracestate"
)

// Span attributes beyond OpenTelemetry's RPC and network conventions.
const (
	attrSystem   = attribute.Key("rpc.system")
	attrService  = attribute.Key("rpc.service")
	attrMethod   = attribute.Key("rpc.method")
	attrAddress  = attribute.Key("server.address")
	attrListener = attribute.Key("rosetta.listener")
	attrRoute    = attribute.Key("rosetta.route")
	attrCluster  = attribute.Key("rosetta.cluster")
	attrStatus   = attribute.Key("rosetta.status")
	attrTry      = attribute.Key("rosetta.try")
	attrRetries  = attribute.Key("rosetta.retries")
)

var propagator = propagation.TraceContext{}

// Tracer makes the proxy's spans and exports them.
type Tracer struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// New returns a Tracer exporting to the OTLP/gRPC receiver at endpoint
// ("host:port"; plaintext unless an option gives TLS), naming the proxy
// service in each span's resource. It does not dial: an unreachable
// receiver costs dropped spans, never a blocked request.
func New(ctx context.Context, endpoint, service string, opts ...Option) (*Tracer, error) {
	if endpoint == "" {
		return nil, errors.New("tracing: an OTLP endpoint is required")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	security := otlptracegrpc.WithInsecure()
	if o.tls != nil {
		security = otlptracegrpc.WithTLSCredentials(credentials.NewTLS(o.tls))
	}
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), security)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter for %s: %w", endpoint, err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", service))
	return NewWithProcessor(sdktrace.NewBatchSpanProcessor(exp), res), nil
}

// Option is a setting of New.
type Option func(*options)

type options struct {
	tls *tls.Config
}

// WithTLS exports over TLS with cfg (identity.GRPCClientConfig makes it:
// Istio mutual TLS or a collector's own CA) instead of plaintext.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// NewWithProcessor returns a Tracer whose spans go to sp (tests record
// them in memory). The proxy samples itself, so the SDK keeps every span
// it is given.
func NewWithProcessor(sp sdktrace.SpanProcessor, res *resource.Resource) *Tracer {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	return &Tracer{tp: tp, tracer: tp.Tracer("github.com/rosetta-mesh/rosetta/pkg/proxy")}
}

// Shutdown exports what is queued and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }

// Listener is one listener's tracing: its sampling, and the proxy's
// Tracer once Bind gave it one.
type Listener struct {
	t *Tracer
	// threshold: a request without a sampled caller is traced when a
	// random uint64 is below it; all is 100%.
	threshold    uint64
	all          bool
	ignoreCaller bool
}

// NewListener checks a listener's sampling config: percent from 0 to 100.
func NewListener(percent float64, ignoreCaller bool) (*Listener, error) {
	if math.IsNaN(percent) || percent < 0 || percent > 100 {
		return nil, fmt.Errorf("random_sampling_percentage: %v is not between 0 and 100", percent)
	}
	l := &Listener{ignoreCaller: ignoreCaller, all: percent == 100}
	if !l.all {
		l.threshold = uint64(percent / 100 * (1 << 64))
	}
	return l, nil
}

// Bind gives l the proxy's Tracer; nil leaves the listener without spans.
func (l *Listener) Bind(t *Tracer) { l.t = t }

// Request is one traced request: its server span, under which each try's
// client span starts.
type Request struct {
	t       *Tracer
	ctx     context.Context
	span    trace.Span
	name    string
	common  []attribute.KeyValue
	carries bool
}

// Info is what a request's spans say about it.
type Info struct {
	// System is the protocol ("dubbo"), rpc.system.
	System string
	// Listener and Route name where the request was taken in and routed.
	Listener, Route string
	// Service and Method are the RPC's names; Method alone when the
	// protocol has no service name.
	Service, Method string
	// Carries: the request has a place for trace context (see
	// codec.TraceCarrier); without one, the caller's context is not read
	// and the proxy's is not passed on.
	Carries bool
	// Start is when the request arrived.
	Start time.Time
}

// Sample decides whether req is traced: by the caller's sampled flag when
// it sent trace context (and the listener respects it), by a random draw
// otherwise. carrier says whether req's codec is a codec.TraceCarrier; a
// request of one that has no place for trace context reads as a request
// without. Sample allocates nothing: a request sampled out costs the
// carrier's lookup of traceparent and a random number, so the proxy asks
// before it gathers anything for the span.
func (l *Listener) Sample(req *codec.Message, carrier bool) bool {
	if l.t == nil {
		return false
	}
	if carrier && !l.ignoreCaller {
		if tp, ok := req.Get(KeyTraceparent); ok {
			if s, ok := sampledFlag(tp); ok {
				return s
			}
		}
	}
	return l.all || rand.Uint64() < l.threshold
}

// Start starts the server span of a request Sample chose, under the
// caller's span when the request carries one; nil when the listener has
// no Tracer.
func (l *Listener) Start(req *codec.Message, in Info) *Request {
	if l.t == nil {
		return nil
	}
	ctx := context.Background()
	if in.Carries {
		ctx = propagator.Extract(ctx, carrier{req})
	}
	r := &Request{t: l.t, name: spanName(in), carries: in.Carries}
	r.common = []attribute.KeyValue{attrSystem.String(in.System), attrMethod.String(in.Method)}
	if in.Service != "" {
		r.common = append(r.common, attrService.String(in.Service))
	}
	r.ctx, r.span = l.t.tracer.Start(ctx, r.name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(in.Start),
		trace.WithAttributes(r.common...),
		trace.WithAttributes(attrListener.String(in.Listener), attrRoute.String(in.Route)))
	return r
}

// sampledFlag reads the sampled bit of a W3C traceparent
// ("vv-<32 hex trace id>-<16 hex span id>-ff"); ok is false when tp is not
// one, and the propagator would start a new trace.
func sampledFlag(tp string) (sampled, ok bool) {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || tp[:2] == "ff" {
		return false, false
	}
	lo := tp[54]
	switch {
	case lo >= '0' && lo <= '9':
		return (lo-'0')&1 == 1, true
	case lo >= 'a' && lo <= 'f':
		return (lo-'a'+10)&1 == 1, true
	}
	return false, false
}

func spanName(in Info) string {
	switch {
	case strings.HasPrefix(in.Method, "/"): // tRPC's func: "/service/method"
		return in.Method[1:]
	case in.Service != "" && in.Method != "":
		return in.Service + "/" + in.Method
	case in.Method != "":
		return in.Method
	}
	return in.System
}

// SetRoute names the route of a request whose route was not known at
// Start: a codec's Handler routes each request it sends.
func (r *Request) SetRoute(route string) { r.span.SetAttributes(attrRoute.String(route)) }

// End ends the server span with the request's outcome ("ok" or a
// codec.Status name) and the cluster it went to.
func (r *Request) End(cluster, status string, retries int, end time.Time) {
	r.span.SetAttributes(attrCluster.String(cluster), attrStatus.String(status), attrRetries.Int(retries))
	if status != "ok" {
		r.span.SetStatus(codes.Error, status)
	}
	r.span.End(trace.WithTimestamp(end))
}

// Try is one upstream try's client span; the zero Try is a try not traced.
type Try struct{ span trace.Span }

// StartTry starts the client span of try number n (1 for the first) to
// addr in cluster, and writes its context into req's carrier, so the
// server sees it as the parent.
func (r *Request) StartTry(req *codec.Message, cluster, addr string, n int) Try {
	ctx, span := r.t.tracer.Start(r.ctx, r.name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(r.common...),
		trace.WithAttributes(attrCluster.String(cluster), attrAddress.String(addr), attrTry.Int(n)))
	if r.carries {
		propagator.Inject(ctx, carrier{req})
	}
	return Try{span}
}

// End ends the try's span with its outcome: the answer's status, or the
// error that ended the try. It does nothing for a try not traced.
func (t Try) End(resp *codec.Message, err error) {
	if t.span != nil {
		t.end(resp, err)
	}
}

func (t Try) end(resp *codec.Message, err error) {
	switch {
	case err != nil:
		t.span.SetAttributes(attrStatus.String("error"))
		t.span.SetStatus(codes.Error, err.Error())
	case resp != nil && resp.Status != codec.StatusOK:
		t.span.SetAttributes(attrStatus.String(resp.Status.String()))
		t.span.SetStatus(codes.Error, resp.Status.String())
	default:
		t.span.SetAttributes(attrStatus.String("ok"))
	}
	t.span.End()
}

// carrier is a request's trace context as the propagator reads and writes
// it: Get reads the caller's attribute, Set records a mutation the codec's
// Encode writes into the frame.
type carrier struct{ m *codec.Message }

func (c carrier) Get(key string) string {
	v, _ := c.m.Get(key)
	return v
}

func (c carrier) Set(key, value string) { c.m.Set(key, value) }

func (c carrier) Keys() []string { return []string{KeyTraceparent, KeyTracestate} }
