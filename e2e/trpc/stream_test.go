package trpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trpc.group/trpc-go/trpc-go/client"
	"trpc.group/trpc-go/trpc-go/codec"
	"trpc.group/trpc-go/trpc-go/server"
	"trpc.group/trpc-go/trpc-go/stream"
	"trpc.group/trpc-go/trpc-go/transport"
	trpcpb "trpc.group/trpc/trpc-protocol/pb/go/trpc"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	rtrpc "github.com/rosetta-mesh/rosetta/protocols/trpc"
)

// Streams besides Chat (bidirectional, in peers_test.go): one per direction.
const (
	// collect is client streaming: the server reads every message until the
	// caller closes, then answers once with all of them joined by ",".
	collect = "/trpc.rosetta.test.Greeter/Collect"
	// count is server streaming: the request "n:prefix:size" asks for n
	// messages countItem(server, prefix, i, size).
	count = "/trpc.rosetta.test.Greeter/Count"
	// unrouted is a stream no route of startStreamProxy matches.
	unrouted = "/trpc.rosetta.test.Greeter/Unrouted"
)

// streamsActive counts stream handlers running on every test server, so a
// test can see a server's side of a stream end.
var streamsActive atomic.Int64

// countActive wraps each stream handler to keep streamsActive.
func countActive(descs []server.StreamDesc) []server.StreamDesc {
	for i := range descs {
		h := descs[i].Handler
		descs[i].Handler = func(svr interface{}, s server.Stream) error {
			streamsActive.Add(1)
			defer streamsActive.Add(-1)
			return h(svr, s)
		}
	}
	return descs
}

func moreStreams() []server.StreamDesc {
	return []server.StreamDesc{
		{StreamName: collect, ClientStreams: true, Handler: func(svr interface{}, s server.Stream) error {
			var got []string
			for {
				req := &wrapperspb.StringValue{}
				err := s.RecvMsg(req)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
				got = append(got, req.GetValue())
			}
			return s.SendMsg(wrapperspb.String(svr.(*greeter).name + ": " + strings.Join(got, ",")))
		}},
		{StreamName: count, ServerStreams: true, Handler: func(svr interface{}, s server.Stream) error {
			req := &wrapperspb.StringValue{}
			if err := s.RecvMsg(req); err != nil {
				return err
			}
			n, prefix, size, err := parseCount(req.GetValue())
			if err != nil {
				return err
			}
			for i := 0; i < n; i++ {
				if err := s.SendMsg(wrapperspb.String(countItem(svr.(*greeter).name, prefix, i, size))); err != nil {
					return err
				}
			}
			return nil
		}},
	}
}

func parseCount(v string) (n int, prefix string, size int, err error) {
	parts := strings.Split(v, ":")
	if len(parts) != 3 {
		return 0, "", 0, fmt.Errorf("count request %q: want n:prefix:size", v)
	}
	if n, err = strconv.Atoi(parts[0]); err != nil {
		return 0, "", 0, err
	}
	if size, err = strconv.Atoi(parts[2]); err != nil {
		return 0, "", 0, err
	}
	return n, parts[1], size, nil
}

// countItem is the i-th message of a Count stream: the server's name, the
// caller's prefix, the index and size bytes of a letter that depends on i, so
// a message from another stream or out of order shows.
func countItem(server, prefix string, i, size int) string {
	return fmt.Sprintf("%s: %s-%d-%s", server, prefix, i, strings.Repeat(string(rune('a'+i%26)), size))
}

