package hbone

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/sysio"
)

// sock is the socket under an HTTP/2 connection's *tls.Conn. Its Write
// never waits for the peer: it writes what the socket takes at once, and
// what it does not take waits in pending for a goroutine that writes it
// out within the write timeout; only a write that finds maxSocketBacklog
// queued waits, for that goroutine to make room. So a Stream's Write,
// which encrypts and writes on the caller's goroutine (an event loop's,
// for an answer), holds that goroutine for the encryption only. An error
// of the background write comes back with the next Write and closes the
// socket, which ends the connection's frame reader.
//
// A connection that is no socket (a net.Pipe in tests) is written to
// directly.
type sock struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	room     sync.Cond       // drain took some of pending, or failed
	rc       syscall.RawConn // nil: write nc directly
	pending  []byte
	spare    []byte
	draining atomic.Bool
	err      error
	try      sysio.NoWait

	rd     readState
	readFn func(fd uintptr) bool
	// beforeRead, when set, runs before every read of the socket: the
	// frame reader's round is flushed there (conn.round). afterRead runs
	// after every read that got bytes: the round is stamped with the
	// time, which its handlers then read instead of the clock.
	beforeRead, afterRead func()
}

func newSock(nc net.Conn, timeout time.Duration) *sock {
	s := &sock{Conn: nc, timeout: timeout}
	s.room.L = &s.mu
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
			s.readFn = s.readFD
		}
	}
	return s
}

// Read implements net.Conn, for crypto/tls: on a socket it reads with a
// raw system call (internal/sysio), waiting in the netpoller when there is
// nothing to read, as net.Conn's Read does, less the scheduler's work
// around each call.
func (s *sock) Read(p []byte) (int, error) {
	if s.beforeRead != nil {
		s.beforeRead()
	}
	if s.rc == nil || len(p) == 0 {
		return s.Conn.Read(p)
	}
	s.rd = readState{b: p}
	if err := s.rc.Read(s.readFn); err != nil {
		s.rd = readState{}
		return 0, err
	}
	n, err := s.rd.n, s.rd.err
	s.rd = readState{}
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	if s.afterRead != nil {
		s.afterRead()
	}
	return n, nil
}

// readState is one Read's buffer and outcome, through a function made
// once per socket; only the connection's frame reader reads.
type readState struct {
	b   []byte
	n   int
	err error
}

func (s *sock) readFD(fd uintptr) bool {
	for {
		n, err := sysio.Read(int(fd), s.rd.b)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for the socket to be readable
		case nil:
			s.rd.n = n
		default:
			s.rd.err = err
		}
		return true
	}
}

// Write implements net.Conn, for crypto/tls: it takes all of p or fails.
func (s *sock) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return 0, s.err
	case s.rc == nil:
		if s.timeout > 0 {
			_ = s.Conn.SetWriteDeadline(time.Now().Add(s.timeout))
		}
		n, err := s.Conn.Write(p)
		if err != nil {
			s.err = err
		}
		return n, err
	case s.draining.Load():
		for s.err == nil && len(s.pending) > 0 && len(s.pending)+len(p) > maxSocketBacklog {
			s.room.Wait()
		}
		if s.err != nil {
			return 0, s.err
		}
		if s.draining.Load() {
			s.pending = append(s.pending, p...)
			return len(p), nil
		}
	}
	n, err := s.try.Write(s.rc, p)
	switch {
	case err == syscall.EAGAIN:
		s.pending = append(s.pending[:0], p[n:]...)
		s.draining.Store(true)
		go s.drain()
		return len(p), nil
	case err != nil:
		s.failLocked(err)
		return n, err
	}
	return n, nil
}

// drain writes pending out, waiting for the peer at most timeout each
// time.
func (s *sock) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.pending) > 0 && s.err == nil {
		out := s.pending
		s.pending = s.spare[:0]
		s.room.Broadcast() // pending has room again while out is written
		s.mu.Unlock()
		if s.timeout > 0 {
			_ = s.Conn.SetWriteDeadline(time.Now().Add(s.timeout))
		}
		_, err := s.Conn.Write(out)
		// A deadline left behind would fail the next not-waiting write once
		// it passed.
		_ = s.Conn.SetWriteDeadline(time.Time{})
		s.mu.Lock()
		s.spare = out[:0]
		if err != nil {
			s.failLocked(err)
		}
		s.room.Broadcast()
	}
	s.draining.Store(false)
	s.room.Broadcast()
}

// failLocked records the first write error and closes the socket, which
// ends the connection's reading too.
func (s *sock) failLocked(err error) {
	if s.err == nil {
		s.err = err
	}
	s.pending = nil
	s.Conn.Close()
}

// SetWriteDeadline does nothing: the socket's writes have their own
// timeout. crypto/tls sets one around its close_notify, which would
// otherwise fail a background write.
func (s *sock) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only, as SetWriteDeadline explains.
func (s *sock) SetDeadline(t time.Time) error { return s.Conn.SetReadDeadline(t) }

// closeWrite sends the peer the end of the stream (TCP FIN) once what is
// queued has gone out.
func (s *sock) closeWrite() {
	s.mu.Lock()
	for s.err == nil && s.draining.Load() {
		s.room.Wait() // drain's writes time out, so this ends
	}
	failed := s.err != nil
	s.mu.Unlock()
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok && !failed {
		_ = cw.CloseWrite()
		return
	}
	s.Conn.Close()
}
