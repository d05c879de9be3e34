package trpc

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// tRPC framework return codes (trpc.proto's TrpcRetCode, trpc-go's errs.Ret*)
// that local replies carry.
const (
	RetServerNoFunc    = 12  // TRPC_SERVER_NOFUNC_ERR
	RetServerTimeout   = 21  // TRPC_SERVER_TIMEOUT_ERR
	RetServerOverload  = 22  // TRPC_SERVER_OVERLOAD_ERR
	RetServerThrottled = 23  // TRPC_SERVER_LIMITED_ERR
	RetServerSystemErr = 31  // TRPC_SERVER_SYSTEM_ERR
	RetServerAuthFail  = 41  // TRPC_SERVER_AUTH_ERR
	RetServerValidate  = 51  // TRPC_SERVER_VALIDATE_ERR
	RetClientRouteErr  = 131 // TRPC_CLIENT_ROUTER_ERR
	RetClientNetErr    = 141 // TRPC_CLIENT_NETWORK_ERR
	RetUnknown         = 999 // TRPC_INVOKE_UNKNOWN_ERR
)

// RetCode is the framework return code a local reply carries for status.
// Errors the proxy decides itself use the server codes (the proxy answers in
// the callee's place); failures between the proxy and the upstream use the
// client codes trpc-go reports for the same failure.
func RetCode(s codec.Status) int32 {
	switch s {
	case codec.StatusNoRoute:
		return RetServerNoFunc
	case codec.StatusNoUpstream:
		return RetClientRouteErr
	case codec.StatusTimeout:
		return RetServerTimeout
	case codec.StatusOverloaded:
		return RetServerOverload
	case codec.StatusRateLimited:
		return RetServerThrottled
	case codec.StatusUpstreamReset:
		return RetClientNetErr
	case codec.StatusBadRequest:
		return RetServerValidate
	case codec.StatusUnauthorized:
		return RetServerAuthFail
	case codec.StatusFault:
		return RetServerSystemErr
	}
	return RetUnknown
}

// Reply builds the tRPC error answer to req: a ResponseProtocol with ret and
// error_msg for a unary request, an INIT answer with a response meta for a
// stream INIT, and a CLOSE frame of type reset for any other stream frame.
// Oneway requests get no reply.
func (c *trpcCodec) Reply(req *codec.Message, status codec.Status, detail string) (*codec.Message, error) {
	if req.Kind == codec.KindOneway {
		return nil, nil
	}
	f, ok := req.Private.(*frame)
	if !ok {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "request was not decoded by this codec")
	}
	if status == codec.StatusOK {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "a local reply needs an error status")
	}
	if req.ID > math.MaxUint32 {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "id %d does not fit tRPC's 32-bit ids", req.ID)
	}
	ret := RetCode(status)
	reply := &frame{dataType: f.dataType, version: f.version}
	var pb []byte
	switch {
	case req.Kind == codec.KindRequest && f.dataType == unaryFrame:
		pb = unaryReply(f, uint32(req.ID), ret, detail)
	case req.Kind == codec.KindRequest:
		reply.streamType = streamInit
		pb = initReply(ret, detail)
	case req.Kind == codec.KindStream:
		reply.streamType = streamClose
		pb = resetFrame(ret, detail)
	default:
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "no local reply to a %v", req.Kind)
	}
	wire, err := c.appendFrame(nil, reply, uint32(req.ID), pb)
	if err != nil {
		return nil, err
	}
	return c.Decode(wire)
}

// unaryReply is a ResponseProtocol as trpc-go's server writes one for a
// framework error: the request's version, call type, request id and message
// type, then ret and error_msg.
func unaryReply(req *frame, id uint32, ret int32, detail string) []byte {
	var pb []byte
	pb = appendVarintField(pb, fCallType, uint64(req.callType))
	pb = appendVarintField(pb, fRequestID, uint64(id))
	pb = appendVarintField(pb, fRspRet, uint64(ret))
	pb = appendBytesField(pb, fRspErrorMsg, detail)
	// ret is never 0 here, so the header is never empty (trpc-go refuses an
	// empty unary header).
	return appendVarintField(pb, fRspMsgType, uint64(req.msgType))
}

// initReply is a TrpcStreamInitMeta whose response meta refuses the stream.
func initReply(ret int32, detail string) []byte {
	var meta []byte
	meta = appendVarintField(meta, fInitRspRet, uint64(ret))
	meta = appendBytesField(meta, fInitRspErrorMsg, detail)
	pb := protowire.AppendTag(nil, fInitResponseMeta, protowire.BytesType)
	return protowire.AppendBytes(pb, meta)
}

// resetFrame is a TrpcStreamCloseMeta that resets the stream.
func resetFrame(ret int32, detail string) []byte {
	pb := appendVarintField(nil, fCloseType, closeReset)
	pb = appendVarintField(pb, fCloseRet, uint64(ret))
	return appendBytesField(pb, fCloseMsg, detail)
}

// appendVarintField writes a proto3 scalar, omitting the default zero.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendBytesField writes a proto3 bytes field, omitting the empty default.
func appendBytesField(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}
