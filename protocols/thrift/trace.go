package thrift

import "github.com/rosetta-mesh/rosetta/pkg/codec"

// TraceInfo implements codec.TraceCarrier. Trace context travels in THeader
// key/value info headers ("traceparent", "tracestate"); framed and unframed
// messages have no headers, so their trace context is neither read nor
// passed on. The service is the multiplexed name's, when there is one.
func (c *Codec) TraceInfo(req *codec.Message) (service, method string, carries bool) {
	fi, ok := req.Private.(*frameInfo)
	if !ok {
		return "", "", false
	}
	service, _ = req.Get(keyService)
	method, _ = req.Get(keyMethod)
	return service, method, fi.transport == transportHeader
}

var _ codec.TraceCarrier = (*Codec)(nil)
