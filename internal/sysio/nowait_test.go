package sysio

import (
	"io"
	"net"
	"syscall"
	"testing"
)

// TestNoWaitTakesWhatTheSocketTakes: a write larger than the socket's
// buffers returns at once with part of it written and EAGAIN; the bytes it
// reports written are the ones that arrive.
func TestNoWaitTakesWhatTheSocketTakes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	rc, err := client.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var w NoWait
	big := make([]byte, 64<<20)
	n, err := w.Write(rc, big)
	if err != syscall.EAGAIN || n <= 0 || n >= len(big) {
		t.Fatalf("Write of %d bytes to a peer that does not read: %d, %v; want part of it and EAGAIN", len(big), n, err)
	}
	client.Close()
	got, err := io.Copy(io.Discard, server)
	if err != nil || got != int64(n) {
		t.Fatalf("the peer read %d bytes (%v); Write reported %d", got, err, n)
	}
	if _, err := w.Write(rc, []byte("x")); err == nil {
		t.Fatal("Write to a closed connection succeeded")
	}
}
