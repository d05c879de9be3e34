package thrift

import (
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Response codes (codec.ResponseCoder), the response_code of Istio's
// metrics: the answer's message type, "REPLY", or for an EXCEPTION its
// TApplicationException type, "EXCEPTION:UNKNOWN_METHOD". A REPLY whose
// result is an exception the IDL declares is still "REPLY": telling them
// apart means reading the result struct, which the proxy otherwise never
// does. A local reply is the TApplicationException of the type replyType
// gives. The codes are bounded: a type outside Apache Thrift's eleven, or
// an exception whose type cannot be read, is "EXCEPTION".
const (
	codeReply     = "REPLY"
	codeException = "EXCEPTION"
)

// appExceptionCodes are the response codes of the TApplicationException
// types, by TypeId, as Apache Thrift names them.
var appExceptionCodes = [...]string{
	appUnknown:               codeException + ":UNKNOWN",
	appUnknownMethod:         codeException + ":UNKNOWN_METHOD",
	appInvalidMessageType:    codeException + ":INVALID_MESSAGE_TYPE",
	appWrongMethodName:       codeException + ":WRONG_METHOD_NAME",
	appBadSequenceID:         codeException + ":BAD_SEQUENCE_ID",
	appMissingResult:         codeException + ":MISSING_RESULT",
	appInternalError:         codeException + ":INTERNAL_ERROR",
	appProtocolError:         codeException + ":PROTOCOL_ERROR",
	appInvalidTransform:      codeException + ":INVALID_TRANSFORM",
	appInvalidProtocol:       codeException + ":INVALID_PROTOCOL",
	appUnsupportedClientType: codeException + ":UNSUPPORTED_CLIENT_TYPE",
}

// exceptionCode is the response code of a TApplicationException of type
// typ (ok false: unread).
func exceptionCode(typ int32, ok bool) string {
	if !ok || typ < 0 || int(typ) >= len(appExceptionCodes) {
		return codeException
	}
	return appExceptionCodes[typ]
}

// ResponseCode implements codec.ResponseCoder.
func (c *Codec) ResponseCode(resp *codec.Message) string {
	fi, ok := resp.Private.(*frameInfo)
	switch {
	case !ok:
		return resp.Status.String()
	case fi.typ == msgException:
		return exceptionCode(appExceptionType(resp.Raw, fi))
	}
	return codeReply
}

// LocalResponseCode implements codec.ResponseCoder: the code of the
// exception Reply writes for s.
func (c *Codec) LocalResponseCode(s codec.Status) string {
	if s == codec.StatusOK {
		return codeReply
	}
	return exceptionCode(replyType(s))
}

// appExceptionType reads the type (field 2, an i32) of the
// TApplicationException an EXCEPTION message of frame holds, stepping over
// its other fields; ok is false when it has none or the struct cannot be
// read. The struct starts after the message header: after the seqid in the
// binary protocols, after the name in compact.
func appExceptionType(frame []byte, fi *frameInfo) (int32, bool) {
	r := reader{b: frame, pos: max(fi.nameEnd, fi.seqOff+fi.seqLen), limit: len(frame)}
	if fi.enc == encCompact {
		return r.compactAppExceptionType()
	}
	return r.binaryAppExceptionType()
}

// exceptionTypeField is TApplicationException's field id of its type.
const exceptionTypeField = 2

func (r *reader) binaryAppExceptionType() (int32, bool) {
	for {
		t, err := r.u8()
		if err != nil || t == bStop {
			return 0, false
		}
		if err := r.ensure(2); err != nil {
			return 0, false
		}
		id := int16(uint16(r.b[r.pos])<<8 | uint16(r.b[r.pos+1]))
		r.pos += 2
		if id == exceptionTypeField && t == bI32 {
			v, err := r.u32()
			return int32(v), err == nil
		}
		if r.skipBinary(t, 1) != nil {
			return 0, false
		}
	}
}

func (r *reader) compactAppExceptionType() (int32, bool) {
	var id int64
	for {
		h, err := r.u8()
		if err != nil || h&0x0f == cStop {
			return 0, false
		}
		t := h & 0x0f
		if delta := int64(h >> 4); delta != 0 {
			id += delta
		} else {
			z, err := r.uvarint(3)
			if err != nil {
				return 0, false
			}
			id = unzigzag(z)
		}
		switch {
		case id == exceptionTypeField && t == cI32:
			z, err := r.uvarint(5)
			return int32(unzigzag(z)), err == nil
		case t == cTrue || t == cFalse:
			continue // the field header is the value
		}
		if r.skipCompact(t, 1) != nil {
			return 0, false
		}
	}
}

// unzigzag decodes a compact protocol zigzag integer.
func unzigzag(z uint64) int64 { return int64(z>>1) ^ -int64(z&1) }

var _ codec.ResponseCoder = (*Codec)(nil)
