package trpc_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	trpc "trpc.group/trpc-go/trpc-go"
	"trpc.group/trpc-go/trpc-go/errs"
	trpcpb "trpc.group/trpc/trpc-protocol/pb/go/trpc"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// cutter forwards TCP connections to a target until cut closes them all: a
// way to break one hop of a stream's path in the middle of the stream.
type cutter struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

func startCutter(t *testing.T, target string) *cutter {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{addr: lis.Addr().String()}
	t.Cleanup(func() { lis.Close(); c.cut() })
	go func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

// cut closes every connection made so far.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nc := range c.conns {
		nc.Close()
	}
	c.conns = nil
}

// TestStreamUpstreamReset: when the upstream connection of an open stream
// breaks, the client sees the stream end at once with the proxy's error
// (trpc-go's code for a network failure, 141, as the callee's framework
// error), not at its deadline; its connection to the proxy keeps working.
func TestStreamUpstreamReset(t *testing.T) {
	cut := startCutter(t, startServer(t, "a"))
	addr := startStreamProxy(t, cut.addr, startServer(t, "b"))
	p := newStreamPeer(addr)
	cs, end, err := p.open(context.Background(), chat, true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer end()
	if err := cs.SendMsg(wrapperspb.String("one")); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&wrapperspb.StringValue{}); err != nil {
		t.Fatal(err)
	}
	cut.cut()
	start := time.Now()
	err = cs.RecvMsg(&wrapperspb.StringValue{})
	took := time.Since(start)
	if !hasCode(err, errs.ErrorTypeCalleeFramework, errs.RetClientNetErr) || took > 5*time.Second {
		t.Fatalf("after the upstream connection broke: RecvMsg = %v after %v; want the callee framework error %d at once",
			err, took.Round(time.Millisecond), errs.RetClientNetErr)
	}
	if err := p.chat(context.Background(), "b", words("after", 3), canary); err != nil {
		t.Fatalf("a stream after the reset one: %v", err)
	}
}

// hasCode reports whether a trpc-go error of this type and code is in err's
// chain (trpc-go wraps a stream's failure in its own "stream closed" error).
func hasCode(err error, typ int, code trpcpb.TrpcRetCode) bool {
	for err != nil {
		var e *errs.Error
		if !errors.As(err, &e) {
			return false
		}
		if e.Type == typ && e.Code == code {
			return true
		}
		err = e.Unwrap()
	}
	return false
}

// TestStreamClientGone: when a client's connection to the proxy breaks with
// a stream open, the proxy ends the stream upstream: on the stream's
// upstream connection, under the stream's upstream ID, it sends a reset
// CLOSE (close_type RESET, ret 141, trpc-go's code for a network failure),
// and the server answers it.
//
// The server's handler does not return on it: trpc-go v1.0.3 never hands a
// reset CLOSE from the caller to the stream (see
// TestTrpcGoServerCloseFrames), and a trpc-go client never sends one. The
// only CLOSE its handler sees is a normal one, which reads as io.EOF, "the
// caller has sent everything": the proxy must not send that for a client
// that vanished, or a client-streaming handler would act on cut-short
// input. The handler ends when the upstream connection closes, as it does
// for a vanished trpc-go client connected directly.
func TestStreamClientGone(t *testing.T) {
	ra := startRelay(t, startServer(t, "a"))
	addr := startStreamProxy(t, ra.addr, startServer(t, "b"))
	// The client is hand-written frames, so going away is closing its
	// socket (cutting a trpc-go client's connection trips a data race
	// inside trpc-go's multiplexed pool under -race).
	openRawChat(t, addr).Close()

	// INIT, DATA, CLOSE up; INIT, DATA and the server's answer to the
	// CLOSE down.
	ups, downs := ra.waitFrames(t, 3, 3)
	id := headID(ups[0])
	for _, f := range append(ups, downs...) {
		if headID(f) != id {
			t.Fatalf("frame of stream %d on the upstream connection; the only stream is %d", headID(f), id)
		}
	}
	if len(ups) != 3 || ups[0][3] != initFrame || ups[1][3] != dataFrame || ups[2][3] != closeFrame {
		t.Fatalf("frames up: %v; want INIT, DATA, CLOSE", frameTypes(ups))
	}
	reset := closeMeta(t, ups[2])
	if reset.GetCloseType() != int32(trpcpb.TrpcStreamCloseType_TRPC_STREAM_RESET) || reset.GetRet() != int32(errs.RetClientNetErr) {
		t.Fatalf("the proxy's CLOSE upstream is {%v}, want close_type %d (reset) and ret %d",
			reset, trpcpb.TrpcStreamCloseType_TRPC_STREAM_RESET, errs.RetClientNetErr)
	}
	// trpc-go answers a reset CLOSE by sending it back: proof it reached
	// the server and was read as a reset of this stream.
	if downs[2][3] != closeFrame || !proto.Equal(closeMeta(t, downs[2]), reset) {
		t.Fatalf("the server's answer to the reset is type %d {%v}, want the reset back", downs[2][3], closeMeta(t, downs[2]))
	}
	// The stream's upstream connection still carries other streams.
	if err := newStreamPeer(addr).chat(context.Background(), "a", words("after", 3)); err != nil {
		t.Fatalf("a stream after the client went away: %v", err)
	}
}

