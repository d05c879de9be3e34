package trpc

import "testing"

// TestTraceCarrier: unary requests and a stream's INIT carry trace context
// in trans_info, which the protobuf header trpc-go reads holds; the service
// is the callee, the method the func.
func TestTraceCarrier(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	caps := captures(t)
	c := newCodec(t, nil).(*trpcCodec)
	for name, want := range map[string]bool{
		"request_unary": true, "request_stream_init": true, "request_stream_data": false, "response_unary": false,
	} {
		m, err := c.Decode(caps[name])
		if err != nil {
			t.Fatal(err)
		}
		if _, _, carries := c.TraceInfo(m); carries != want {
			t.Errorf("%s: carries = %v, want %v", name, carries, want)
		}
	}
	m, _ := c.Decode(caps["request_unary"])
	svc, method, _ := c.TraceInfo(m)
	if svc != "trpc.rosetta.test.Greeter" || method != "/trpc.rosetta.test.Greeter/SayHello" {
		t.Errorf("TraceInfo names %q %q", svc, method)
	}
	m.Set("traceparent", tp)
	out, err := c.Encode(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if h := header(t, out); string(h.TransInfo["traceparent"]) != tp {
		t.Errorf("trans_info %v, want traceparent %s", h.TransInfo, tp)
	}
}
