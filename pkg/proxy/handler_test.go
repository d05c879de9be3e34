package proxy_test

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// fanout is the toy codec plus a Handler: a request with method "both" is
// sent once with target=a and once with target=b, and the answers are joined,
// as Redis splits MGET across shards.
type fanout struct{ toy.Codec }

var _ codec.Handler = fanout{}

func init() {
	codec.Register(codec.Protocol{Name: "toy-fanout", New: func(codec.Options, codec.Peer) (codec.Codec, error) { return fanout{}, nil }})
}

func (f fanout) Handle(req *codec.Message, up codec.Upstream, reply codec.Replier) {
	if m, _ := req.Get("method"); m == "push" {
		// An unsolicited message with id 99, then the answer.
		out, _ := toy.AppendFrame(nil, toy.KindResponse, 99, 0, nil, []byte("pushed"))
		pushed, _ := f.Decode(out)
		up.Push(pushed)
		out, _ = toy.AppendFrame(nil, toy.KindResponse, req.ID, 0, nil, []byte("answer"))
		ans, _ := f.Decode(out)
		reply.Reply(ans)
		return
	}
	if m, _ := req.Get("method"); m == "pick" {
		ch, ok := up.Pick(req)
		addr := ch.Addr
		if !ok {
			addr = "none"
		}
		out, _ := toy.AppendFrame(nil, toy.KindResponse, req.ID, 0, nil, []byte(addr))
		ans, _ := f.Decode(out)
		reply.Reply(ans)
		return
	}
	if m, _ := req.Get("method"); m != "both" {
		up.Forward(req, func(resp *codec.Message, st codec.Status, detail string) {
			reply.Reply(f.answer(req, resp, st, detail))
		})
		return
	}
	var mu sync.Mutex
	parts := map[string]string{}
	for _, target := range []string{"a", "b"} {
		part := *req
		part.Mutations = nil
		part.Set("target", target)
		up.Forward(&part, func(resp *codec.Message, st codec.Status, detail string) {
			mu.Lock()
			defer mu.Unlock()
			parts[target] = string(resp.Raw[len(resp.Raw)-1:]) // the server's one-letter body
			if len(parts) == 2 {
				out, _ := toy.AppendFrame(nil, toy.KindResponse, req.ID, 0, nil, []byte(parts["a"]+parts["b"]))
				m, _ := f.Decode(out)
				reply.Reply(m)
			}
		})
	}
}

func (f fanout) answer(req, resp *codec.Message, st codec.Status, detail string) *codec.Message {
	if resp != nil {
		return resp
	}
	r, _ := f.Reply(req, st, detail)
	return r
}

func TestHandlerFansOutThroughTheRouter(t *testing.T) {
	letter := func(name string) *toy.Server {
		s, err := toy.Serve("127.0.0.1:0", func(*toy.Request) *toy.Response { return &toy.Response{Body: []byte(name)} })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a, b := letter("A"), letter("B")
	lst := listener("in", "r", nil)
	lst["filter_chains"].([]obj)[0]["filters"].([]obj)[0]["typed_config"].(obj)["codec"] = "toy-fanout"
	p := start(t, []obj{lst},
		[]obj{routeConfig("r",
			route("a", match("target", "a"), obj{"cluster": "a"}),
			route("b", match("target", "b"), obj{"cluster": "b"}),
		)},
		[]obj{cluster("a", "", a.Addr()), cluster("b", "", b.Addr())})
	c := dial(t, p.Addr(t, "in"))
	r := call(t, c, map[string]string{"method": "both"})
	if r.Err() != nil || string(r.Body) != "AB" {
		t.Fatalf("the fanned-out call: %v %q, want AB", r.Err(), r.Body)
	}
	r = call(t, c, map[string]string{"method": "one", "target": "b"})
	if string(r.Body) != "B" {
		t.Fatalf("a forwarded call: %q", r.Body)
	}
	raw, err := net.Dial("tcp", p.Addr(t, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	req, _ := toy.AppendFrame(nil, toy.KindRequest, 5, 0, map[string]string{"method": "push"}, nil)
	if _, err := raw.Write(req); err != nil {
		t.Fatal(err)
	}
	fr := wire.NewReader(raw, toy.Codec{})
	for _, want := range []struct {
		id   uint64
		body string
	}{{99, "pushed"}, {5, "answer"}} {
		frame, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		m, _ := toy.Codec{}.Decode(frame)
		if m.ID != want.id || !strings.HasSuffix(string(frame), want.body) {
			t.Fatalf("got id %d %q, want id %d %q", m.ID, frame, want.id, want.body)
		}
	}
	r = call(t, c, map[string]string{"method": "one"})
	if statusOf(r) != "no_route" || !strings.Contains(string(r.Body), "no route") {
		t.Fatalf("a call no route matches: %s %q", statusOf(r), r.Body)
	}
}

// TestPickNamesTheEndpointForwardUses: under a consistent hash, Pick names
// the server Forward then sends the same request to, also when the route
// rewrites the attribute it hashes on.
func TestPickNamesTheEndpointForwardUses(t *testing.T) {
	letters := map[string]string{}
	var addrs []string
	for _, name := range []string{"A", "B", "C"} {
		s, err := toy.Serve("127.0.0.1:0", func(*toy.Request) *toy.Response { return &toy.Response{Body: []byte(name)} })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		letters[s.Addr()] = name
		addrs = append(addrs, s.Addr())
	}
	lst := listener("in", "r", nil)
	lst["filter_chains"].([]obj)[0]["filters"].([]obj)[0]["typed_config"].(obj)["codec"] = "toy-fanout"
	hashOnUser := []obj{{"attributes": []string{"user"}}}
	p := start(t, []obj{lst},
		[]obj{routeConfig("r",
			route("rewritten", match("group", "one"), obj{"cluster": "ring", "hash_policy": hashOnUser,
				"request_mutation": []obj{{"key": "user", "value": "everyone"}}}),
			route("all", nil, obj{"cluster": "ring", "hash_policy": hashOnUser}))},
		[]obj{cluster("ring", "RING_HASH", addrs...)})
	c := dial(t, p.Addr(t, "in"))
	for _, group := range []string{"many", "one"} {
		seen := map[string]bool{}
		for i := range 40 {
			h := map[string]string{"user": "user" + strconv.Itoa(i), "group": group}
			h["method"] = "pick"
			picked := string(call(t, c, h).Body)
			h["method"] = "one"
			got := string(call(t, c, h).Body)
			if letters[picked] != got {
				t.Fatalf("%v: Pick named %s (%q), Forward reached %q", h, picked, letters[picked], got)
			}
			seen[got] = true
		}
		if group == "many" && len(seen) < 2 {
			t.Fatalf("40 users all hashed to %v", seen)
		}
		if group == "one" && len(seen) != 1 {
			t.Fatalf("users rewritten to one all reached %v", seen)
		}
	}
}
