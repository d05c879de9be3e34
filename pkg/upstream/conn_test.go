package upstream

import (
	"bufio"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

type noRequest struct{}

func (noRequest) Done(*codec.Message, error, *netloop.Round) {}

// TestInOrderConnAwaitsWrittenRequests: an in-order connection keeps new
// requests held before its loop waits only while requests it has written
// still await answers; its held requests do not count.
func TestInOrderConnAwaitsWrittenRequests(t *testing.T) {
	nc, peer := testutil.TCPPair(t)
	newCodec := func(codec.Options, codec.Peer) (codec.Codec, error) { return testutil.Lines{}, nil }
	c, err := newConn(&Pool{proto: codec.Protocol{Name: "lines", Ordering: codec.InOrder, New: newCodec}})
	if err != nil {
		t.Fatal(err)
	}
	c.nc = nc
	c.w.SetConn(nc)
	rd := bufio.NewReader(peer)
	var b netloop.Round
	b.Reads(c.w) // as the loop that reads the connection does
	send := func(n int) {
		b.Open()
		for range n {
			if _, err := c.Send(&codec.Message{Kind: codec.KindRequest}, noRequest{}, &b); err != nil {
				t.Fatal(err)
			}
		}
	}
	expect := func(n int) {
		t.Helper()
		_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		for range n {
			if _, err := rd.ReadString('\n'); err != nil {
				t.Fatalf("a request did not go out: %v", err)
			}
		}
	}
	answer := func() { c.handle(&codec.Message{Kind: codec.KindResponse}, nil) }

	send(2)
	if held := b.FlushIdle(); held != 0 {
		t.Fatalf("nothing written yet, yet %d writers stay held", held)
	}
	expect(2)
	send(1)
	if held := b.FlushIdle(); held != 1 {
		t.Fatalf("two written requests await answers, yet %d writers stay held", held)
	}
	answer()
	answer()
	if held := b.FlushIdle(); held != 0 {
		t.Fatalf("the written requests are answered, yet %d writers stay held", held)
	}
	expect(1)
}
