package dubbo

import "testing"

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
