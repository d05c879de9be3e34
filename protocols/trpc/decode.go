package trpc

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Protobuf field numbers of trpc.proto's messages that the codec reads or
// writes. RequestProtocol and ResponseProtocol share 1-3 and 12.
const (
	fVersion        = 1 // uint32
	fCallType       = 2 // uint32: 0 unary, 1 oneway
	fRequestID      = 3 // uint32
	fAttachmentSize = 12

	// RequestProtocol.
	fReqTimeout   = 4
	fReqCaller    = 5 // bytes
	fReqCallee    = 6 // bytes
	fReqFunc      = 7 // bytes
	fReqMsgType   = 8
	fReqTransInfo = 9 // map<string, bytes>

	// ResponseProtocol.
	fRspRet       = 4 // int32: framework return code
	fRspFuncRet   = 5 // int32: business return code
	fRspErrorMsg  = 6 // bytes
	fRspMsgType   = 7
	fRspTransInfo = 8 // map<string, bytes>

	// TrpcStreamInitMeta and its request and response metas.
	fInitRequestMeta  = 1
	fInitResponseMeta = 2
	fInitReqCaller    = 1
	fInitReqCallee    = 2
	fInitReqFunc      = 3
	fInitReqTransInfo = 5
	fInitRspRet       = 1
	fInitRspErrorMsg  = 2

	// TrpcStreamCloseMeta.
	fCloseType      = 1 // 0 close, 1 reset
	fCloseRet       = 2
	fCloseMsg       = 3
	fCloseTransInfo = 5
	fCloseFuncRet   = 6

	// A map entry.
	fMapKey   = 1
	fMapValue = 2

	callOneway = 1
	closeReset = 1
)

// frame is a decoded frame, kept in Message.Private. Its byte slices point
// into the frame itself.
type frame struct {
	dataType, streamType byte
	version              byte
	streamID             uint32
	// pb is the protobuf after the head: the unary header, or the stream meta.
	pb []byte
	// rest is what follows the unary header: body and attachment.
	rest []byte

	request   bool   // a unary request or a stream INIT from the caller
	requestID uint32 // unary frames
	callType  uint32
	msgType   uint32
	failed    bool // a non-zero ret or func_ret, or a stream reset
	// ret and funcRet are an answer's framework and business return codes
	// (a stream INIT answer's or CLOSE frame's ret), for ResponseCode.
	ret, funcRet int32

	// Routable fields: caller, callee, func (requests and INIT frames) and the
	// trans_info entries, in wire order.
	caller, callee, fn []byte
	hasCore            bool
	trans              []kv
}

type kv struct{ key, value []byte }

// Decode parses one whole frame.
func (c *trpcCodec) Decode(b []byte) (*codec.Message, error) {
	f, err := c.parse(b)
	if err != nil {
		return nil, err
	}
	m := &codec.Message{Raw: b, Attrs: f, Private: f, ID: uint64(f.requestID)}
	switch {
	case f.dataType == unaryFrame && f.request && f.callType == callOneway:
		m.Kind = codec.KindOneway
	case f.dataType == unaryFrame && f.request:
		m.Kind = codec.KindRequest
	case f.dataType == unaryFrame:
		m.Kind = codec.KindResponse
	case f.streamType == streamInit && f.request:
		m.Kind, m.ID, m.OpensStream = codec.KindRequest, uint64(f.streamID), true
	case f.streamType == streamInit:
		m.Kind, m.ID = codec.KindResponse, uint64(f.streamID)
	default:
		m.Kind, m.ID = codec.KindStream, uint64(f.streamID)
		m.EndStream = f.streamType == streamClose
	}
	if f.failed {
		m.Status = codec.StatusError
	}
	return m, nil
}

// parse checks the head and walks the protobuf that follows it.
func (c *trpcCodec) parse(b []byte) (*frame, error) {
	if len(b) < headLen {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "frame of %d bytes is shorter than the %d-byte head", len(b), headLen)
	}
	if binary.BigEndian.Uint16(b) != magic {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "bad magic %x", b[:2])
	}
	total, err := c.totalLen(b)
	if err != nil {
		return nil, err
	}
	if total != len(b) {
		return nil, codec.Errorf(Name, codec.ErrMalformed, "total length %d, frame of %d bytes", total, len(b))
	}
	f := &frame{
		dataType:   b[offDataType],
		streamType: b[offStreamType],
		version:    b[offVersion],
		streamID:   binary.BigEndian.Uint32(b[offStreamID:]),
	}
	hlen := int(binary.BigEndian.Uint16(b[offHeaderLen:]))
	switch {
	case f.dataType == unaryFrame && f.streamType == 0:
		if hlen == 0 || headLen+hlen > len(b) {
			return nil, codec.Errorf(Name, codec.ErrMalformed, "unary header length %d in a frame of %d bytes", hlen, len(b))
		}
		f.pb, f.rest = b[headLen:headLen+hlen], b[headLen+hlen:]
		err = f.parseUnary()
	case f.dataType == streamFrame && f.streamType >= streamInit && f.streamType <= streamClose:
		if hlen != 0 {
			return nil, codec.Errorf(Name, codec.ErrMalformed, "stream frame with a header length %d, want 0", hlen)
		}
		f.pb = b[headLen:]
		err = f.parseStream()
	default:
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "data frame type %d, stream frame type %d", f.dataType, f.streamType)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// field is one protobuf field as walk reports it.
type field struct {
	num  protowire.Number
	typ  protowire.Type
	v    uint64 // varint fields
	b    []byte // length-delimited fields
	wire []byte // the whole field, tag included
}

