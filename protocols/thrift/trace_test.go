package thrift

import "testing"

// TestTraceCarrier: only THeader requests carry trace context, as an info
// header that the Thrift library reads; the service is the multiplexed
// name's.
func TestTraceCarrier(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			cd := newCodec(t, nil)
			m, err := cd.Decode(readCapture(t, c, "mux_ping_request"))
			if err != nil {
				t.Fatal(err)
			}
			svc, method, carries := cd.TraceInfo(m)
			if svc != "Echo" || method != "ping" || carries != (c.transport == "header") {
				t.Fatalf("TraceInfo = %q %q %v, want Echo ping %v", svc, method, carries, c.transport == "header")
			}
			if !carries {
				return
			}
			m.Set("traceparent", tp)
			out, err := cd.Encode(nil, m)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, headers := libRead(t, c, out); headers["traceparent"] != tp {
				t.Errorf("the library reads headers %v, want traceparent %s", headers, tp)
			}
		})
	}
}
