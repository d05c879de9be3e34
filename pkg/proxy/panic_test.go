package proxy_test

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// buggy is the toy codec with bugs a hostile peer can reach: Split panics
// on a buffer that starts with "PANIC", and Decode on a request whose body
// is "panic-down" or an answer whose body is "panic-up".
type buggy struct{ toy.Codec }

func init() {
	codec.Register(codec.Protocol{Name: "toy-buggy", Ordering: codec.ByID, New: func(codec.Options) (codec.Codec, error) { return buggy{}, nil }})
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
	a, _ := named(t, "a")
	lst := listener("in", "r", nil)
	lst["filter_chains"].([]obj)[0]["filters"].([]obj)[0]["typed_config"].(obj)["codec"] = "toy-buggy"
	p := start(t, []obj{lst},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "a", "timeout": "5s"}))},
		[]obj{cluster("a", "", a.Addr())})
	addr := p.Addr(t, "in")
	good := dial(t, addr)
	works := func(when string) {
		t.Helper()
		if r, err := good.Call(nil, []byte("hi")); err != nil || r.Err() != nil || string(r.Body) != "hi" {
			t.Fatalf("%s, a good call failed: %v %v", when, err, r)
		}
	}
	works("before")

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

// buggyHandler is the toy codec as a Handler with bugs a request can reach,
// by its body: "handle" panics in Handle, "handle-reply" in Handle and then
// in the error reply the proxy asks for, "callback" in the callback that
// gets the server's answer, and "encode" in the Encode of that answer.
type buggyHandler struct{ toy.Codec }

func init() {
	codec.Register(codec.Protocol{Name: "toy-buggy-handler", Ordering: codec.ByID, New: func(codec.Options) (codec.Codec, error) { return buggyHandler{}, nil }})
}

// ends says whether m's frame ends with suffix: the toy frame's body is
// its tail.
func ends(m *codec.Message, suffix string) bool { return bytes.HasSuffix(m.Raw, []byte(suffix)) }

func (h buggyHandler) Handle(req *codec.Message, up codec.Upstream, reply func(*codec.Message)) {
	switch {
	case ends(req, "handle"), ends(req, "handle-reply"):
		panic("handle bug")
	}
	up.Forward(req, func(resp *codec.Message, st codec.Status, detail string) {
		if ends(req, "callback") {
			panic("callback bug")
		}
		if resp == nil {
			resp, _ = h.Reply(req, st, detail)
		}
		reply(resp)
	})
}

func (h buggyHandler) Reply(req *codec.Message, st codec.Status, detail string) (*codec.Message, error) {
	if ends(req, "handle-reply") {
		panic("reply bug")
	}
	return h.Codec.Reply(req, st, detail)
}

func (h buggyHandler) Encode(dst []byte, m *codec.Message) ([]byte, error) {
	if m.Kind == codec.KindResponse && ends(m, "encode") {
		half, _ := h.Codec.Encode(dst, m)
		panic(fmt.Sprintf("encode bug, %d bytes in", len(half)-len(dst)))
	}
	return h.Codec.Encode(dst, m)
}

// TestHandlerPanicEndsOnlyThatConnection: a Handler codec's panic in
// Handle, in its callback, in Reply or in Encode costs at most the client
// connection it happened on. A panic in Handle is answered with the
// protocol's error reply when the codec can build one, then the connection
// closes; one in a callback closes it at once; an answer Encode could not
// write is dropped whole, not half written.
func TestHandlerPanicEndsOnlyThatConnection(t *testing.T) {
	a, _ := named(t, "a")
	lst := listener("in", "r", nil)
	lst["filter_chains"].([]obj)[0]["filters"].([]obj)[0]["typed_config"].(obj)["codec"] = "toy-buggy-handler"
	p := start(t, []obj{lst},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "a", "timeout": "5s"}))},
		[]obj{cluster("a", "", a.Addr())})
	addr := p.Addr(t, "in")
	good := dial(t, addr)
	works := func(when string) {
		t.Helper()
		if r, err := good.Call(nil, []byte("hi")); err != nil || r.Err() != nil || string(r.Body) != "hi" {
			t.Fatalf("%s, a good call failed: %v %v", when, err, r)
		}
	}
	works("before")

	victim := dial(t, addr)
	r, err := victim.Call(nil, []byte("handle"))
	if err != nil || r.Err() == nil || !strings.Contains(r.Err().Error(), "could not handle the request") {
		t.Fatalf("a request Handle panics on got %v, %v; want the codec's error reply", r, err)
	}
	if _, err := victim.Call(nil, []byte("hi")); err == nil {
		t.Fatal("the connection stayed open after a panic in Handle")
	}
	works("after a panic in Handle")

	for _, b := range []string{"handle-reply", "callback"} {
		victim := dial(t, addr)
		if r, err := victim.Call(nil, []byte(b)); err == nil {
			t.Fatalf("%s: got %v; want the connection closed", b, r)
		}
		works("after a panic in " + b)
	}

	// The answer that Encode panics on is dropped; the answers after it
	// on the same connection are whole.
	victim = dial(t, addr)
	go func() { _, _ = victim.Call(nil, []byte("encode")) }()
	if r, err := victim.Call(nil, []byte("after")); err != nil || r.Err() != nil || string(r.Body) != "after" {
		t.Fatalf("after an answer Encode panicked on: %v, %v", r, err)
	}
	works("after a panic in Encode")
}
