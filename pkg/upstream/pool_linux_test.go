//go:build linux

package upstream

import (
	"bufio"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// answerLines answers every line on every connection it accepts.
func answerLines(t *testing.T) string {
	return testutil.Accept(t, func(nc net.Conn) {
		rd := bufio.NewReader(nc)
		for {
			if _, err := rd.ReadString('\n'); err != nil {
				return
			}
			if _, err := nc.Write([]byte("ok\n")); err != nil {
				return
			}
		}
	})
}

// client is a downstream connection served by a loop; each line it reads
// goes upstream through pool, and the batch its answer came back in is sent
// on answered.
type client struct {
	pool     *Pool
	cl       *Cluster
	sentFrom chan *netloop.Round
	answered chan *netloop.Round
}

func (c *client) Frame(_ []byte, err error, b *netloop.Round) bool {
	if err != nil {
		return false
	}
	c.sentFrom <- b
	if _, _, err := c.pool.Send(c.cl, &codec.Message{Kind: codec.KindRequest}, c, b); err != nil {
		c.answered <- nil
	}
	return true
}

func (c *client) Stopped() {}

// Done sends the answer's batch, or nil when the request failed.
func (c *client) Done(_ *codec.Message, err error, b *netloop.Round) {
	if err != nil {
		b = nil
	}
	c.answered <- b
}

// TestPoolAnswersOnTheSendingLoop: requests from clients on two event
// loops go over connections those loops read, so each answer comes back on
// the loop of the client that asked, as Envoy's per-worker pools do. With
// the loops off, clients read on goroutines of their own share one
// connection instead of opening one each.
func TestPoolAnswersOnTheSendingLoop(t *testing.T) {
	runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0))) // before the loops start: one per P
	loopsOff := os.Getenv("ROSETTA_EVENT_LOOPS") == "off"
	newCodec := func(codec.Options, codec.Peer) (codec.Codec, error) { return testutil.Lines{}, nil }
	pool := &Pool{ep: newEndpoint(answerLines(t)), proto: codec.Protocol{Name: "lines", Ordering: codec.InOrder, New: newCodec}}
	cl := &Cluster{MaxConnections: 8, MaxPending: 8, ConnectTimeout: 5 * time.Second}
	t.Cleanup(pool.closeAll)
	var loops []*netloop.Round
	for i := range 2 {
		nc, peer := testutil.TCPPair(t)
		c := &client{pool: pool, cl: cl, sentFrom: make(chan *netloop.Round, 1), answered: make(chan *netloop.Round, 1)}
		w := wire.NewWriter(nc, wire.Options{Timeout: time.Second, Max: 1 << 20})
		if !netloop.Serve(nc, testutil.Lines{}, w, c, netloop.Limits{}) {
			if !loopsOff {
				t.Fatal("no event loop took the connection")
			}
			go readFrames(nc, c)
		}
		if _, err := peer.Write([]byte("get\n")); err != nil {
			t.Fatal(err)
		}
		sent, answered := recv(t, c.sentFrom), recv(t, c.answered)
		if answered == nil {
			t.Fatalf("client %d: the request failed", i)
		}
		if !loopsOff && answered != sent {
			t.Fatalf("client %d: the answer came back on another loop than the request's", i)
		}
		loops = append(loops, sent)
	}
	if loops[0] == loops[1] {
		t.Fatal("both clients are on one loop: the test proves nothing")
	}
	want := 2
	if loopsOff {
		want = 1
	}
	if n := pool.Conns(); n != want {
		t.Fatalf("the pool holds %d connections, want %d", n, want)
	}
}

// readFrames reads nc on a goroutine with a batch of its own, as the proxy
// does without event loops.
func readFrames(nc net.Conn, h netloop.Handler) {
	fr := wire.NewReader(nc, testutil.Lines{})
	b := &netloop.Round{}
	fr.BeforeRead = b.Flush
	for {
		frame, err := fr.Next()
		if err == nil {
			b.Open()
		}
		if !h.Frame(frame, err, b) {
			return
		}
	}
}

func recv(t *testing.T, ch chan *netloop.Round) *netloop.Round {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
		return nil
	}
}
