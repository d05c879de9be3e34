//go:build darwin || freebsd || netbsd || openbsd

package controller

import (
	"os"
	"syscall"
)

// inodeAndChange is st's inode and change time in nanoseconds.
func inodeAndChange(st os.FileInfo) (uint64, int64) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(sys.Ino), sys.Ctimespec.Nano()
	}
	return 0, 0
}
