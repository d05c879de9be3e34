package dubbo

import (
	"bytes"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// TraceInfo implements codec.TraceCarrier. Trace context travels in a
// request's attachments, under the keys "traceparent" and "tracestate"
// (dubbo-go's OpenTelemetry filter uses the same); a frame that is not a
// hessian2 request with attachments has no place for it.
func (c *Codec) TraceInfo(req *codec.Message) (service, method string, carries bool) {
	f, ok := req.Private.(*frame)
	if !ok || !f.attrs.request {
		return "", "", false
	}
	return f.attrs.iface, f.attrs.method, f.attrs.hasAtts
}

var _ codec.TraceCarrier = (*Codec)(nil)

// The attachments of W3C trace context, by name and as they appear in a
// frame: hessian2 writes a short string as its length byte and then its
// UTF-8 bytes.
const (
	keyTraceparent = "traceparent"
	keyTracestate  = "tracestate"
)

var (
	rawTraceparent = []byte("traceparent")
	rawTracestate  = []byte("tracestate")
)

// traceKeyAbsent reports whether key is a trace context key whose bytes
// appear nowhere in body, so the request cannot carry it. A traced
// listener asks every request for traceparent, and most carry none: this
// answers them without stepping over the arguments to the attachments.
// It serves trace context only, where a key hessian2 split into chunks (no
// encoder chunks an 11-byte string) would just start a new trace; routing
// and authorization keys are always decoded.
func traceKeyAbsent(body []byte, key string) bool {
	switch key {
	case keyTraceparent:
		return !bytes.Contains(body, rawTraceparent)
	case keyTracestate:
		return !bytes.Contains(body, rawTracestate)
	}
	return false
}