// TestTrpcGoServerCloseFrames pins what trpc-go v1.0.3's server does with a
// caller's CLOSE, over a direct connection: a normal CLOSE (close_type
// CLOSE, ret 0; a message is ignored) reaches the handler as io.EOF. A CLOSE
// with close_type RESET or any ret is turned into an error by the stream
// codec, and service.Handle answers such a frame at once by encoding it
// back, without passing it to the stream dispatcher: the handler keeps
// waiting until the connection closes. If this test starts failing after a
// trpc-go upgrade, TestStreamClientGone can ask for the handler to end.
func TestTrpcGoServerCloseFrames(t *testing.T) {
	addr := startServer(t, "a")
	resets := []*trpcpb.TrpcStreamCloseMeta{
		{CloseType: int32(trpcpb.TrpcStreamCloseType_TRPC_STREAM_RESET), Ret: int32(errs.RetClientNetErr), Msg: []byte("gone")},
		{CloseType: int32(trpcpb.TrpcStreamCloseType_TRPC_STREAM_RESET)},
		{Ret: int32(errs.RetClientNetErr)},
	}
	for _, cm := range resets {
		testutil.Eventually(t, 10*time.Second, "no stream active", func() bool { return streamsActive.Load() == 0 })
		nc := openRawChat(t, addr)
		writeFrame(t, nc, streamFrame(closeFrame, rawID, mustMarshal(t, cm)))
		// The server reads a connection's frames one at a time: once the
		// answer is here, the CLOSE has been handled.
		f := readFrame(t, nc)
		if f[3] != closeFrame || !proto.Equal(closeMeta(t, f), cm) {
			t.Fatalf("CLOSE {%v}: answer type %d {%v}, want the CLOSE back", cm, f[3], closeMeta(t, f))
		}
		if n := streamsActive.Load(); n != 1 {
			t.Fatalf("CLOSE {%v}: %d handlers running, want 1 (trpc-go now ends the handler on a reset?)", cm, n)
		}
		nc.Close()
		testutil.Eventually(t, 10*time.Second, "no stream active", func() bool { return streamsActive.Load() == 0 })
	}

	testutil.Eventually(t, 10*time.Second, "no stream active", func() bool { return streamsActive.Load() == 0 })
	nc := openRawChat(t, addr)
	defer nc.Close()
	writeFrame(t, nc, streamFrame(closeFrame, rawID, mustMarshal(t, &trpcpb.TrpcStreamCloseMeta{Msg: []byte("gone")})))
	testutil.Eventually(t, 10*time.Second, "no stream active", func() bool { return streamsActive.Load() == 0 })
	if f := readFrame(t, nc); f[3] != closeFrame || !proto.Equal(closeMeta(t, f), &trpcpb.TrpcStreamCloseMeta{}) {
		t.Fatalf("after a normal CLOSE the server sent type %d {%v}, want its own normal CLOSE", f[3], closeMeta(t, f))
	}
}

const rawID = 7 // the stream ID of hand-written streams

// openRawChat opens a Chat stream with hand-written frames straight to a
// server and has one message echoed, so its handler is waiting in RecvMsg.
func openRawChat(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	initMeta := mustMarshal(t, &trpcpb.TrpcStreamInitMeta{
		RequestMeta:    &trpcpb.TrpcStreamInitRequestMeta{Caller: []byte("raw"), Callee: []byte(serviceName), Func: []byte(chat)},
		InitWindowSize: 65535,
	})
	writeFrame(t, nc, streamFrame(initFrame, rawID, initMeta))
	if f := readFrame(t, nc); f[3] != initFrame {
		t.Fatalf("first frame back is type %d, want INIT", f[3])
	}
	writeFrame(t, nc, streamFrame(dataFrame, rawID, mustMarshal(t, wrapperspb.String("hi"))))
	if f := readFrame(t, nc); f[3] != dataFrame {
		t.Fatalf("frame back after DATA is type %d, want DATA", f[3])
	}
	return nc
}

