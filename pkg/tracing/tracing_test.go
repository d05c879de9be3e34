package tracing

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

const (
	sampledParent   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	unsampledParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
)

func recorded(t *testing.T, percent float64) (*Listener, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	l, err := NewListener(percent, false)
	if err != nil {
		t.Fatal(err)
	}
	l.Bind(NewWithProcessor(rec, resource.Empty()))
	return l, rec
}

func request(attrs codec.Map) *codec.Message {
	return &codec.Message{Kind: codec.KindRequest, Attrs: attrs}
}

func TestNewListenerRefusesBadPercentages(t *testing.T) {
	for _, p := range []float64{-1, 100.5, 1e9} {
		if _, err := NewListener(p, false); err == nil || !strings.Contains(err.Error(), "random_sampling_percentage") {
			t.Errorf("NewListener(%v) = %v, want an error naming random_sampling_percentage", p, err)
		}
	}
}

func TestSampledFlag(t *testing.T) {
	for tp, want := range map[string][2]bool{
		sampledParent:   {true, true},
		unsampledParent: {false, true},
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03": {true, true},
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z": {false, false},
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": {false, false},
		"00-short-01": {false, false},
		"":            {false, false},
	} {
		s, ok := sampledFlag(tp)
		if [2]bool{s, ok} != want {
			t.Errorf("sampledFlag(%q) = %v, %v, want %v", tp, s, ok, want)
		}
	}
}

// The caller's sampled flag decides over the percentage, both ways.
func TestParentBasedSampling(t *testing.T) {
	none, _ := recorded(t, 0)
	if !none.Sample(request(codec.Map{KeyTraceparent: sampledParent}), true) {
		t.Error("a sampled caller at 0% was not traced")
	}
	if none.Sample(request(nil), true) {
		t.Error("a request without context at 0% was traced")
	}
	all, _ := recorded(t, 100)
	if all.Sample(request(codec.Map{KeyTraceparent: unsampledParent}), true) {
		t.Error("an unsampled caller at 100% was traced")
	}
	if !all.Sample(request(nil), false) {
		t.Error("a request without context at 100% was not traced")
	}
	// A codec without a carrier: the attribute is not trace context.
	if !all.Sample(request(codec.Map{KeyTraceparent: unsampledParent}), false) {
		t.Error("a request without a carrier at 100% was not traced")
	}
	ignore, _ := NewListener(100, true)
	ignore.Bind(all.t)
	if !ignore.Sample(request(codec.Map{KeyTraceparent: unsampledParent}), true) {
		t.Error("ignore_caller_sampling at 100% did not trace an unsampled caller")
	}
	unbound, _ := NewListener(100, false)
	if unbound.Sample(request(nil), false) || unbound.Start(request(nil), Info{}) != nil {
		t.Error("a listener without a Tracer traced")
	}
}

// A request sampled out costs no allocation, with or without the caller's
// context.
func TestSampledOutAllocatesNothing(t *testing.T) {
	l, _ := recorded(t, 0)
	for _, req := range []*codec.Message{request(codec.Map{KeyTraceparent: unsampledParent}), request(codec.Map{})} {
		if n := testing.AllocsPerRun(100, func() {
			if l.Sample(req, true) {
				t.Fatal("traced")
			}
		}); n != 0 {
			t.Errorf("a sampled-out request allocates %v times, want 0", n)
		}
	}
}

// The spans of a request and its tries form one trace under the caller's
// span, and each try's context is written into the request.
func TestSpansAndCarrier(t *testing.T) {
	l, rec := recorded(t, 0)
	req := request(codec.Map{KeyTraceparent: sampledParent, KeyTracestate: "k=v"})
	r := l.Start(req, Info{System: "dubbo", Service: "svc", Method: "m", Carries: true, Listener: "l", Route: "r"})
	first := r.StartTry(req, "c", "10.0.0.1:20880", 1)
	first.End(nil, errTest{})
	second := r.StartTry(req, "c", "10.0.0.2:20880", 2)
	second.End(&codec.Message{Status: codec.StatusOK}, nil)
	r.End("c", "ok", 1, second.span.(sdktrace.ReadOnlySpan).EndTime())

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	server := spans[2]
	if server.SpanKind() != trace.SpanKindServer || server.Parent().SpanID().String() != "00f067aa0ba902b7" || server.Name() != "svc/m" {
		t.Errorf("server span %q kind %v parent %v", server.Name(), server.SpanKind(), server.Parent().SpanID())
	}
	for i, c := range spans[:2] {
		if c.SpanKind() != trace.SpanKindClient || c.Parent().SpanID() != server.SpanContext().SpanID() {
			t.Errorf("try %d: kind %v parent %v, want a client span under the server span", i+1, c.SpanKind(), c.Parent().SpanID())
		}
	}
	if spans[0].Status().Code.String() != "Error" || spans[1].Status().Code.String() == "Error" {
		t.Errorf("try statuses %v, %v: want the failed try an error", spans[0].Status(), spans[1].Status())
	}
	tp, _ := req.Get(KeyTraceparent)
	if want := "00-" + server.SpanContext().TraceID().String() + "-" + spans[1].SpanContext().SpanID().String() + "-01"; tp != want {
		t.Errorf("traceparent written = %q, want the last try's %q", tp, want)
	}
	if ts, _ := req.Get(KeyTracestate); ts != "k=v" {
		t.Errorf("tracestate written = %q, want the caller's k=v", ts)
	}
}

type errTest struct{}

func (errTest) Error() string { return "reset" }
