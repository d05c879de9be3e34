package trpc

import "github.com/rosetta-mesh/rosetta/pkg/codec"

// TraceInfo implements codec.TraceCarrier. Trace context travels in a
// request's trans_info, under the keys "traceparent" and "tracestate"
// (what tRPC-Go's OpenTelemetry filter reads); unary requests and a
// stream's INIT carry it. The service is the callee, the method the func.
func (c *trpcCodec) TraceInfo(req *codec.Message) (service, method string, carries bool) {
	f, ok := req.Private.(*frame)
	if !ok || !f.request {
		return "", "", false
	}
	return string(f.callee), string(f.fn), f.dataType == unaryFrame || f.streamType == streamInit
}

var _ codec.TraceCarrier = (*trpcCodec)(nil)
