package trpc

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	trpcpb "trpc.group/trpc/trpc-protocol/pb/go/trpc"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// This file implements codec.Caller, for rosettactl call and serve.
//
// A request's attributes:
//
//	callee        the called service ("trpc.test.helloworld.Greeter")
//	func          the called function ("/trpc.test.helloworld.Greeter/SayHello"; required)
//	caller        the calling service
//	timeout       the timeout the header carries, in milliseconds
//	content_type  the body's serialization: json (2, the default), pb (0),
//	              or a number
//	trans_info.K  a trans_info entry K (any other key is one too)
//
// The argument, at most one, is the body: JSON text as is, or raw bytes
// given as hex:0a05... or text:.... An answer's body is shown as text when
// its content type is JSON (or it is valid UTF-8), else as hex:....
// Respond answers with a JSON body (content type 2), which trpc-go clients
// decode by the answer's content type whatever they sent.
const (
	attrTimeout     = "timeout"
	attrContentType = "content_type"
	transPrefix     = "trans_info."
	contentPB       = 0
	contentJSON     = 2
)

// NewRequest implements codec.Caller.
func (c *trpcCodec) NewRequest(id uint64, attrs map[string]string, args []string) (*codec.Message, error) {
	if id > math.MaxUint32 {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "id %d does not fit tRPC's 32-bit request id", id)
	}
	req := &trpcpb.RequestProtocol{
		RequestId:   uint32(id),
		Caller:      []byte(attrs[AttrCaller]),
		Callee:      []byte(attrs[AttrCallee]),
		Func:        []byte(attrs[AttrFunc]),
		ContentType: contentJSON,
		TransInfo:   map[string][]byte{},
	}
	if len(req.Func) == 0 {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "a call needs the attribute func (\"/pkg.Service/Method\")")
	}
	for k, v := range attrs {
		switch {
		case isCore(k):
		case k == attrTimeout:
			ms, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, codec.Errorf(Name, codec.ErrUnsupported, "attribute timeout=%q: want milliseconds", v)
			}
			req.Timeout = uint32(ms)
		case k == attrContentType:
			ct, err := parseContentType(v)
			if err != nil {
				return nil, err
			}
			req.ContentType = ct
		default:
			req.TransInfo[strings.TrimPrefix(k, transPrefix)] = []byte(v)
		}
	}
	if len(args) > 1 {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "a call takes one argument, the body, not %d", len(args))
	}
	var body []byte
	if len(args) == 1 {
		var err error
		if body, err = parseBody(args[0]); err != nil {
			return nil, err
		}
	}
	header, err := proto.Marshal(req)
	if err != nil {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "request header: %v", err)
	}
	return c.unaryFrame(uint32(id), header, body)
}

func parseContentType(v string) (uint32, error) {
	switch v {
	case "json":
		return contentJSON, nil
	case "pb", "protobuf":
		return contentPB, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, codec.Errorf(Name, codec.ErrUnsupported, "attribute content_type=%q: want json, pb or a number", v)
	}
	return uint32(n), nil
}

// parseBody reads a body given as hex:..., text:... or JSON text.
func parseBody(arg string) ([]byte, error) {
	switch {
	case strings.HasPrefix(arg, "hex:"):
		b, err := hex.DecodeString(arg[len("hex:"):])
		if err != nil {
			return nil, codec.Errorf(Name, codec.ErrUnsupported, "body %q: %v", arg, err)
		}
		return b, nil
	case strings.HasPrefix(arg, "text:"):
		return []byte(arg[len("text:"):]), nil
	}
	return []byte(arg), nil
}