// walk calls fn for every field of a protobuf message, and fails on bytes
// that are not a valid message.
func walk(pb []byte, fn func(field) error) error {
	for len(pb) > 0 {
		num, typ, n := protowire.ConsumeTag(pb)
		if n < 0 {
			return codec.Errorf(Name, codec.ErrMalformed, "protobuf tag: %v", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, pb[n:])
		if m < 0 {
			return codec.Errorf(Name, codec.ErrMalformed, "protobuf field %d: %v", num, protowire.ParseError(m))
		}
		fl := field{num: num, typ: typ, wire: pb[:n+m]}
		switch typ {
		case protowire.VarintType:
			fl.v, _ = protowire.ConsumeVarint(pb[n:])
		case protowire.BytesType:
			fl.b, _ = protowire.ConsumeBytes(pb[n:])
		}
		if err := fn(fl); err != nil {
			return err
		}
		pb = pb[n+m:]
	}
	return nil
}

// want checks a known field's wire type.
func (fl field) want(t protowire.Type) error {
	if fl.typ != t {
		return codec.Errorf(Name, codec.ErrMalformed, "protobuf field %d has wire type %d, want %d", fl.num, fl.typ, t)
	}
	return nil
}

// u32 reads a uint32 field; a larger value is malformed rather than silently
// cut, because the codec may write it back.
func (fl field) u32() (uint32, error) {
	if err := fl.want(protowire.VarintType); err != nil {
		return 0, err
	}
	if fl.v > math.MaxUint32 {
		return 0, codec.Errorf(Name, codec.ErrMalformed, "protobuf field %d: %d overflows uint32", fl.num, fl.v)
	}
	return uint32(fl.v), nil
}

// isRequest tells a RequestProtocol from a ResponseProtocol: the frame heads
// are identical, so the header's own fields decide. A request names the func
// it calls (field 7, bytes); in a response field 7 is a varint.
func isRequest(pb []byte) bool {
	req := false
	_ = walk(pb, func(fl field) error {
		if fl.num == fReqFunc {
			req = fl.typ == protowire.BytesType
		}
		return nil
	})
	return req
}

func (f *frame) parseUnary() error {
	f.request = isRequest(f.pb)
	transField := protowire.Number(fRspTransInfo)
	if f.request {
		transField = fReqTransInfo
		f.hasCore = true
	}
	var attachment uint32
	err := walk(f.pb, func(fl field) error {
		var err error
		switch {
		case fl.num == fRequestID:
			f.requestID, err = fl.u32()
		case fl.num == fCallType:
			f.callType, err = fl.u32()
		case fl.num == fAttachmentSize:
			attachment, err = fl.u32()
		case fl.num == transField:
			err = f.addTrans(fl)
		case f.request:
			err = f.requestField(fl)
		default:
			err = f.responseField(fl)
		}
		return err
	})
	if err != nil {
		return err
	}
	if uint64(attachment) > uint64(len(f.rest)) {
		return codec.Errorf(Name, codec.ErrMalformed, "attachment size %d exceeds the %d bytes after the header", attachment, len(f.rest))
	}
	return nil
}

func (f *frame) requestField(fl field) error {
	var err error
	switch fl.num {
	case fReqCaller:
		f.caller, err = fl.b, fl.want(protowire.BytesType)
	case fReqCallee:
		f.callee, err = fl.b, fl.want(protowire.BytesType)
	case fReqFunc:
		f.fn, err = fl.b, fl.want(protowire.BytesType)
	case fReqMsgType:
		f.msgType, err = fl.u32()
	case fVersion, fReqTimeout:
		_, err = fl.u32()
	}
	return err
}

func (f *frame) responseField(fl field) error {
	switch fl.num {
	case fRspRet, fRspFuncRet:
		if err := fl.want(protowire.VarintType); err != nil {
			return err
		}
		if int32(fl.v) != 0 {
			f.failed = true
		}
		if fl.num == fRspRet {
			f.ret = int32(fl.v)
		} else {
			f.funcRet = int32(fl.v)
		}
	case fRspErrorMsg:
		return fl.want(protowire.BytesType)
	case fRspMsgType:
		v, err := fl.u32()
		f.msgType = v
		return err
	}
	return nil
}

// addTrans records one trans_info map entry.
func (f *frame) addTrans(fl field) error {
	if err := fl.want(protowire.BytesType); err != nil {
		return err
	}
	if len(f.trans) >= maxTransInfo {
		return codec.Errorf(Name, codec.ErrTooLarge, "more than %d trans_info entries", maxTransInfo)
	}
	var e kv
	err := walk(fl.b, func(in field) error {
		switch in.num {
		case fMapKey:
			e.key = in.b
			return in.want(protowire.BytesType)
		case fMapValue:
			e.value = in.b
			return in.want(protowire.BytesType)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if f.trans == nil {
		f.trans = make([]kv, 0, 4)
	}
	f.trans = append(f.trans, e)
	return nil
}

func (f *frame) parseStream() error {
	switch f.streamType {
	case streamInit:
		return f.parseInit()
	case streamClose:
		return walk(f.pb, func(fl field) error {
			switch fl.num {
			case fCloseTransInfo:
				return f.addTrans(fl)
			case fCloseType, fCloseRet, fCloseFuncRet:
				if err := fl.want(protowire.VarintType); err != nil {
					return err
				}
				if fl.num == fCloseType && fl.v == closeReset || fl.num != fCloseType && int32(fl.v) != 0 {
					f.failed = true
				}
				switch fl.num {
				case fCloseRet:
					f.ret = int32(fl.v)
				case fCloseFuncRet:
					f.funcRet = int32(fl.v)
				}
			case fCloseMsg:
				return fl.want(protowire.BytesType)
			}
			return nil
		})
	case streamFeedback:
		return walk(f.pb, func(field) error { return nil })
	}
	return nil // DATA: the body is the caller's serialized message
}

// parseInit reads an INIT frame's meta. The caller's INIT has a request meta
// and no response meta; the callee's INIT answer has a response meta.
func (f *frame) parseInit() error {
	f.request = true
	f.hasCore = true
	return walk(f.pb, func(fl field) error {
		switch fl.num {
		case fInitRequestMeta:
			if err := fl.want(protowire.BytesType); err != nil {
				return err
			}
			return walk(fl.b, f.initRequestField)
		case fInitResponseMeta:
			if err := fl.want(protowire.BytesType); err != nil {
				return err
			}
			f.request = false
			return walk(fl.b, func(in field) error {
				switch in.num {
				case fInitRspRet:
					if err := in.want(protowire.VarintType); err != nil {
						return err
					}
					if int32(in.v) != 0 {
						f.failed = true
					}
					f.ret = int32(in.v)
				case fInitRspErrorMsg:
					return in.want(protowire.BytesType)
				}
				return nil
			})
		}
		return nil
	})
}

func (f *frame) initRequestField(fl field) error {
	switch fl.num {
	case fInitReqCaller:
		f.caller = fl.b
	case fInitReqCallee:
		f.callee = fl.b
	case fInitReqFunc:
		f.fn = fl.b
	case fInitReqTransInfo:
		return f.addTrans(fl)
	default:
		return nil
	}
	return fl.want(protowire.BytesType)
}

// Attribute keys the codec reads from the header; every other key is a
// trans_info entry.
const (
	AttrCaller = "caller"
	AttrCallee = "callee"
	AttrFunc   = "func"
)

// core returns the header field behind a core key.
func (f *frame) core(key string) ([]byte, bool) {
	if !f.hasCore {
		return nil, false
	}
	switch key {
	case AttrCaller:
		return f.caller, f.caller != nil
	case AttrCallee:
		return f.callee, f.callee != nil
	case AttrFunc:
		return f.fn, f.fn != nil
	}
	return nil, false
}

func isCore(key string) bool { return key == AttrCaller || key == AttrCallee || key == AttrFunc }

// Get implements codec.Attributes. The header's caller, callee and func take
// precedence over trans_info entries of the same name; of repeated trans_info
// keys the last wins, as in protobuf maps.
func (f *frame) Get(key string) (string, bool) {
	if isCore(key) && f.hasCore {
		v, ok := f.core(key)
		return string(v), ok
	}
	for i := len(f.trans) - 1; i >= 0; i-- {
		if string(f.trans[i].key) == key {
			return string(f.trans[i].value), true
		}
	}
	return "", false
}

// Range implements codec.Attributes, yielding each key once with the value
// Get returns.
func (f *frame) Range(fn func(key, value string) bool) {
	for _, k := range [...]string{AttrCaller, AttrCallee, AttrFunc} {
		if v, ok := f.core(k); ok && !fn(k, string(v)) {
			return
		}
	}
	for i, e := range f.trans {
		k := string(e.key)
		if f.hasCore && isCore(k) || f.laterKey(i) {
			continue
		}
		if !fn(k, string(e.value)) {
			return
		}
	}
}

// laterKey reports whether trans_info entry i is overridden by a later one.
func (f *frame) laterKey(i int) bool {
	for _, e := range f.trans[i+1:] {
		if string(e.key) == string(f.trans[i].key) {
			return true
		}
	}
	return false
}
