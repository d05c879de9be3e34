package proxy_test

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// buggy is the toy codec with bugs a hostile peer can reach: Split panics
// on a buffer that starts with "PANIC", and Decode on a request whose body
// is "panic-down" or an answer whose body is "panic-up".
type buggy struct{ toy.Codec }

func init() {
	codec.Register(codec.Protocol{Name: "toy-buggy", Ordering: codec.ByID, New: func(codec.Options, codec.Peer) (codec.Codec, error) { return buggy{}, nil }})
}

func (b buggy) Split(buf []byte) (codec.Split, error) {
	if bytes.HasPrefix(buf, []byte("PANIC")) {
		panic("split bug")
	}
	return b.Codec.Split(buf)
}

func (b buggy) Decode(frame []byte) (*codec.Message, error) {
	m, err := b.Codec.Decode(frame)
	if err == nil && (m.Kind == codec.KindRequest && bytes.HasSuffix(frame, []byte("panic-down")) ||
		m.Kind == codec.KindResponse && bytes.HasSuffix(frame, []byte("panic-up"))) {
		panic("decode bug")
	}
	return m, err
}

// TestCodecPanicEndsOnlyThatConnection: a codec that panics on what a peer
// sent costs that one connection (a client's, or the upstream one and the
// requests on it), not the proxy: other clients keep being served.
func TestCodecPanicEndsOnlyThatConnection(t *testing.T) {
	addr := throughCodec(t, "toy-buggy", "")
	works := stillServes(t, addr)

	frame, err := toy.AppendFrame(nil, toy.KindRequest, 1, 0, nil, []byte("panic-down"))
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{"split": []byte("PANIC!"), "decode": frame} {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Write(bad); err != nil {
			t.Fatal(err)
		}
		_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		for err == nil { // an error reply may come first; then the close
			_, err = raw.Read(make([]byte, 64))
		}
		if isTimeout(err) {
			t.Fatalf("%s: the connection whose frame made the codec panic stayed open", name)
		}
		raw.Close()
		works("after a panic in " + name)
	}

	// The server's answer makes the upstream codec panic: that request
	// fails, the upstream connection closes, and the next calls get a new one.
	victim := dial(t, addr)
	r, err := victim.Call(nil, []byte("panic-up"))
	if err != nil || r.Err() == nil || !strings.Contains(r.Err().Error(), "upstream connection reset: codec: Decode panicked") {
		t.Fatalf("a call whose answer breaks the codec got %v, %v; want an upstream reset", err, r.Err())
	}
	works("after a panic on the upstream connection")
}

// buggyHandler is the toy codec as a Handler that sends a request whose
// body is "dedicated" over a dedicated connection, with a receiver that
// panics on the server's answer; other requests it forwards.
type buggyHandler struct{ toy.Codec }

var _ codec.Handler = buggyHandler{}

func init() {
	codec.Register(codec.Protocol{Name: "toy-buggy-handler", Ordering: codec.ByID, New: func(codec.Options, codec.Peer) (codec.Codec, error) { return buggyHandler{}, nil }})
}

// ends says whether m's frame ends with suffix: the toy frame's body is
// its tail.
func ends(m *codec.Message, suffix string) bool { return bytes.HasSuffix(m.Raw, []byte(suffix)) }

func (h buggyHandler) Handle(req *codec.Message, up codec.Upstream, reply codec.Replier) {
	if !ends(req, "dedicated") {
		up.Forward(req, func(resp *codec.Message, st codec.Status, detail string) {
			if resp == nil {
				resp, _ = h.Reply(req, st, detail)
			}
			reply.Reply(resp)
		})
		return
	}
	addr := up.Endpoints("a")[0]
	dc, err := up.Dedicated("a", addr, func(m *codec.Message, err error) {
		if m != nil {
			panic("receiver bug")
		}
	})
	if err == nil {
		err = dc.Send(req)
	}
	if err != nil {
		rep, _ := h.Reply(req, codec.StatusNoUpstream, err.Error())
		reply.Reply(rep)
	}
}

// TestDedicatedReceiverPanicEndsOnlyThatConnection: a Handler's receiver
// of a dedicated connection runs on a goroutine of the proxy's; its panic
// closes the client's connection, not the proxy.
func TestDedicatedReceiverPanicEndsOnlyThatConnection(t *testing.T) {
	addr := throughCodec(t, "toy-buggy-handler", "")
	works := stillServes(t, addr)
	victim := dial(t, addr)
	if r, err := victim.Call(nil, []byte("dedicated")); err == nil {
		t.Fatalf("got %v; want the connection closed", r)
	}
	works("after a panic in a dedicated connection's receiver")
}

// badAnswers is the toy protocol as an in-order one whose Encode refuses
// answers whose body is "bad".
type badAnswers struct{ toy.Codec }

func init() {
	codec.Register(codec.Protocol{Name: "toy-in-order-bad-answers", Ordering: codec.InOrder, New: func(codec.Options, codec.Peer) (codec.Codec, error) { return badAnswers{}, nil }})
}

