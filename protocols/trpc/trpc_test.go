package trpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	trpcpb "trpc.group/trpc/trpc-protocol/pb/go/trpc"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

func newCodec(t testing.TB, opts codec.Options) codec.Codec {
	t.Helper()
	c, err := New(opts, codec.PeerClient)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// build makes a frame with trpc-go's layout: head, protobuf header, body.
func build(t testing.TB, dataType, streamType byte, id uint32, header proto.Message, body []byte) []byte {
	t.Helper()
	var pb []byte
	if header != nil {
		var err error
		if pb, err = proto.Marshal(header); err != nil {
			t.Fatal(err)
		}
	}
	b := make([]byte, headLen, headLen+len(pb)+len(body))
	binary.BigEndian.PutUint16(b, magic)
	b[offDataType], b[offStreamType], b[offVersion] = dataType, streamType, 1
	binary.BigEndian.PutUint32(b[offTotalLen:], uint32(headLen+len(pb)+len(body)))
	if dataType == unaryFrame {
		binary.BigEndian.PutUint16(b[offHeaderLen:], uint16(len(pb)))
	}
	binary.BigEndian.PutUint32(b[offStreamID:], id)
	return append(append(b, pb...), body...)
}

func attrMap(a codec.Attributes) map[string]string {
	out := map[string]string{}
	a.Range(func(k, v string) bool {
		if _, dup := out[k]; dup {
			out["DUPLICATE "+k] = v
		}
		out[k] = v
		return true
	})
	return out
}

func sameAttrs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

func TestNewOptions(t *testing.T) {
	for _, tc := range []struct {
		opts    codec.Options
		max     int
		wantErr string
	}{
		{opts: nil, max: codec.DefaultMaxFrame},
		{opts: codec.Options{OptMaxFrameBytes: "1024"}, max: 1024},
		{opts: codec.Options{OptMaxFrameBytes: "4294967295"}, max: math.MaxUint32},
		{opts: codec.Options{OptMaxFrameBytes: "15"}, wantErr: "max_frame_bytes"},
		{opts: codec.Options{OptMaxFrameBytes: "4294967296"}, wantErr: "max_frame_bytes"},
		{opts: codec.Options{OptMaxFrameBytes: "ten"}, wantErr: "max_frame_bytes"},
		{opts: codec.Options{"max_frame": "10"}, wantErr: `unknown option "max_frame"`},
	} {
		c, err := New(tc.opts, codec.PeerClient)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "codec/trpc: ") {
				t.Errorf("New(%v) = %v, want an error naming %s", tc.opts, err, tc.wantErr)
			}
			continue
		}
		if err != nil || c.(*trpcCodec).maxFrame != tc.max {
			t.Errorf("New(%v) = %+v, %v; want max %d", tc.opts, c, err, tc.max)
		}
	}
}