func writeFrame(t *testing.T, nc net.Conn, b []byte) {
	t.Helper()
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readFrame reads one whole frame with trpc-go's framer.
func readFrame(t *testing.T, nc net.Conn) []byte {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := trpc.DefaultFramerBuilder.New(nc).ReadFrame()
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return append([]byte(nil), f...)
}

// closeMeta decodes the body of a CLOSE frame.
func closeMeta(t *testing.T, f []byte) *trpcpb.TrpcStreamCloseMeta {
	t.Helper()
	m := &trpcpb.TrpcStreamCloseMeta{}
	if err := proto.Unmarshal(f[16:], m); err != nil {
		t.Fatalf("CLOSE body: %v", err)
	}
	return m
}

func frameTypes(fs [][]byte) []byte {
	out := make([]byte, len(fs))
	for i, f := range fs {
		out[i] = f[3]
	}
	return out
}

// streamFrame builds a tRPC stream frame: the 16-byte head and body.
func streamFrame(typ byte, id uint32, body []byte) []byte {
	b := make([]byte, 16, 16+len(body))
	binary.BigEndian.PutUint16(b, 0x0930)
	b[2] = byte(trpcpb.TrpcDataFrameType_TRPC_STREAM_FRAME)
	b[3] = typ
	binary.BigEndian.PutUint32(b[4:], uint32(16+len(body)))
	binary.BigEndian.PutUint32(b[10:], id)
	return append(b, body...)
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readStreamFrame reads one frame with trpc-go's framer and returns its
// stream frame type.
func readStreamFrame(t *testing.T, nc net.Conn) byte {
	t.Helper()
	return readFrame(t, nc)[3]
}

// TestStreamClientCloseAfterServerClose: a tRPC stream ends when both sides
// have sent CLOSE, in either order. Here the server ends a server stream
// first (Count of 0 items), and the caller's own CLOSE comes after it: the
// proxy must pass it to the server, as a direct connection would. The caller is hand-written frames, so the
// order is certain; trpc-go clients hit the same order by chance (see
// checkUpstreamStreams).
func TestStreamClientCloseAfterServerClose(t *testing.T) {
	ra := startRelay(t, startServer(t, "a"))
	addr := startStreamProxy(t, ra.addr, startServer(t, "b"))
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const id = 100
	initMeta := mustMarshal(t, &trpcpb.TrpcStreamInitMeta{
		RequestMeta:    &trpcpb.TrpcStreamInitRequestMeta{Caller: []byte("raw"), Callee: []byte(serviceName), Func: []byte(count)},
		InitWindowSize: 65535,
	})
	write := func(b []byte) {
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	write(streamFrame(initFrame, id, initMeta))
	if typ := readStreamFrame(t, nc); typ != initFrame {
		t.Fatalf("first frame back is type %d, want INIT", typ)
	}
	write(streamFrame(dataFrame, id, mustMarshal(t, wrapperspb.String("0:z:1"))))
	if typ := readStreamFrame(t, nc); typ != closeFrame {
		t.Fatalf("frame back after DATA is type %d, want the server's CLOSE", typ)
	}
	write(streamFrame(closeFrame, id, mustMarshal(t, &trpcpb.TrpcStreamCloseMeta{})))

	var ups []byte
	err = testutil.Poll(5*time.Second, "the caller's CLOSE at the server", func() (bool, error) {
		ups = nil
		for _, s := range streamFrames(t, ra) {
			ups = append(ups, s.up...)
		}
		return countByte(ups, closeFrame) == 1, nil
	})
	if err != nil {
		_ = nc.SetReadDeadline(time.Now().Add(time.Second))
		f, err := trpc.DefaultFramerBuilder.New(nc).ReadFrame()
		got := "nothing"
		if err == nil {
			cm := &trpcpb.TrpcStreamCloseMeta{}
			_ = proto.Unmarshal(f[16:], cm)
			got = fmt.Sprintf("a frame of type %d (%v)", f[3], cm)
		}
		t.Fatalf("the caller's CLOSE did not reach the server (frame types up %v); the caller got %s", ups, got)
	}
}