func (c badAnswers) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	if m.Kind == codec.KindResponse && ends(m, "bad") {
		return dst, codec.Errorf("toy", codec.ErrUnsupported, "cannot write this answer")
	}
	return c.Codec.Encode(dst, m)
}

// TestInOrderAnswerEncodeFailureClosesTheConnection: in an in-order
// protocol an answer that cannot be written must not just be dropped, or
// every answer after it would go to the wrong request: the client gets the
// answers before it, then the connection closes.
func TestInOrderAnswerEncodeFailureClosesTheConnection(t *testing.T) {
	addr := throughCodec(t, "toy-in-order-bad-answers", inOrderEcho(t))
	got := answersBeforeClose(t, addr, "first", "xbad", "third")
	if len(got) != 1 || got[0] != "first" {
		t.Fatalf("answers %q before the close; want only the first", got)
	}
}

// badReplies is the toy protocol as an in-order one whose Reply fails.
type badReplies struct{ toy.Codec }

func init() {
	codec.Register(codec.Protocol{Name: "toy-in-order-bad-replies", Ordering: codec.InOrder, New: func(codec.Options, codec.Peer) (codec.Codec, error) { return badReplies{}, nil }})
}

func (badReplies) Reply(*codec.Message, codec.Status, string) (*codec.Message, error) {
	return nil, codec.Errorf("toy", codec.ErrUnsupported, "cannot write a local reply")
}

// TestInOrderReplyFailureClosesTheConnection: a local reply the codec
// cannot build (here to a request no route takes) breaks an in-order
// connection in its place, as an answer it cannot encode does; skipped,
// it would hand the next request's answer to the caller as this one's.
func TestInOrderReplyFailureClosesTheConnection(t *testing.T) {
	lst := listener("in", "r", obj{"codec": "toy-in-order-bad-replies"})
	p := start(t, []obj{lst},
		[]obj{routeConfig("r", route("routed", match("method", "ok"), obj{"cluster": "a", "timeout": "5s"}))},
		[]obj{cluster("a", "", inOrderEcho(t))})
	got := answersBeforeClose(t, p.Addr(t, "in"), "first", "xbad", "third")
	if len(got) != 1 || got[0] != "first" {
		t.Fatalf("answers %q before the close; want only the first", got)
	}
}

// inOrderEcho is a toy server that answers in order, as an in-order
// protocol's server does (the toy server answers concurrently); it echoes
// the last five bytes of each request, its body here.
func inOrderEcho(t *testing.T) string {
	return testutil.Accept(t, func(nc net.Conn) {
		defer nc.Close()
		fr := wire.NewReader(nc, toy.Codec{})
		for {
			frame, err := fr.Next()
			if err != nil {
				return
			}
			m, err := (toy.Codec{}).Decode(frame)
			if err != nil {
				return
			}
			out, _ := toy.AppendFrame(nil, toy.KindResponse, m.ID, 0, nil, frame[len(frame)-min(len(frame), 5):])
			if _, err := nc.Write(out); err != nil {
				return
			}
		}
	})
}

// answersBeforeClose sends the bodies pipelined to addr, with method "ok"
// except for bodies starting with "x", and returns the bodies of the
// answers read until the proxy closes the connection.
func answersBeforeClose(t *testing.T, addr string, bodies ...string) []string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var out []byte
	for i, body := range bodies {
		method := "ok"
		if body[0] == 'x' {
			method = "other"
		}
		if out, err = toy.AppendFrame(out, toy.KindRequest, uint64(i+1), 0, map[string]string{"method": method}, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second)) // a bound on a failure, not a wait
	fr := wire.NewReader(nc, toy.Codec{})
	var got []string
	for {
		frame, err := fr.Next()
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("answers %q, and the connection stayed open", got)
			}
			return got
		}
		got = append(got, string(frame[len(frame)-min(len(frame), 5):]))
	}
}

// throughCodec starts a proxy whose listener speaks the named codec and
// sends everything to upstream, or to a toy server when upstream is "";
// it returns the listener's address.
func throughCodec(t *testing.T, name, upstream string) string {
	t.Helper()
	if upstream == "" {
		a, _ := named(t, "a")
		upstream = a.Addr()
	}
	lst := listener("in", "r", nil)
	lst["filter_chains"].([]obj)[0]["filters"].([]obj)[0]["typed_config"].(obj)["codec"] = name
	p := start(t, []obj{lst},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "a", "timeout": "5s"}))},
		[]obj{cluster("a", "", upstream)})
	return p.Addr(t, "in")
}

// stillServes returns a check that a client of its own still gets its
// calls through addr answered, and makes it once.
func stillServes(t *testing.T, addr string) func(when string) {
	t.Helper()
	good := dial(t, addr)
	works := func(when string) {
		t.Helper()
		if r, err := good.Call(nil, []byte("hi")); err != nil || r.Err() != nil || string(r.Body) != "hi" {
			t.Fatalf("%s, a good call failed: %v %v", when, err, r)
		}
	}
	works("before")
	return works
}
