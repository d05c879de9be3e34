package dubbo

import (
	"encoding/binary"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// replyStatus maps a proxy error to the Dubbo status byte a real provider
// would send for the closest failure (see README.md for the reasons).
func replyStatus(s codec.Status) (byte, bool) {
	switch s {
	case codec.StatusNoRoute, codec.StatusNoUpstream:
		return statusServiceNotFound, true
	case codec.StatusTimeout:
		return statusServerTimeout, true
	case codec.StatusOverloaded, codec.StatusRateLimited:
		return statusThreadpoolExhaust, true
	case codec.StatusBadRequest:
		return statusBadRequest, true
	case codec.StatusUnauthorized:
		return statusServiceError, true
	case codec.StatusUpstreamReset, codec.StatusFault, codec.StatusError:
		return statusServerError, true
	}
	return 0, false
}

// Reply implements codec.Codec. The answer is what a Dubbo provider sends when
// it fails a call outside the service: a response with the request's ID, an
// error status byte and a hessian2 string body holding the message. Oneway
// requests get no answer.
//
// The message is written by the library's Encoder, the 16-byte header here:
// the library's own response writer (HessianCodec.Write) appends a null after
// the message (and a second one after a heartbeat's null), which a Java
// provider's ExchangeCodec does not write.
func (c *Codec) Reply(req *codec.Message, status codec.Status, detail string) (*codec.Message, error) {
	switch req.Kind {
	case codec.KindOneway:
		return nil, nil
	case codec.KindHeartbeat:
		return c.HeartbeatReply(req)
	case codec.KindRequest:
	default:
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "cannot reply to a %s", req.Kind)
	}
	code, ok := replyStatus(status)
	if !ok {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "no error reply for status %s", status)
	}
	if detail == "" {
		detail = "rosetta: " + status.String()
	}
	var w stringWriter
	defer w.release()
	b, err := w.append(make([]byte, headerLen, headerLen+len(detail)+8), detail)
	if err != nil {
		return nil, err
	}
	m, err := c.response(b, 0, code, req.ID)
	if err != nil {
		return nil, err
	}
	m.Status = status
	return m, nil
}

// HeartbeatReply implements codec.HeartbeatReplier: an event response with
// status OK and a null body, as Dubbo answers a heartbeat. Events sent oneway
// (a provider's readonly notice) get no answer.
func (c *Codec) HeartbeatReply(req *codec.Message) (*codec.Message, error) {
	if req.Kind != codec.KindHeartbeat {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "heartbeat reply to a %s", req.Kind)
	}
	if len(req.Raw) > 2 && req.Raw[2]&flagTwoWay == 0 {
		return nil, nil
	}
	b := hessian.EncNull(make([]byte, headerLen, headerLen+1))
	return c.response(b, flagEvent, statusOK, req.ID)
}

// response fills in the header of b (a header's room and a body) and decodes
// it, so replies carry the same private state as received frames.
func (c *Codec) response(b []byte, flags, status byte, id uint64) (*codec.Message, error) {
	b[0], b[1], b[2], b[3] = magicHigh, magicLow, flags|serialHessian2, status
	binary.BigEndian.PutUint64(b[4:], id)
	binary.BigEndian.PutUint32(b[12:], uint32(len(b)-headerLen))
	return c.Decode(b)
}

// readonlyEvent is READONLY_EVENT in Apache Dubbo's CommonConstants: the
// body of the event a provider that is shutting down sends its consumers.
const readonlyEvent = "R"

// goAway is the readonly event frame, built once (GoAway).
var goAway = func() []byte {
	var w stringWriter
	defer w.release()
	b, err := w.append(make([]byte, headerLen, headerLen+2), readonlyEvent)
	if err != nil {
		panic("codec/dubbo: the readonly event: " + err.Error()) // a constant ASCII string
	}
	b[0], b[1], b[2] = magicHigh, magicLow, flagRequest|flagEvent|serialHessian2
	binary.BigEndian.PutUint32(b[12:], uint32(len(b)-headerLen))
	return b
}()

// GoAway implements codec.GoAwayer with Dubbo's readonly event, the frame
// Apache Dubbo's HeaderExchangeServer.sendChannelReadOnlyEvent sends every
// consumer when a provider shuts down: a request with the event flag set and
// the two-way flag clear, request id 0, whose hessian2 body is the string
// "R" (da bb a2 00, eight zero bytes, 00 00 00 02 01 52). A Java consumer
// marks the channel read-only and sends its next calls to other providers;
// dubbo-go v3.3.0 answers it as it answers a heartbeat and keeps using the
// connection (see README.md). The slice is shared: callers copy it.
func (c *Codec) GoAway() []byte { return goAway }
