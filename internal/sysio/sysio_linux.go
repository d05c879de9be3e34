package sysio

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read reads fd, which must be non-blocking, into p.
func Read(fd int, p []byte) (int, error) {
	if len(p) == 0 || len(p) > rawLimit {
		return syscall.Read(fd, p)
	}
	return raw(syscall.SYS_READ, fd, p)
}

// Write writes p to fd, which must be non-blocking.
func Write(fd int, p []byte) (int, error) {
	if len(p) == 0 || len(p) > rawLimit {
		return syscall.Write(fd, p)
	}
	return raw(syscall.SYS_WRITE, fd, p)
}

// raw makes read or write (trap) on fd and p, returning -1 on error as
// syscall.Read and syscall.Write do.
func raw(trap uintptr, fd int, p []byte) (int, error) {
	n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// EpollNow collects the ready events of epoll descriptor epfd without
// waiting (a timeout of 0 cannot block).
func EpollNow(epfd int, events []unix.EpollEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
