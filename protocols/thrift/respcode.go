package thrift

import (
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Response codes (codec.ResponseCoder), the response_code of Istio's
// metrics: the answer's message type, "REPLY" or "EXCEPTION". A REPLY
// whose result is an exception the IDL declares is still "REPLY": telling
// them apart means reading the result struct, which the proxy otherwise
// never does. A local reply is an EXCEPTION (a TApplicationException of
// the type replyType gives).
const (
	codeReply     = "REPLY"
	codeException = "EXCEPTION"
)

// ResponseCode implements codec.ResponseCoder.
func (c *Codec) ResponseCode(resp *codec.Message) string {
	fi, ok := resp.Private.(*frameInfo)
	switch {
	case !ok:
		return resp.Status.String()
	case fi.typ == msgException:
		return codeException
	}
	return codeReply
}

// LocalResponseCode implements codec.ResponseCoder.
func (c *Codec) LocalResponseCode(s codec.Status) string {
	if s == codec.StatusOK {
		return codeReply
	}
	return codeException
}

var _ codec.ResponseCoder = (*Codec)(nil)