func TestSplit(t *testing.T) {
	head := func(total uint32) []byte {
		b := make([]byte, headLen)
		binary.BigEndian.PutUint16(b, magic)
		binary.BigEndian.PutUint32(b[offTotalLen:], total)
		return b
	}
	for _, tc := range []struct {
		name string
		buf  []byte
		want codec.Split
		err  error
	}{
		{"empty", nil, codec.Split{Need: 16}, nil},
		{"first magic byte", []byte{0x09}, codec.Split{Need: 15}, nil},
		{"bad first byte", []byte{0x0a}, codec.Split{}, codec.ErrMalformed},
		{"bad magic", []byte{0x09, 0x31, 0}, codec.Split{}, codec.ErrMalformed},
		{"head only, short frame", head(20), codec.Split{Need: 4}, nil},
		{"whole frame and more", append(head(18), 1, 2, 3, 4), codec.Split{Len: 18}, nil},
		{"total shorter than head", head(15), codec.Split{}, codec.ErrMalformed},
		{"total at the limit", head(1024), codec.Split{Need: 1024 - 16}, nil},
		{"total past the limit", head(1025), codec.Split{}, codec.ErrTooLarge},
		{"total past uint32 limits", head(math.MaxUint32), codec.Split{}, codec.ErrTooLarge},
	} {
		got, err := newCodec(t, codec.Options{OptMaxFrameBytes: "1024"}).Split(tc.buf)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("%s: Split = %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// TestDecodeCaptures states what each real capture decodes to.
func TestDecodeCaptures(t *testing.T) {
	caps := captures(t)
	call := map[string]string{
		"caller": "trpc.rosetta.test.Caller",
		"callee": "trpc.rosetta.test.Greeter",
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		kind   codec.Kind
		status codec.Status
		end    bool
		attrs  map[string]string
	}{
		{"request_unary", codec.KindRequest, codec.StatusOK, false,
			with(call, "func", "/trpc.rosetta.test.Greeter/SayHello", "x-user", "alice", "x-env", "canary")},
		{"response_unary", codec.KindResponse, codec.StatusOK, false, map[string]string{"x-user": "alice", "x-env": "canary"}},
		{"request_oneway", codec.KindOneway, codec.StatusOK, false, with(call, "func", "/trpc.rosetta.test.Greeter/SayHello")},
		{"request_fail", codec.KindRequest, codec.StatusOK, false, with(call, "func", "/trpc.rosetta.test.Greeter/FailHello")},
		{"response_func_error", codec.KindResponse, codec.StatusError, false, map[string]string{}},
		{"request_nofunc", codec.KindRequest, codec.StatusOK, false, with(call, "func", "/trpc.rosetta.test.Greeter/Missing")},
		{"response_nofunc", codec.KindResponse, codec.StatusError, false, map[string]string{}},
		{"request_stream_init", codec.KindRequest, codec.StatusOK, false, with(call, "func", "/trpc.rosetta.test.Greeter/Chat", "x-user", "erin")},
		{"response_stream_init", codec.KindResponse, codec.StatusOK, false, map[string]string{}},
		{"request_stream_data", codec.KindStream, codec.StatusOK, false, map[string]string{}},
		{"response_stream_data", codec.KindStream, codec.StatusOK, false, map[string]string{}},
		{"request_stream_close", codec.KindStream, codec.StatusOK, true, map[string]string{}},
		{"response_stream_close", codec.KindStream, codec.StatusOK, true, map[string]string{}},
	} {
		b, ok := caps[tc.name]
		if !ok {
			t.Errorf("%s: no such capture", tc.name)
			continue
		}
		m, err := newCodec(t, nil).Decode(b)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		// trpc-go writes the request id into the head's stream id field on
		// unary frames too, so the head always holds the ID.
		headID := uint64(binary.BigEndian.Uint32(b[offStreamID:]))
		if m.Kind != tc.kind || m.Status != tc.status || m.EndStream != tc.end || m.ID != headID {
			t.Errorf("%s: kind %v status %v end %v id %d; want %v %v %v %d", tc.name, m.Kind, m.Status, m.EndStream, m.ID, tc.kind, tc.status, tc.end, headID)
		}
		if got := attrMap(m.Attrs); !sameAttrs(got, tc.attrs) {
			t.Errorf("%s: attrs %v, want %v", tc.name, got, tc.attrs)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	req := &trpcpb.RequestProtocol{RequestId: 1, Func: []byte("/a/b")}
	valid := build(t, unaryFrame, 0, 1, req, nil)
	patch := func(b []byte, fn func([]byte)) []byte {
		b = append([]byte(nil), b...)
		fn(b)
		return b
	}
	many := &trpcpb.RequestProtocol{Func: []byte("f"), TransInfo: map[string][]byte{}}
	for i := 0; i <= maxTransInfo; i++ {
		many.TransInfo[strconv.Itoa(i)] = nil
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		err   error
	}{
		{"short", valid[:10], codec.ErrMalformed},
		{"bad magic", patch(valid, func(b []byte) { b[1] = 0 }), codec.ErrMalformed},
		{"total differs", patch(valid, func(b []byte) { b[offTotalLen+3]++ }), codec.ErrMalformed},
		{"empty unary header", patch(valid, func(b []byte) { binary.BigEndian.PutUint16(b[offHeaderLen:], 0) }), codec.ErrMalformed},
		{"header past the end", patch(valid, func(b []byte) { binary.BigEndian.PutUint16(b[offHeaderLen:], 999) }), codec.ErrMalformed},
		{"unknown data type", patch(valid, func(b []byte) { b[offDataType] = 2 }), codec.ErrUnsupported},
		{"unary with a stream type", patch(valid, func(b []byte) { b[offStreamType] = 1 }), codec.ErrUnsupported},
		{"stream with a header", patch(build(t, streamFrame, streamData, 100, nil, []byte("x")), func(b []byte) { b[offHeaderLen+1] = 1 }), codec.ErrMalformed},
		{"stream type 5", build(t, streamFrame, 5, 100, nil, nil), codec.ErrUnsupported},
		{"bad protobuf", patch(valid, func(b []byte) { b[headLen] = 0xff }), codec.ErrMalformed},
		{"request id overflows uint32", build(t, unaryFrame, 0, 1, nil, nil), codec.ErrMalformed}, // replaced below
		{"caller as a varint", build(t, unaryFrame, 0, 1, nil, nil), codec.ErrMalformed},          // replaced below
		{"attachment past the body", build(t, unaryFrame, 0, 1, &trpcpb.RequestProtocol{Func: []byte("f"), AttachmentSize: 3}, []byte("ab")), codec.ErrMalformed},
		{"too many trans_info entries", build(t, unaryFrame, 0, 1, many, nil), codec.ErrTooLarge},
		{"bad INIT meta", build(t, streamFrame, streamInit, 100, nil, []byte{0x0a, 0x05}), codec.ErrMalformed},
	} {
		switch tc.name {
		case "request id overflows uint32":
			// func "f", then request_id = 2^32 as a raw varint.
			tc.frame = rawUnary([]byte{0x3a, 0x01, 'f', 0x18, 0x80, 0x80, 0x80, 0x80, 0x10})
		case "caller as a varint":
			tc.frame = rawUnary([]byte{0x3a, 0x01, 'f', 0x28, 0x01})
		}
		_, err := newCodec(t, nil).Decode(tc.frame)
		if !errors.Is(err, tc.err) || !strings.HasPrefix(err.Error(), "codec/trpc: ") {
			t.Errorf("%s: Decode = %v, want %v", tc.name, err, tc.err)
		}
	}
}

// rawUnary wraps hand-written protobuf header bytes in a unary head.
func rawUnary(pb []byte) []byte {
	b := make([]byte, headLen, headLen+len(pb))
	binary.BigEndian.PutUint16(b, magic)
	binary.BigEndian.PutUint32(b[offTotalLen:], uint32(headLen+len(pb)))
	binary.BigEndian.PutUint16(b[offHeaderLen:], uint16(len(pb)))
	return append(b, pb...)
}

// TestRewriteID checks both places a unary id lives, and that nothing else in
// the frame changes.
func TestRewriteID(t *testing.T) {
	c := newCodec(t, nil)
	orig := captures(t)["request_unary"]
	m, err := c.Decode(append([]byte(nil), orig...))
	if err != nil {
		t.Fatal(err)
	}
	m.ID = 0x01020304
	out, err := c.Encode([]byte("prefix"), m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte("prefix")) {
		t.Fatal("Encode did not append to dst")
	}
	out = out[len("prefix"):]
	if got := binary.BigEndian.Uint32(out[offStreamID:]); got != 0x01020304 {
		t.Errorf("head stream id %x", got)
	}
	was, now := header(t, orig), header(t, out)
	if now.RequestId != 0x01020304 {
		t.Errorf("header request_id %x", now.RequestId)
	}
	now.RequestId = was.RequestId
	if !proto.Equal(was, now) {
		t.Errorf("header changed beyond request_id:\n%v\n%v", was, now)
	}
	if !bytes.Equal(out[headLen+int(binary.BigEndian.Uint16(out[offHeaderLen:])):], orig[headLen+int(binary.BigEndian.Uint16(orig[offHeaderLen:])):]) {
		t.Error("body and attachment changed")
	}

	m.ID = math.MaxUint32 + 1
	if _, err := c.Encode(nil, m); !errors.Is(err, codec.ErrUnsupported) {
		t.Errorf("Encode of a 33-bit id: %v, want ErrUnsupported", err)
	}
}

func header(t *testing.T, frame []byte) *trpcpb.RequestProtocol {
	t.Helper()
	h := &trpcpb.RequestProtocol{}
	if err := proto.Unmarshal(frame[headLen:headLen+int(binary.BigEndian.Uint16(frame[offHeaderLen:]))], h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestMutations(t *testing.T) {
	caps := captures(t)
	for _, tc := range []struct {
		capture string
		muts    []codec.Attr
		err     error
		want    map[string]string // attributes that must read back
	}{
		{"request_unary", []codec.Attr{{Key: "x-user", Value: "bob"}, {Key: "x-new", Value: "1"}, {Key: "x-new", Value: "2"}}, nil,
			map[string]string{"x-user": "bob", "x-new": "2", "x-env": "canary", "func": "/trpc.rosetta.test.Greeter/SayHello"}},
		{"response_unary", []codec.Attr{{Key: "x-env", Value: "prod"}}, nil, map[string]string{"x-env": "prod", "x-user": "alice"}},
		{"request_oneway", []codec.Attr{{Key: "x-a", Value: "b"}}, nil, map[string]string{"x-a": "b", "caller": "trpc.rosetta.test.Caller"}},
		{"request_stream_init", []codec.Attr{{Key: "x-user", Value: "frank"}}, nil, map[string]string{"x-user": "frank", "func": "/trpc.rosetta.test.Greeter/Chat"}},
		{"request_stream_close", []codec.Attr{{Key: "x-a", Value: "b"}}, nil, map[string]string{"x-a": "b"}},
		{"request_stream_data", []codec.Attr{{Key: "x-a", Value: "b"}}, codec.ErrUnsupported, nil},
		{"request_unary", []codec.Attr{{Key: "func", Value: "/other"}}, codec.ErrUnsupported, nil},
	} {
		c := newCodec(t, nil)
		m, err := c.Decode(caps[tc.capture])
		if err != nil {
			t.Fatal(err)
		}
		m.Mutations = tc.muts
		out, err := c.Encode(nil, m)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s %v: Encode = %v, want %v", tc.capture, tc.muts, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.capture, err)
		}
		got, err := c.Decode(out)
		if err != nil {
			t.Fatalf("%s: decoding the mutated frame: %v", tc.capture, err)
		}
		if got.ID != m.ID || got.Kind != m.Kind {
			t.Errorf("%s: id %d kind %v, want %d %v", tc.capture, got.ID, got.Kind, m.ID, m.Kind)
		}
		attrs := attrMap(got.Attrs)
		for k, v := range tc.want {
			if attrs[k] != v {
				t.Errorf("%s: %s = %q, want %q (all: %v)", tc.capture, k, attrs[k], v, attrs)
			}
		}
	}
	// The trans_info that trpc-go reads is the mutated one.
	c := newCodec(t, nil)
	m, _ := c.Decode(caps["request_unary"])
	m.Set("x-user", "bob")
	out, err := c.Encode(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if h := header(t, out); string(h.TransInfo["x-user"]) != "bob" || string(h.TransInfo["x-env"]) != "canary" || len(h.TransInfo) != 2 {
		t.Errorf("trans_info after the mutation: %q", h.TransInfo)
	}
}

// TestAttributes covers keys that collide: a trans_info key named like a
// header field, and a repeated trans_info key.
func TestAttributes(t *testing.T) {
	// Marshal a map entry twice by hand: protobuf maps keep the last.
	pb := []byte{0x3a, 0x01, 'f'} // func "f"
	for _, e := range [][2]string{{"func", "shadowed"}, {"k", "first"}, {"k", "last"}} {
		entry := append(append([]byte{0x0a, byte(len(e[0]))}, e[0]...), append([]byte{0x12, byte(len(e[1]))}, e[1]...)...)
		pb = append(append(pb, 0x4a, byte(len(entry))), entry...)
	}
	m, err := newCodec(t, nil).Decode(rawUnary(pb))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"func": "f", "k": "last"}
	if got := attrMap(m.Attrs); !sameAttrs(got, want) {
		t.Errorf("attrs %v, want %v", got, want)
	}
	if v, _ := m.Get("k"); v != "last" {
		t.Errorf("Get(k) = %q", v)
	}
	if _, ok := m.Get("callee"); ok {
		t.Error("Get(callee) found an absent field")
	}
}

func TestReply(t *testing.T) {
	caps := captures(t)
	c := newCodec(t, nil)
	decode := func(name string) *codec.Message {
		m, err := c.Decode(caps[name])
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if rep, err := c.Reply(decode("request_oneway"), codec.StatusNoRoute, "x"); rep != nil || err != nil {
		t.Errorf("Reply to oneway = %v, %v; want nil, nil", rep, err)
	}
	if _, err := c.Reply(decode("request_unary"), codec.StatusOK, "x"); !errors.Is(err, codec.ErrUnsupported) {
		t.Errorf("Reply with StatusOK: %v", err)
	}
	if _, err := c.Reply(decode("response_unary"), codec.StatusTimeout, "x"); !errors.Is(err, codec.ErrUnsupported) {
		t.Errorf("Reply to a response: %v", err)
	}

	// The status table of README.md.
	for st, ret := range map[codec.Status]int32{
		codec.StatusNoRoute: 12, codec.StatusNoUpstream: 131, codec.StatusTimeout: 21,
		codec.StatusOverloaded: 22, codec.StatusRateLimited: 23, codec.StatusUpstreamReset: 141,
		codec.StatusBadRequest: 51, codec.StatusUnauthorized: 41, codec.StatusFault: 31, codec.StatusError: 999,
	} {
		if got := RetCode(st); got != ret || trpcpb.TrpcRetCode_name[got] == "" {
			t.Errorf("RetCode(%v) = %d, want %d (a trpc.proto code)", st, got, ret)
		}
	}

	// A stream INIT is refused with an INIT answer; a stray stream frame is
	// reset with a CLOSE.
	init := decode("request_stream_init")
	rep, err := c.Reply(init, codec.StatusNoRoute, "no route")
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := c.Encode(nil, rep)
	meta := &trpcpb.TrpcStreamInitMeta{}
	if err := proto.Unmarshal(wire[headLen:], meta); err != nil || rep.Kind != codec.KindResponse || rep.ID != init.ID ||
		wire[offStreamType] != streamInit || meta.GetResponseMeta().GetRet() != 12 {
		t.Errorf("INIT reply %+v %v: %v", rep, meta, err)
	}
	data := decode("request_stream_data")
	rep, err = c.Reply(data, codec.StatusUpstreamReset, "reset")
	if err != nil {
		t.Fatal(err)
	}
	wire, _ = c.Encode(nil, rep)
	cl := &trpcpb.TrpcStreamCloseMeta{}
	if err := proto.Unmarshal(wire[headLen:], cl); err != nil || rep.Kind != codec.KindStream || !rep.EndStream || rep.ID != data.ID ||
		rep.Status != codec.StatusError || cl.GetCloseType() != int32(trpcpb.TrpcStreamCloseType_TRPC_STREAM_RESET) || cl.GetRet() != 141 || string(cl.GetMsg()) != "reset" {
		t.Errorf("stream reset reply %+v %v: %v", rep, cl, err)
	}
}

func TestSniff(t *testing.T) {
	s := newCodec(t, nil).(codec.Sniffer)
	for _, tc := range []struct {
		prefix      []byte
		match, sure bool
	}{
		{nil, false, false},
		{[]byte{0x09}, false, false},
		{[]byte{0x09, 0x30, 0}, false, false},
		{[]byte{0x09, 0x30, 0, 0}, true, true},
		{[]byte{0x09, 0x30, 1, 1}, true, true},
		{[]byte{0x09, 0x30, 1, 0}, false, true},
		{[]byte{0x09, 0x30, 0, 2}, false, true},
		{[]byte("GET /"), false, true},
		{[]byte{0xda, 0xbb}, false, true},
	} {
		if m, sure := s.Sniff(tc.prefix); m != tc.match || sure != tc.sure {
			t.Errorf("Sniff(%x) = %v, %v; want %v, %v", tc.prefix, m, sure, tc.match, tc.sure)
		}
	}
}
