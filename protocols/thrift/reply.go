package thrift

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// TApplicationException types (TApplicationException.TypeId), as every
// Apache Thrift library numbers them.
const (
	appUnknown               = 0
	appUnknownMethod         = 1
	appInvalidMessageType    = 2
	appWrongMethodName       = 3
	appBadSequenceID         = 4
	appMissingResult         = 5
	appInternalError         = 6
	appProtocolError         = 7
	appInvalidTransform      = 8
	appInvalidProtocol       = 9
	appUnsupportedClientType = 10
)

// replyType maps a proxy error to the TApplicationException type a Thrift
// server would raise for the closest failure (README.md says why).
func replyType(s codec.Status) (int32, bool) {
	switch s {
	case codec.StatusNoRoute:
		return appUnknownMethod, true
	case codec.StatusBadRequest:
		return appProtocolError, true
	case codec.StatusUnauthorized:
		return appUnknown, true
	case codec.StatusNoUpstream, codec.StatusTimeout, codec.StatusOverloaded, codec.StatusRateLimited,
		codec.StatusUpstreamReset, codec.StatusFault, codec.StatusError:
		return appInternalError, true
	}
	return 0, false
}

// Reply implements codec.Codec: an EXCEPTION message holding a
// TApplicationException{message: detail, type: see replyType}, in the
// request's protocol and transport, with its seqid and its method name (the
// bare method of a multiplexed name, as Thrift's multiplexed processors
// answer). Oneway requests get no answer.
func (c *Codec) Reply(req *codec.Message, status codec.Status, detail string) (*codec.Message, error) {
	switch req.Kind {
	case codec.KindOneway:
		return nil, nil
	case codec.KindRequest:
	default:
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "cannot reply to a %s", req.Kind)
	}
	fi, ok := req.Private.(*frameInfo)
	if !ok {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "the request was not decoded by the thrift codec")
	}
	typ, ok := replyType(status)
	if !ok {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "no error reply for status %s", status)
	}
	if req.ID > math.MaxUint32 {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "id %d does not fit a 32-bit seqid", req.ID)
	}
	if detail == "" {
		detail = "rosetta: " + status.String()
	}
	name := req.Raw[fi.nameOff:fi.nameEnd]
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	b := make([]byte, 0, 48+len(name)+len(detail))
	b = appendException(b, fi, name, uint32(req.ID), typ, detail)
	// Decode what was written with a codec fixed to its transport, so the
	// reply has the same Private and attributes as a decoded message.
	rc := &Codec{maxFrame: math.MaxInt32, transport: fi.transport, class: classLengthPrefixed}
	if fi.transport == transportUnframed {
		rc.class = classUnframed
	}
	m, err := rc.Decode(b)
	if err != nil {
		return nil, err
	}
	m.Status = status
	return m, nil
}

// appendException writes the framing of fi around an EXCEPTION message.
func appendException(b []byte, fi *frameInfo, name []byte, seq uint32, typ int32, detail string) []byte {
	start := len(b)
	switch fi.transport {
	case transportFramed:
		b = append(b, 0, 0, 0, 0)
	case transportHeader:
		// Frame length, magic, no flags, seqid, a one-word header block:
		// the protocol id, no transforms, two bytes of padding.
		b = append(b, 0, 0, 0, 0, headerMagic0, headerMagic1, 0, 0)
		b = binary.BigEndian.AppendUint32(b, seq)
		b = append(b, 0, 1, fi.protoID, 0, 0, 0)
	}
	b = appendMessageBegin(b, fi.enc, msgException, name, seq)
	b = appendAppException(b, fi.enc, typ, detail)
	if fi.transport != transportUnframed {
		binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	}
	return b
}

func appendMessageBegin(b []byte, enc encoding, typ byte, name []byte, seq uint32) []byte {
	switch enc {
	case encBinary:
		b = binary.BigEndian.AppendUint32(b, binaryVersion1|uint32(typ))
		b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
		b = append(b, name...)
	case encBinaryOld:
		b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
		b = append(b, name...)
		b = append(b, typ)
	default:
		b = append(b, compactID, typ<<compactTypeShift|compactVersion)
		b = binary.AppendUvarint(b, uint64(seq))
		b = binary.AppendUvarint(b, uint64(len(name)))
		return append(b, name...)
	}
	return binary.BigEndian.AppendUint32(b, seq)
}

// appendAppException writes struct TApplicationException { 1: string
// message, 2: i32 type }.
func appendAppException(b []byte, enc encoding, typ int32, msg string) []byte {
	if enc == encCompact {
		b = append(b, 1<<4|cBinary) // field 1 (delta 1), binary
		b = binary.AppendUvarint(b, uint64(len(msg)))
		b = append(b, msg...)
		b = append(b, 1<<4|cI32) // field 2 (delta 1), i32 as zigzag varint
		b = binary.AppendUvarint(b, uint64(uint32(typ<<1^typ>>31)))
		return append(b, cStop)
	}
	b = append(b, bString, 0, 1)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, msg...)
	b = append(b, bI32, 0, 2)
	b = binary.BigEndian.AppendUint32(b, uint32(typ))
	return append(b, bStop)
}
