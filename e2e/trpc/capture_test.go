package trpc_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	trpc "trpc.group/trpc-go/trpc-go"
	"trpc.group/trpc-go/trpc-go/client"
	"trpc.group/trpc-go/trpc-go/codec"
	trpcpb "trpc.group/trpc/trpc-protocol/pb/go/trpc"
)

var update = flag.Bool("update", false, "capture fresh frames from real trpc-go peers into protocols/trpc/testdata")

const testdata = "../../protocols/trpc/testdata"

// TestCaptures records frames between a real trpc-go client and server (with
// -update) and checks that every stored capture is a frame trpc-go's own codec
// accepts, so the main module's tests run on real wire bytes.
func TestCaptures(t *testing.T) {
	if *update {
		writeCaptures(t, capture(t))
	}
	files, err := filepath.Glob(filepath.Join(testdata, "*.bin"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in %s (run with -update): %v", testdata, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checkCapture(t, filepath.Base(f), b)
	}
}

// capture runs each scenario through its own relay, so each relay's recording
// holds exactly that scenario's frames.
func capture(t *testing.T) map[string][]byte {
	srv := startServer(t, "a")
	out := map[string][]byte{}
	ctx := context.Background()

	// A unary call with trans_info and an attachment both ways.
	r := startRelay(t, srv)
	att := client.NewAttachment(strings.NewReader("attachment-bytes"))
	if _, err := callHello(ctx, sayHello, "alice", clientOpts(r.addr,
		client.WithMetaData("x-user", []byte("alice")),
		client.WithMetaData("x-env", []byte("canary")),
		client.WithAttachment(att))...); err != nil {
		t.Fatalf("SayHello: %v", err)
	}
	up, down := r.waitFrames(t, 1, 1)
	out["request_unary.bin"], out["response_unary.bin"] = up[0], down[0]

	// A oneway call: a request and no response.
	r = startRelay(t, srv)
	if _, err := callHello(ctx, sayHello, "bob", clientOpts(r.addr, client.WithSendOnly())...); err != nil {
		t.Fatalf("oneway SayHello: %v", err)
	}
	up, _ = r.waitFrames(t, 1, 0)
	out["request_oneway.bin"] = up[0]

	// A business error (func_ret) from the handler.
	r = startRelay(t, srv)
	if _, err := callHello(ctx, failHello, "carol", clientOpts(r.addr)...); err == nil {
		t.Fatal("FailHello succeeded")
	}
	up, down = r.waitFrames(t, 1, 1)
	out["request_fail.bin"], out["response_func_error.bin"] = up[0], down[0]

	// A framework error (ret): the server has no such func.
	r = startRelay(t, srv)
	if _, err := callHello(ctx, "/trpc.rosetta.test.Greeter/Missing", "dave", clientOpts(r.addr)...); err == nil {
		t.Fatal("a call to a missing func succeeded")
	}
	up, down = r.waitFrames(t, 1, 1)
	out["request_nofunc.bin"], out["response_nofunc.bin"] = up[0], down[0]

	// A bidirectional stream: INIT, DATA, CLOSE each way.
	r = startRelay(t, srv)
	if _, err := chatOnce(ctx, []string{"hi"}, clientOpts(r.addr, client.WithMetaData("x-user", []byte("erin")))...); err != nil {
		t.Fatalf("Chat: %v", err)
	}
	up, down = r.waitFrames(t, 3, 3)
	names := map[trpcpb.TrpcStreamFrameType]string{
		trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_INIT:     "init",
		trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_DATA:     "data",
		trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_FEEDBACK: "feedback",
		trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_CLOSE:    "close",
	}
	for dir, fs := range map[string][][]byte{"request": up, "response": down} {
		for _, f := range fs {
			name := dir + "_stream_" + names[trpcpb.TrpcStreamFrameType(f[3])] + ".bin"
			if _, dup := out[name]; !dup {
				out[name] = f
			}
		}
	}
	return out
}

func writeCaptures(t *testing.T, caps map[string][]byte) {
	old, _ := filepath.Glob(filepath.Join(testdata, "*.bin"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(testdata, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range caps {
		if err := os.WriteFile(filepath.Join(testdata, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", name, len(b))
	}
}

// checkCapture decodes a stored frame with trpc-go's own codec.
func checkCapture(t *testing.T, name string, b []byte) {
	t.Helper()
	fs := frames(t, b)
	if len(fs) != 1 || len(fs[0]) != len(b) {
		t.Fatalf("%s: trpc-go's framer found %d frames, want exactly the file", name, len(fs))
	}
	if b[2] == byte(trpcpb.TrpcDataFrameType_TRPC_STREAM_FRAME) {
		// trpc-go's stream codecs need a live stream to decode into; the
		// frame's metadata must still be a valid protobuf message.
		var m proto.Message
		switch trpcpb.TrpcStreamFrameType(b[3]) {
		case trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_INIT:
			m = &trpcpb.TrpcStreamInitMeta{}
		case trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_CLOSE:
			m = &trpcpb.TrpcStreamCloseMeta{}
		case trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_FEEDBACK:
			m = &trpcpb.TrpcStreamFeedBackMeta{}
		default:
			return
		}
		if err := proto.Unmarshal(b[16:], m); err != nil {
			t.Fatalf("%s: stream meta: %v", name, err)
		}
		return
	}
	_, msg := codec.WithNewMessage(context.Background())
	defer codec.PutBackMessage(msg)
	var err error
	if strings.HasPrefix(name, "request") {
		_, err = trpc.DefaultServerCodec.Decode(msg, b)
	} else {
		// The client codec checks the response against the request it sent.
		msg.WithClientReqHead(&trpcpb.RequestProtocol{RequestId: headID(b)})
		_, err = trpc.DefaultClientCodec.Decode(msg, b)
	}
	if err != nil {
		t.Fatalf("%s: trpc-go decode: %v", name, err)
	}
}

func headID(b []byte) uint32 {
	return uint32(b[10])<<24 | uint32(b[11])<<16 | uint32(b[12])<<8 | uint32(b[13])
}