// startStreamProxy runs the proxy with stream routes: x-env=canary goes to
// b; Chat, Count and SayHello go to a; Collect goes to b; anything else has
// no route.
func startStreamProxy(t *testing.T, a, b string) string {
	t.Helper()
	byFunc := func(name, fn, cluster string) obj {
		return obj{"name": name, "match": obj{"attributes": []obj{{"name": "func", "exact": fn}}},
			"route": obj{"cluster": cluster, "timeout": "3s"}}
	}
	cfg := obj{
		"listeners": []obj{{
			"name":    "trpc",
			"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
			"filter_chains": []obj{{"filters": []obj{{
				"name": "rosetta.metaprotocol",
				"typed_config": obj{
					"@type":             "type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy",
					"codec":             rtrpc.Name,
					"route_config_name": "routes",
				},
			}}}},
		}},
		"routes": []obj{{"name": "routes", "routes": []obj{
			{"name": "canary", "match": obj{"attributes": []obj{{"name": "x-env", "exact": "canary"}}},
				"route": obj{"cluster": "b", "timeout": "3s"}},
			byFunc("chat", chat, "a"),
			byFunc("count", count, "a"),
			byFunc("collect", collect, "b"),
			byFunc("hello", sayHello, "a"),
		}}},
		"clusters": []obj{clusterFor("a", a), clusterFor("b", b)},
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return proxytest.Start(t, string(js)).Addr(t, "trpc")
}

// streamPeer is one trpc-go streaming client with its own stream transport,
// hence its own TCP connection to the proxy; its streams are numbered from
// 100 on that connection, like every other peer's.
type streamPeer struct {
	sc   stream.Client
	opts []client.Option
}

func newStreamPeer(addr string, more ...client.Option) *streamPeer {
	opts := append(clientOpts(addr, more...),
		client.WithStreamTransport(transport.NewClientStreamTransport()),
		client.WithCurrentSerializationType(codec.SerializationTypePB))
	return &streamPeer{sc: stream.NewStreamClient(), opts: opts}
}

// open starts a stream to method; end must be called when it is done.
func (p *streamPeer) open(ctx context.Context, method string, clientStreams, serverStreams bool,
	more ...client.Option) (cs client.ClientStream, end func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	// The message is not put back in trpc-go's pool: the stream's own
	// goroutine still reads it after the stream has ended.
	ctx, msg := codec.WithCloneMessage(ctx)
	msg.WithCalleeServiceName(serviceName)
	end = cancel
	desc := &client.ClientStreamDesc{StreamName: method, ClientStreams: clientStreams, ServerStreams: serverStreams}
	cs, err = p.sc.NewStream(ctx, desc, method, append(append([]client.Option(nil), p.opts...), more...)...)
	if err != nil {
		end()
		return nil, nil, err
	}
	return cs, end, nil
}

// chat runs a bidirectional stream: each message must come back from want
// as "<want>: <message>", and the stream must end with io.EOF.
func (p *streamPeer) chat(ctx context.Context, want string, msgs []string, more ...client.Option) error {
	cs, end, err := p.open(ctx, chat, true, true, more...)
	if err != nil {
		return fmt.Errorf("open chat: %w", err)
	}
	defer end()
	for i, m := range msgs {
		if err := cs.SendMsg(wrapperspb.String(m)); err != nil {
			return fmt.Errorf("chat send %d: %w", i, err)
		}
		rsp := &wrapperspb.StringValue{}
		if err := cs.RecvMsg(rsp); err != nil {
			return fmt.Errorf("chat recv %d: %w", i, err)
		}
		if got := rsp.GetValue(); got != want+": "+m {
			return fmt.Errorf("chat reply %d: got %.80q, want %.80q", i, got, want+": "+m)
		}
	}
	if err := cs.CloseSend(); err != nil {
		return fmt.Errorf("chat close: %w", err)
	}
	if err := cs.RecvMsg(&wrapperspb.StringValue{}); !errors.Is(err, io.EOF) {
		return fmt.Errorf("chat end: %v, want io.EOF", err)
	}
	return nil
}

// collect runs a client stream and checks the single answer names want and
// holds every message in order.
func (p *streamPeer) collect(ctx context.Context, want string, msgs []string, more ...client.Option) error {
	cs, end, err := p.open(ctx, collect, true, false, more...)
	if err != nil {
		return fmt.Errorf("open collect: %w", err)
	}
	defer end()
	for i, m := range msgs {
		if err := cs.SendMsg(wrapperspb.String(m)); err != nil {
			return fmt.Errorf("collect send %d: %w", i, err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		return fmt.Errorf("collect close: %w", err)
	}
	rsp := &wrapperspb.StringValue{}
	if err := cs.RecvMsg(rsp); err != nil { // also reads the server's CLOSE
		return fmt.Errorf("collect recv: %w", err)
	}
	if got, w := rsp.GetValue(), want+": "+strings.Join(msgs, ","); got != w {
		return fmt.Errorf("collect answer: got %.80q (%d bytes), want %.80q (%d bytes)", got, len(got), w, len(w))
	}
	return nil
}

// count runs a server stream of n messages of size bytes and checks each
// comes from want, in order, for this prefix.
func (p *streamPeer) count(ctx context.Context, want, prefix string, n, size int, more ...client.Option) error {
	cs, end, err := p.open(ctx, count, false, true, more...)
	if err != nil {
		return fmt.Errorf("open count: %w", err)
	}
	defer end()
	if err := cs.SendMsg(wrapperspb.String(fmt.Sprintf("%d:%s:%d", n, prefix, size))); err != nil {
		return fmt.Errorf("count send: %w", err)
	}
	if err := cs.CloseSend(); err != nil {
		return fmt.Errorf("count close: %w", err)
	}
	for i := 0; i < n; i++ {
		rsp := &wrapperspb.StringValue{}
		if err := cs.RecvMsg(rsp); err != nil {
			return fmt.Errorf("count recv %d: %w", i, err)
		}
		if got, w := rsp.GetValue(), countItem(want, prefix, i, size); got != w {
			return fmt.Errorf("count item %d: got %.80q, want %.80q", i, got, w)
		}
	}
	if err := cs.RecvMsg(&wrapperspb.StringValue{}); !errors.Is(err, io.EOF) {
		return fmt.Errorf("count end: %v, want io.EOF", err)
	}
	return nil
}

var canary = client.WithMetaData("x-env", []byte("canary"))

func words(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// TestStreamsThroughProxy: real trpc-go streams of each kind go through the
// proxy to the server their INIT's route names, every DATA and FEEDBACK
// frame follows to that server (replies carry the server's name; a server
// stream of 300 KB needs the client's FEEDBACK frames to reach the server,
// whose send window is 64 KB), and each stream ends cleanly: io.EOF on the
// client, the server's handler returns, and on each upstream connection
// every stream is INIT ... CLOSE both ways with nothing after.
func TestStreamsThroughProxy(t *testing.T) {
	ra, rb := startRelay(t, startServer(t, "a")), startRelay(t, startServer(t, "b"))
	addr := startStreamProxy(t, ra.addr, rb.addr)
	ctx := context.Background()
	p := newStreamPeer(addr)

	steps := []struct {
		name string
		run  func() error
	}{
		{"bidi to a by func", func() error { return p.chat(ctx, "a", words("hi", 20)) }},
		{"bidi to b by trans_info", func() error { return p.chat(ctx, "b", words("yo", 20), canary) }},
		{"client stream to b by func", func() error { return p.collect(ctx, "b", words("c", 50)) }},
		{"server stream to a by func", func() error { return p.count(ctx, "a", "n", 300, 1000) }},
		{"server stream to b by trans_info", func() error { return p.count(ctx, "b", "m", 30, 100, canary) }},
		{"unary on the same proxy", func() error {
			got, err := callHello(ctx, sayHello, "x", clientOpts(addr)...)
			if err == nil && got != "a: hello x" {
				err = fmt.Errorf("SayHello: %q", got)
			}
			return err
		}},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "no stream active", func() bool { return streamsActive.Load() == 0 })

	// a had Chat and Count; b had Chat, Collect and Count (canary).
	checkUpstreamStreams(t, "a", ra, 2)
	checkUpstreamStreams(t, "b", rb, 3)
}

// checkUpstreamStreams cuts a relay's recording between the proxy and one
// server into frames and checks each stream on it: the proxy opens it with
// INIT and the server answers INIT first; the server ends it with CLOSE and
// sends no DATA after; the proxy sends at most one CLOSE and no DATA after
// it (a client that has closed its side still sends FEEDBACK while it
// reads).
//
// The server may send a second CLOSE: trpc-go answers a FEEDBACK or CLOSE
// from the caller that crosses its own CLOSE with a reset for an unknown
// stream, over a direct connection too.
func checkUpstreamStreams(t *testing.T, name string, r *relay, want int) {
	t.Helper()
	var streams map[uint32]*streamSeq
	err := testutil.Poll(10*time.Second, name+": every stream on the upstream connection to end", func() (bool, error) {
		streams = streamFrames(t, r)
		if len(streams) < want {
			return false, fmt.Errorf("%d streams", len(streams))
		}
		for id, s := range streams {
			if countByte(s.down, closeFrame) == 0 {
				return false, fmt.Errorf("stream %d not closed", id)
			}
		}
		return true, nil
	})
	if err != nil {
		for id, s := range streams {
			t.Logf("%s: stream %d: frame types up %v, down %v", name, id, s.up, s.down)
		}
		t.Fatal(err)
	}
	if len(streams) != want {
		t.Errorf("%s: %d streams on the upstream connection, want %d", name, len(streams), want)
	}
	for id, s := range streams {
		if len(s.up) == 0 || s.up[0] != initFrame || s.down[0] != initFrame {
			t.Errorf("%s: stream %d: frame types up %v, down %v; want INIT first both ways", name, id, s.up, s.down)
		}
		if after := s.down[bytes.IndexByte(s.down, closeFrame)+1:]; countByte(after, dataFrame) != 0 {
			t.Errorf("%s: stream %d: DATA from the server after its CLOSE (frame types %v)", name, id, s.down)
		}
		if n := countByte(s.up, closeFrame); n > 1 {
			t.Errorf("%s: stream %d: %d CLOSE frames from the proxy, want at most 1 (frame types %v)", name, id, n, s.up)
		}
		if i := bytes.IndexByte(s.up, closeFrame); i >= 0 && countByte(s.up[i+1:], dataFrame) != 0 {
			t.Errorf("%s: stream %d: DATA from the proxy after its CLOSE (frame types %v)", name, id, s.up)
		}
	}
}

// streamSeq is the stream frame types of one stream, in order, each way.
type streamSeq struct{ up, down []byte }

// streamFrames returns the stream frame types a relay has recorded, by
// stream ID and direction.
func streamFrames(t *testing.T, r *relay) map[uint32]*streamSeq {
	r.mu.Lock()
	u, d := append([]byte(nil), r.up.Bytes()...), append([]byte(nil), r.down.Bytes()...)
	r.mu.Unlock()
	out := map[uint32]*streamSeq{}
	add := func(rec []byte, up bool) {
		for _, f := range frames(t, rec) {
			if f[2] != byte(trpcpb.TrpcDataFrameType_TRPC_STREAM_FRAME) {
				continue
			}
			s := out[headID(f)]
			if s == nil {
				s = &streamSeq{}
				out[headID(f)] = s
			}
			if up {
				s.up = append(s.up, f[3])
			} else {
				s.down = append(s.down, f[3])
			}
		}
	}
	add(u, true)
	add(d, false)
	return out
}

const (
	initFrame  = byte(trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_INIT)
	dataFrame  = byte(trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_DATA)
	closeFrame = byte(trpcpb.TrpcStreamFrameType_TRPC_STREAM_FRAME_CLOSE)
)

func countByte(b []byte, c byte) int {
	n := 0
	for _, x := range b {
		if x == c {
			n++
		}
	}
	return n
}

// TestStreamsConcurrent: several trpc-go clients, each on its own
// connection to the proxy and numbering its streams from 100 like the
// others, run streams of every kind at once to both servers. The proxy
// multiplexes them over shared upstream connections under rewritten IDs;
// every message carries random bytes and must come back intact, from the
// right server, on the right stream.
func TestStreamsConcurrent(t *testing.T) {
	a, b := startServer(t, "a"), startServer(t, "b")
	addr := startStreamProxy(t, a, b)
	ctx := context.Background()

	const clients, perClient = 4, 6
	var wg sync.WaitGroup
	errc := make(chan error, clients*perClient)
	for c := 0; c < clients; c++ {
		p := newStreamPeer(addr)
		for s := 0; s < perClient; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(c), uint64(s)))
				msgs := make([]string, 30)
				for i := range msgs {
					pad := make([]byte, rng.IntN(2000))
					for j := range pad {
						pad[j] = byte('A' + rng.IntN(26))
					}
					msgs[i] = fmt.Sprintf("c%d-s%d-m%d-%s", c, s, i, pad)
				}
				var err error
				switch s % 4 {
				case 0:
					err = p.chat(ctx, "a", msgs)
				case 1:
					err = p.chat(ctx, "b", msgs, canary)
				case 2:
					err = p.collect(ctx, "b", msgs)
				case 3:
					err = p.count(ctx, "a", fmt.Sprintf("c%ds%d", c, s), 100, 1+rng.IntN(3000))
				}
				if err != nil {
					errc <- fmt.Errorf("client %d stream %d: %w", c, s, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	testutil.Eventually(t, 10*time.Second, "no stream active", func() bool { return streamsActive.Load() == 0 })
}

// TestStreamNoRoute: a stream whose INIT matches no route fails to open with
// the proxy's framework error 12 (RetServerNoFunc), and the client's
// connection keeps working for the next stream.
func TestStreamNoRoute(t *testing.T) {
	a, b := startServer(t, "a"), startServer(t, "b")
	addr := startStreamProxy(t, a, b)
	ctx := context.Background()
	p := newStreamPeer(addr)
	for _, bidi := range []bool{true, false} {
		_, _, err := p.open(ctx, unrouted, bidi, true)
		frameError(t, err, int(rtrpc.RetServerNoFunc), "")
	}
	if err := p.chat(ctx, "a", words("after", 3)); err != nil {
		t.Fatalf("a stream after the refused one: %v", err)
	}
}

// TestStreamServerRefuses: a stream routed to a server that has no such
// stream fails to open with the server's own error, and nothing of it stays
// open: the next stream on the same client connection works.
func TestStreamServerRefuses(t *testing.T) {
	a, b := startServer(t, "a"), startServer(t, "b")
	addr := startStreamProxy(t, a, b)
	ctx := context.Background()
	p := newStreamPeer(addr)
	_, _, err := p.open(ctx, unrouted, true, true, canary)
	// The server's answer, not the proxy's: the message is trpc-go's.
	frameError(t, err, int(rtrpc.RetServerNoFunc), "")
	if !strings.Contains(err.Error(), "service handle: rpc name "+unrouted+" invalid") {
		t.Fatalf("error %v is not the server's", err)
	}
	if err := p.chat(ctx, "b", words("after", 3), canary); err != nil {
		t.Fatalf("a stream after the refused one: %v", err)
	}
}
