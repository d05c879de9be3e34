package dubbo

import "github.com/rosetta-mesh/rosetta/pkg/codec"

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
