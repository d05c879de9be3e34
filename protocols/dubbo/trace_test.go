package dubbo

import (
	"strings"
	"testing"

	hessian "github.com/apache/dubbo-go-hessian2"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
)

const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestTraceCarrier: requests name their service and method and carry trace
// context in their attachments, which hessian2's own codec reads back;
// responses and heartbeats carry none.
func TestTraceCarrier(t *testing.T) {
	c := newTestCodec(t)
	for _, name := range []string{"response_value_attachments", "heartbeat_request"} {
		if _, _, carries := c.TraceInfo(decodeCapture(t, c, name)); carries {
			t.Errorf("%s carries trace context", name)
		}
	}
	m := decodeCapture(t, c, "request_twoway")
	svc, method, carries := c.TraceInfo(m)
	iface, _ := m.Get(AttrInterface)
	meth, _ := m.Get(AttrMethod)
	if !carries || svc != iface || method != meth || svc == "" {
		t.Fatalf("TraceInfo = %q %q %v, want %q %q true", svc, method, carries, iface, meth)
	}
	m.Set("traceparent", testTraceparent)
	out, err := c.Encode(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := libDecode(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := lib.Req[6].(map[string]string)["traceparent"]; got != testTraceparent {
		t.Errorf("hessian2 reads traceparent %q, want %q", got, testTraceparent)
	}
}

// sampledOut is a traced listener at 0%: only a caller's sampled flag
// traces.
func sampledOut(t testing.TB) *tracing.Listener {
	t.Helper()
	l, err := tracing.NewListener(0, false)
	if err != nil {
		t.Fatal(err)
	}
	l.Bind(tracing.NewWithProcessor(tracetest.NewSpanRecorder(), resource.Empty()))
	return l
}

// tracedRequest is a two-way request with a 1 KB argument and the given
// attachments.
func tracedRequest(t testing.TB, atts map[string]string) []byte {
	t.Helper()
	req := hessian.NewRequest([]any{strings.Repeat("p", 1024), int32(1)}, atts)
	frame, err := write(greeter, hessian.DubboHeader{Type: hessian.PackageRequest_TwoWay, ID: 7}, req)
	if err != nil {
		t.Fatal(err)
	}
	return frame
}

// A traced listener's sampling decision reads a caller's traceparent from
// the attachments, and answers a request without one with no allocation
// beyond its decoding: its attachments are not decoded.
func TestSamplingReadsTheCallersFlagAndDecodesNothingWithoutIt(t *testing.T) {
	c, l := newTestCodec(t), sampledOut(t)
	decode := func(frame []byte) *codec.Message {
		m, err := c.Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if !l.Sample(decode(tracedRequest(t, map[string]string{"traceparent": testTraceparent, "env": "canary"})), true) {
		t.Error("a caller's sampled traceparent did not trace the request")
	}
	// The word in an argument is no traceparent: the attachments are
	// decoded and have none.
	if l.Sample(decode(argumentRequest(t, "traceparent")), true) {
		t.Error("a request with the word traceparent in an argument was traced at 0%")
	}
	plain := tracedRequest(t, map[string]string{"env": "canary"})
	decoding := testing.AllocsPerRun(100, func() { decode(plain) })
	sampling := testing.AllocsPerRun(100, func() {
		if l.Sample(decode(plain), true) {
			t.Fatal("a request without trace context was traced at 0%")
		}
	})
	if sampling != decoding {
		t.Errorf("decoding and sampling a request without trace context allocates %v times, decoding alone %v", sampling, decoding)
	}
}

// argumentRequest is a request whose one argument is word.
func argumentRequest(t testing.TB, word string) []byte {
	t.Helper()
	req := hessian.NewRequest([]any{word}, map[string]string{"env": "canary"})
	frame, err := write(greeter, hessian.DubboHeader{Type: hessian.PackageRequest_TwoWay, ID: 8}, req)
	if err != nil {
		t.Fatal(err)
	}
	return frame
}

// BenchmarkTraceSampling is what a request costs the codec on a listener
// without tracing (off: decode and the attributes routing reads) and on
// one tracing at 0% (the same and the sampling decision): sampled-out, a
// request without trace context; caller-unsampled, one whose caller sent
// an unsampled traceparent, which decodes the attachments to read it.
func BenchmarkTraceSampling(b *testing.B) {
	c, l := newTestCodec(b), sampledOut(b)
	plain := tracedRequest(b, map[string]string{"env": "canary"})
	unsampled := tracedRequest(b, map[string]string{"env": "canary", "traceparent": testTraceparent[:len(testTraceparent)-1] + "0"})
	for _, bc := range []struct {
		name   string
		frame  []byte
		traced bool
	}{{"off", plain, false}, {"sampled-out", plain, true}, {"caller-unsampled", unsampled, true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m, err := c.Decode(bc.frame)
				if err != nil {
					b.Fatal(err)
				}
				routeAttrs(m)
				if bc.traced && l.Sample(m, true) {
					b.Fatal("sampled in")
				}
			}
		})
	}
}

func routeAttrs(m *codec.Message) {
	m.Get(AttrInterface)
	m.Get(AttrMethod)
}
