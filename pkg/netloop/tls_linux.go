//go:build linux

package netloop

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/sysio"
)

// TLSServer is tls.Server over a socket a loop can read once the handshake
// is done: Serve and ServeOn take the *tls.Conn it returns, and read it on
// a loop as they read plaintext sockets.
func TLSServer(nc net.Conn, config *tls.Config) *tls.Conn {
	if s, ok := tlsSocketOf(nc); ok {
		return tls.Server(s, config)
	}
	return tls.Server(nc, config)
}

// TLSClient is tls.Client over a socket a loop can read, as TLSServer is.
func TLSClient(nc net.Conn, config *tls.Config) *tls.Conn {
	if s, ok := tlsSocketOf(nc); ok {
		return tls.Client(s, config)
	}
	return tls.Client(nc, config)
}

func tlsSocketOf(nc net.Conn) (*tlsSocket, bool) {
	if off.Load() {
		return nil, false
	}
	if _, ok := nc.(syscall.Conn); !ok {
		return nil, false
	}
	return &tlsSocket{Conn: nc}, true
}

var errTLSWriteBacklog = errors.New("netloop: too much queued for a TLS peer that does not read")

// tlsSocket is the connection under a *tls.Conn that a loop reads. Until
// the loop takes it (the handshake, on the caller's goroutine) it is the
// socket. Then its Read gives crypto/tls what the loop read from the socket
// once per readiness, and errWouldBlock, a temporary net.Error, when that is
// used up: crypto/tls keeps a record it has read in part and does not keep
// a temporary error, so the next Read goes on where this one stopped.
//
// Its Write, once the loop reads it, never waits: what the peer's window
// does not take waits in pending for a goroutine that writes it out, so a
// write on the loop (a round's flush) never holds up the loop's other
// connections. crypto/tls takes each record as written; an error of the
// background write comes back with the next Write, and shuts the socket's
// reading down so that the loop, reading an end, tells the handler.
type tlsSocket struct {
	net.Conn
	// src, once set by the loop, is the socket's reader on the loop; only
	// the loop reads then.
	src        *onceReader
	buf        []byte
	start, end int

	wmu sync.Mutex
	// rc, once set by the loop, makes writes not wait.
	rc       syscall.RawConn
	pending  []byte
	spare    []byte
	draining bool
	werr     error
	try      sysio.NoWait
}

func (s *tlsSocket) Read(p []byte) (int, error) {
	if s.src == nil {
		return s.Conn.Read(p)
	}
	if s.start == s.end {
		if s.buf == nil {
			s.buf = make([]byte, tlsChunk)
		}
		n, err := s.src.Read(s.buf)
		if err != nil {
			return 0, err
		}
		s.start, s.end = 0, n
	}
	n := copy(p, s.buf[s.start:s.end])
	s.start += n
	return n, nil
}

// loopTakes switches s to the loop's reading and not-waiting writes; src
// nil switches it back (the loop could not take it).
func (s *tlsSocket) loopTakes(src *onceReader, rc syscall.RawConn) {
	s.src = src
	s.wmu.Lock()
	s.rc = rc
	// Writes from now on set no deadline: clear one a write before the
	// switch set, which would fail the not-waiting writes once it passed.
	_ = s.Conn.SetWriteDeadline(time.Time{})
	s.wmu.Unlock()
}

func (s *tlsSocket) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	switch {
	case s.rc == nil:
		return s.Conn.Write(p)
	case s.werr != nil:
		return 0, s.werr
	case s.draining:
		if len(s.pending)+len(p) > tlsWriteBacklog {
			return 0, errTLSWriteBacklog
		}
		s.pending = append(s.pending, p...)
		return len(p), nil
	}
	n, err := s.try.Write(s.rc, p)
	switch {
	case err == syscall.EAGAIN:
		s.pending = append(s.pending[:0], p[n:]...)
		s.draining = true
		go s.drain()
		return len(p), nil
	case err != nil:
		return n, err
	}
	return n, nil
}

// wouldWait is the wire.Reading.WouldWait of the *tls.Conn over s: a
// write of more than tlsLoopWrite, or any while earlier records still wait
// for the peer, would cost the loop more than a small answer's encryption.
func (s *tlsSocket) wouldWait(n int) bool {
	if n > tlsLoopWrite {
		return true
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.draining
}

// SetWriteDeadline leaves writes that wait to drain's own deadline once
// the loop reads s; the lock keeps a deadline set just before the switch
// from staying behind it (loopTakes clears it).
func (s *tlsSocket) SetWriteDeadline(t time.Time) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.rc != nil {
		return nil
	}
	return s.Conn.SetWriteDeadline(t)
}

// SetDeadline is SetReadDeadline, and SetWriteDeadline until the loop
// reads s.
func (s *tlsSocket) SetDeadline(t time.Time) error {
	if err := s.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// drain writes pending out, waiting for the peer.
func (s *tlsSocket) drain() {
	s.wmu.Lock()
	for len(s.pending) > 0 {
		out := s.pending
		s.pending = s.spare[:0]
		s.wmu.Unlock()
		_ = s.Conn.SetWriteDeadline(time.Now().Add(tlsWriteTimeout))
		_, err := s.Conn.Write(out)
		// A deadline left behind would fail the next not-waiting write
		// once it passed.
		_ = s.Conn.SetWriteDeadline(time.Time{})
		s.wmu.Lock()
		s.spare = out[:0]
		if err != nil {
			s.werr = err
			s.pending = nil
			if tc, ok := s.Conn.(interface{ CloseRead() error }); ok {
				_ = tc.CloseRead()
			}
		}
	}
	s.draining = false
	s.wmu.Unlock()
}

// tlsReader reads plaintext from a *tls.Conn on a loop. crypto/tls may
// return bytes with an error (a close_notify read after the data, or
// errWouldBlock when it looked for one); the bytes come first, the error
// (unless it is errWouldBlock) with the next Read.
type tlsReader struct {
	tc  *tls.Conn
	err error
}

func (r *tlsReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.tc.Read(p)
	if n > 0 && err != nil {
		if !errors.Is(err, errWouldBlock) {
			r.err = err
		}
		return n, nil
	}
	return n, err
}
