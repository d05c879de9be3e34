package wire

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// queue appends s to w's queue while b holds its writes.
func queue(w *Writer, b *Batch, s string) {
	w.Lock()
	w.Buf = append(w.Buf, s...)
	w.HoldLocked(b)
	w.Unlock()
}

// arrives reports whether want reaches c within d.
func arrives(c net.Conn, want string, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	got := make([]byte, len(want))
	_, err := io.ReadFull(c, got)
	return err == nil && string(got) == want
}

func TestFlushEagerKeepsLazyWritersHeld(t *testing.T) {
	eagerConn, eagerPeer := tcpPair(t)
	lazyConn, lazyPeer := tcpPair(t)
	eager := NewWriter(eagerConn, time.Second, 1<<20)
	lazy := NewWriter(lazyConn, time.Second, 1<<20)
	lazy.Lazy = true
	var b Batch
	b.Open()
	queue(eager, &b, "answer")
	queue(lazy, &b, "request")
	b.FlushEager()
	if !arrives(eagerPeer, "answer", 5*time.Second) {
		t.Fatal("FlushEager did not write the eager writer's queue")
	}
	if arrives(lazyPeer, "r", 100*time.Millisecond) {
		t.Fatal("FlushEager wrote a lazy writer's queue")
	}
	queue(lazy, &b, "s") // the lazy writer is still held: more joins its write
	b.Flush()
	if !arrives(lazyPeer, "requests", 5*time.Second) {
		t.Fatal("Flush did not write the lazy writer's queue")
	}
}

func TestCloseCallsOnCloseOnce(t *testing.T) {
	c, _ := tcpPair(t)
	w := NewWriter(c, time.Second, 1<<20)
	calls := 0
	w.OnClose = func() { calls++ }
	w.Close()
	w.Close()
	if calls != 1 {
		t.Fatalf("OnClose ran %d times, want 1", calls)
	}
}
