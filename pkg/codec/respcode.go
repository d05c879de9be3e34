package codec

// ResponseCoder is an optional capability: the protocol's own code for an
// answer, which labels Istio's metrics as response_code (Dubbo's status
// byte, tRPC's ret, Thrift's message type, a Redis error's prefix). The
// proxy asks the caller's codec once per request, so both methods must be
// cheap: read a field Decode already parsed, allocate nothing.
//
// ResponseCode is given an answer decoded by a codec of the same protocol
// (what it needs must travel in the message, as for Encode); a message
// without what it needs gets the code of its Status. LocalResponseCode is
// the code of the local reply the codec's Reply builds for status, so a
// dashboard sees the same code whether the proxy or a server refused.
type ResponseCoder interface {
	ResponseCode(resp *Message) string
	LocalResponseCode(status Status) string
}

// ResponseCode is the response_code of an answer for a codec: resp's code
// (nil: a local reply for status) from a ResponseCoder, else the status's
// name ("ok", "no_route", ...).
func ResponseCode(c Codec, resp *Message, status Status) string {
	rc, ok := c.(ResponseCoder)
	switch {
	case !ok:
		return status.String()
	case resp != nil:
		return rc.ResponseCode(resp)
	default:
		return rc.LocalResponseCode(status)
	}
}
