package proxy_test

import (
	"bytes"
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
