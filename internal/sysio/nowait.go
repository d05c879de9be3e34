package sysio

import "syscall"

// NoWait writes to a non-blocking socket through its RawConn what the
// kernel takes now, never waiting for the peer (EAGAIN says the rest must
// wait). Its function for RawConn.Write is made once, so a write
// allocates nothing. It is not safe for concurrent use: its owner's write
// lock covers it.
type NoWait struct {
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// Write writes p, or what of it the socket takes: the bytes written, and
// the RawConn's error, or else the last system call's (syscall.EAGAIN when
// the socket took less than p).
func (w *NoWait) Write(rc syscall.RawConn, p []byte) (int, error) {
	if w.fn == nil {
		w.fn = w.writeFD
	}
	w.b, w.n, w.err = p, 0, nil
	cerr := rc.Write(w.fn)
	n, err := w.n, w.err
	w.b, w.err = nil, nil
	if cerr != nil {
		return n, cerr
	}
	return n, err
}

func (w *NoWait) writeFD(fd uintptr) bool {
	for w.n < len(w.b) {
		k, err := Write(int(fd), w.b[w.n:])
		if k > 0 {
			w.n += k
		}
		w.err = err
		if err != nil && err != syscall.EINTR {
			break
		}
	}
	return true // never wait here
}
