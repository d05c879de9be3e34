package sysio

import (
	"syscall"
	"unsafe"
)

// Read reads fd, which must be non-blocking, into p.
func Read(fd int, p []byte) (int, error) {
	if len(p) == 0 || len(p) > rawLimit {
		return syscall.Read(fd, p)
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// Write writes p to fd, which must be non-blocking.
func Write(fd int, p []byte) (int, error) {
	if len(p) == 0 || len(p) > rawLimit {
		return syscall.Write(fd, p)
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
