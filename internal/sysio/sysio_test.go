package sysio

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
)

// socketPair is two connected non-blocking stream sockets.
func socketPair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if err := syscall.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
	}
	return fds[0], fds[1]
}

func TestSmallAndLargeTransfers(t *testing.T) {
	a, b := socketPair(t)
	for _, size := range []int{1, 100, rawLimit, rawLimit + 1} {
		out := bytes.Repeat([]byte{byte(size)}, size)
		n, err := Write(a, out)
		if err != nil || n <= 0 {
			t.Fatalf("Write of %d bytes = %d, %v", size, n, err)
		}
		in := make([]byte, size)
		got := 0
		for got < n {
			k, err := Read(b, in[got:n])
			if err != nil {
				t.Fatalf("Read after a write of %d bytes: %v", n, err)
			}
			got += k
		}
		if !bytes.Equal(in[:n], out[:n]) {
			t.Fatalf("%d bytes came back changed", size)
		}
	}
}

func TestErrorsAreTheSystemsErrno(t *testing.T) {
	_, b := socketPair(t)
	n, err := Read(b, make([]byte, 10))
	if !errors.Is(err, syscall.EAGAIN) || n != -1 {
		t.Fatalf("Read of an empty socket = %d, %v; want -1, EAGAIN", n, err)
	}
	if _, err := Write(-1, []byte("x")); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("Write to fd -1: %v, want EBADF", err)
	}
}