// unaryFrame writes a head before header and body and decodes the frame.
func (c *trpcCodec) unaryFrame(id uint32, header, body []byte) (*codec.Message, error) {
	if len(header) > math.MaxUint16 {
		return nil, codec.Errorf(Name, codec.ErrTooLarge, "header of %d bytes overflows the 16-bit header length", len(header))
	}
	total := headLen + len(header) + len(body)
	if total > c.maxFrame {
		return nil, codec.Errorf(Name, codec.ErrTooLarge, "frame of %d bytes exceeds %s %d", total, OptMaxFrameBytes, c.maxFrame)
	}
	b := make([]byte, headLen, total)
	binary.BigEndian.PutUint16(b, magic)
	binary.BigEndian.PutUint32(b[offTotalLen:], uint32(total))
	binary.BigEndian.PutUint16(b[offHeaderLen:], uint16(len(header)))
	binary.BigEndian.PutUint32(b[offStreamID:], id)
	b[offVersion] = 1
	b = append(append(b, header...), body...)
	return c.Decode(b)
}

// Answer implements codec.Caller.
func (c *trpcCodec) Answer(resp *codec.Message) (codec.Answer, error) {
	f, ok := resp.Private.(*frame)
	if !ok || resp.Kind != codec.KindResponse {
		return codec.Answer{}, codec.Errorf(Name, codec.ErrUnsupported, "not a decoded unary response")
	}
	var h trpcpb.ResponseProtocol
	if err := proto.Unmarshal(f.pb, &h); err != nil {
		return codec.Answer{}, codec.Errorf(Name, codec.ErrMalformed, "response header: %v", err)
	}
	a := codec.Answer{Status: codec.StatusOK, Code: fmt.Sprintf("ret %d func_ret %d", h.Ret, h.FuncRet)}
	if h.Ret != 0 || h.FuncRet != 0 {
		a.Status, a.Error = codec.StatusError, string(h.ErrorMsg)
	}
	body := f.rest
	if n := int(h.AttachmentSize); n > 0 && n <= len(body) {
		body = body[:len(body)-n]
	}
	a.Value = showBody(body, h.ContentType)
	return a, nil
}

// showBody shows a body as text when it is JSON or UTF-8, else as hex.
func showBody(body []byte, contentType uint32) string {
	if contentType == contentJSON || utf8.Valid(body) && !strings.ContainsFunc(string(body), isControl) {
		return string(body)
	}
	return "hex:" + hex.EncodeToString(body)
}

func isControl(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' && r != '\r' }

// Respond implements codec.Caller: a successful answer with reply as its
// JSON body.
func (c *trpcCodec) Respond(req *codec.Message, reply string) (*codec.Message, error) {
	body, err := parseBody(reply)
	if err != nil {
		return nil, err
	}
	f, ok := req.Private.(*frame)
	if !ok || req.Kind != codec.KindRequest || f.dataType != unaryFrame {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "serve answers unary requests only")
	}
	h := &trpcpb.ResponseProtocol{RequestId: f.requestID, ContentType: contentJSON}
	if strings.HasPrefix(reply, "hex:") || strings.HasPrefix(reply, "text:") {
		h.ContentType = contentPB // raw bytes: what a protobuf body is on the wire
	}
	header, err := proto.Marshal(h)
	if err != nil {
		return nil, codec.Errorf(Name, codec.ErrUnsupported, "response header: %v", err)
	}
	return c.unaryFrame(f.requestID, header, body)
}

// Args implements codec.Caller: the request's body.
func (c *trpcCodec) Args(req *codec.Message) (string, error) {
	f, ok := req.Private.(*frame)
	if !ok || f.dataType != unaryFrame {
		return "", codec.Errorf(Name, codec.ErrUnsupported, "not a decoded unary request")
	}
	var h trpcpb.RequestProtocol
	if err := proto.Unmarshal(f.pb, &h); err != nil {
		return "", codec.Errorf(Name, codec.ErrMalformed, "request header: %v", err)
	}
	body := f.rest
	if n := int(h.AttachmentSize); n > 0 && n <= len(body) {
		body = body[:len(body)-n]
	}
	return fmt.Sprintf("content_type=%d body=%s", h.ContentType, showBody(body, h.ContentType)), nil
}

var _ codec.Caller = (*trpcCodec)(nil)
