package sysio

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestEpollNowReportsReadyAndDoesNotWait(t *testing.T) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ev)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ev, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: 7}); err != nil {
		t.Fatal(err)
	}
	events := make([]unix.EpollEvent, 4)
	if n, err := EpollNow(ep, events); n != 0 || err != nil {
		t.Fatalf("nothing ready: EpollNow = %d, %v; want 0, nil", n, err)
	}
	if _, err := unix.Write(ev, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if n, err := EpollNow(ep, events); n != 1 || err != nil || events[0].Fd != 7 {
		t.Fatalf("one ready: EpollNow = %d, %v (fd %d); want 1, nil, 7", n, err, events[0].Fd)
	}
	if _, err := EpollNow(-1, events); err != unix.EBADF {
		t.Fatalf("EpollNow on fd -1: %v, want EBADF", err)
	}
}
