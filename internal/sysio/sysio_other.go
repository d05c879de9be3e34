//go:build !linux

package sysio

import "syscall"

// Read reads fd, which must be non-blocking, into p.
func Read(fd int, p []byte) (int, error) { return syscall.Read(fd, p) }

// Write writes p to fd, which must be non-blocking.
func Write(fd int, p []byte) (int, error) { return syscall.Write(fd, p) }
