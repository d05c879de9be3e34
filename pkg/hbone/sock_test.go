package hbone

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair is a connected pair of loopback TCP connections.
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

// Writes to a peer that reads nothing return at once until the backlog
// is full; then they wait, and the write timeout fails the socket.
func TestSockWritesDoNotWaitForThePeer(t *testing.T) {
	_, nc := tcpPair(t)
	// Long enough that a busy machine fills the backlog before the
	// background write gives up; short enough to keep the test quick.
	s := newSock(nc, time.Second)
	chunk := make([]byte, 64<<10)
	start := time.Now()
	for s.draining.Load() == false {
		if _, err := s.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the socket never filled")
		}
	}
	for queued := 0; queued+len(chunk) <= maxSocketBacklog; queued += len(chunk) {
		t0 := time.Now()
		if _, err := s.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Fatalf("a write waited %v with the backlog not full", d)
		}
	}
	var err error
	for i := 0; err == nil && i < 100; i++ {
		_, err = s.Write(chunk)
	}
	if err == nil {
		t.Fatal("writes to a peer that reads nothing go on succeeding")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the write timeout took %v", d)
	}
}

// closeWrite ends the stream after what is queued.
func TestSockCloseWriteAfterTheBacklog(t *testing.T) {
	peer, nc := tcpPair(t)
	s := newSock(nc, 5*time.Second)
	data := pattern(8 << 20)
	read := make(chan []byte, 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // the socket fills first
		got, _ := io.ReadAll(peer)
		read <- got
	}()
	for p := data; len(p) > 0; p = p[64<<10:] {
		if _, err := s.Write(p[:64<<10]); err != nil {
			t.Fatal(err)
		}
	}
	s.closeWrite()
	if got := <-read; !bytes.Equal(got, data) {
		t.Fatalf("the peer read %d bytes before the end; want all %d", len(got), len(data))
	}
}
