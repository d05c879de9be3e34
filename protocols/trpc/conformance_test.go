package trpc

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	trpcpb "trpc.group/trpc/trpc-protocol/pb/go/trpc"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/codec/codectest"
)

// captures reads testdata/*.bin: frames recorded between a real trpc-go
// client and server by e2e/trpc's TestCaptures -update.
func captures(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/*.bin")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in testdata: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".bin")] = b
	}
	return out
}

// byPrefix lists the captures whose name starts with prefix, sorted by name.
func byPrefix(caps map[string][]byte, prefix string) [][]byte {
	var names []string
	for n := range caps {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	out := make([][]byte, len(names))
	for i, n := range names {
		out[i] = caps[n]
	}
	return out
}

func TestConformance(t *testing.T) {
	p, ok := codec.Lookup(Name)
	if !ok {
		t.Fatal("trpc is not registered")
	}
	caps := captures(t)
	oversized := make([]byte, headLen)
	binary.BigEndian.PutUint16(oversized, magic)
	binary.BigEndian.PutUint32(oversized[offTotalLen:], 1<<20+1)
	codectest.Run(t, codectest.Suite{
		Protocol:   p,
		Options:    codec.Options{OptMaxFrameBytes: "1048576"},
		MaxFrame:   1 << 20,
		Requests:   byPrefix(caps, "request_"),
		Responses:  byPrefix(caps, "response_"),
		Oversized:  oversized,
		Mutation:   &codec.Attr{Key: "x-route", Value: "canary"},
		CheckReply: checkReply,
	})
}

// checkReply decodes a local reply with the trpc-protocol protobuf types, as
// trpc-go's client codec does, and checks what that client would report: a
// framework error (ret) with our code and message, for the request's id.
// e2e/trpc runs the same replies through trpc-go's own client.
func checkReply(t *testing.T, req *codec.Message, status codec.Status, wire []byte) {
	t.Helper()
	if binary.BigEndian.Uint32(wire[offTotalLen:]) != uint32(len(wire)) {
		t.Fatalf("reply total length %d, frame of %d bytes", binary.BigEndian.Uint32(wire[offTotalLen:]), len(wire))
	}
	if got := binary.BigEndian.Uint32(wire[offStreamID:]); uint64(got) != req.ID {
		t.Fatalf("reply head stream id %d, want %d", got, req.ID)
	}
	want := RetCode(status)
	detail := "rosetta: " + status.String()
	if wire[offDataType] == streamFrame {
		meta := &trpcpb.TrpcStreamInitMeta{}
		if err := proto.Unmarshal(wire[headLen:], meta); err != nil {
			t.Fatalf("INIT reply: %v", err)
		}
		rm := meta.GetResponseMeta()
		if rm.GetRet() != want || string(rm.GetErrorMsg()) != detail {
			t.Fatalf("INIT reply ret %d msg %q, want %d %q", rm.GetRet(), rm.GetErrorMsg(), want, detail)
		}
		return
	}
	hlen := int(binary.BigEndian.Uint16(wire[offHeaderLen:]))
	if hlen == 0 || headLen+hlen > len(wire) {
		t.Fatalf("reply header length %d in %d bytes", hlen, len(wire))
	}
	rsp := &trpcpb.ResponseProtocol{}
	if err := proto.Unmarshal(wire[headLen:headLen+hlen], rsp); err != nil {
		t.Fatalf("reply header: %v", err)
	}
	if uint64(rsp.GetRequestId()) != req.ID || rsp.GetRet() != want || rsp.GetFuncRet() != 0 || string(rsp.GetErrorMsg()) != detail {
		t.Fatalf("reply request_id %d ret %d func_ret %d msg %q; want %d %d 0 %q",
			rsp.GetRequestId(), rsp.GetRet(), rsp.GetFuncRet(), rsp.GetErrorMsg(), req.ID, want, detail)
	}
	if rsp.GetAttachmentSize() != 0 || len(wire) != headLen+hlen {
		t.Fatalf("reply carries %d body bytes and attachment size %d, want none", len(wire)-headLen-hlen, rsp.GetAttachmentSize())
	}
}
