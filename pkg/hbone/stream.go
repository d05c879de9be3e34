package hbone

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Stream is one CONNECT stream seen as a connection: Read returns what the
// caller sends (the request body), Write sends to it (the response body,
// flushed as DATA frames), Close ends the stream once what was written has
// gone out. Deadlines behave as a socket's do: one that passes fails the
// waits it bounds and leaves the stream usable once a new one is set.
//
// A Stream is not a socket (it has no file descriptor), so it is read by a
// goroutine of its own, never by an event loop. Besides the HTTP/2 handler
// goroutine, which sends what is written, it keeps one goroutine that
// reads the request body: an HTTP/2 stream's own deadlines end it, which a
// connection idle between requests must survive.
type Stream struct {
	dest   netip.AddrPort
	local  net.Addr
	remote net.Addr
	body   io.ReadCloser
	rw     http.ResponseWriter
	rc     *http.ResponseController
	// ctx is the request's: it ends when the caller resets the stream or
	// the HTTP/2 connection goes away.
	ctx context.Context

	closeOnce sync.Once
	closed    chan struct{}

	// Reading: readBody reads the body into a chunk, hands it over on in
	// and waits on taken until the reader has copied all of it; ended is
	// closed when the body ends, with rerr saying how.
	in      chan []byte
	taken   chan struct{}
	ended   chan struct{}
	rerr    error
	pending []byte // the reader's rest of the chunk it holds
	rdl     *deadline

	// Writing: Write queues into out and wakes sendLoop, which sends it.
	mu    sync.Mutex
	out   []byte
	spare []byte
	werr  error // why sending failed; nil while it works
	wake  chan struct{}
	room  chan struct{}
	wdl   *deadline
	// stall resets the stream when one send waits longer than
	// Limits.WriteTimeout (a caller that stopped reading); stallMu keeps
	// it from touching the response once the handler has returned.
	stallTimeout time.Duration
	stall        *time.Timer
	stallMu      sync.Mutex
	finished     bool
}

var _ net.Conn = (*Stream)(nil)

func newStream(w http.ResponseWriter, r *http.Request, dest netip.AddrPort, remote net.Addr, stallTimeout time.Duration) *Stream {
	s := &Stream{
		dest:         dest,
		local:        net.TCPAddrFromAddrPort(dest),
		remote:       remote,
		body:         r.Body,
		rw:           w,
		rc:           http.NewResponseController(w),
		ctx:          r.Context(),
		closed:       make(chan struct{}),
		in:           make(chan []byte),
		taken:        make(chan struct{}, 1),
		ended:        make(chan struct{}),
		rdl:          newDeadline(),
		wake:         make(chan struct{}, 1),
		room:         make(chan struct{}, 1),
		wdl:          newDeadline(),
		stallTimeout: stallTimeout,
	}
	if stallTimeout > 0 {
		s.stall = time.AfterFunc(stallTimeout, s.resetStalled)
		s.stall.Stop() // armed by each send
	}
	return s
}

// Destination is the CONNECT's target: the address the caller dialled.
func (s *Stream) Destination() netip.AddrPort { return s.dest }

// LocalAddr is the destination the caller dialled, not the HBONE port.
func (s *Stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr is the caller's end of the HTTP/2 connection.
func (s *Stream) RemoteAddr() net.Addr { return s.remote }

// Read implements net.Conn.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(s.pending) == 0 {
		select {
		case <-s.closed:
			return 0, net.ErrClosed
		default:
		}
		select {
		case s.pending = <-s.in:
		case <-s.ended:
			return 0, s.rerr
		case <-s.closed:
			return 0, net.ErrClosed
		case <-s.rdl.done():
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	if len(s.pending) == 0 {
		s.taken <- struct{}{} // never blocks: readBody waits for it
	}
	return n, nil
}

// readBody moves the request body to Read, a chunk at a time, until the
// body ends (io.EOF when the caller closed its side; another error when it
// reset the stream) or the stream is closed.
func (s *Stream) readBody() {
	buf := make([]byte, readChunk)
	for {
		n, err := s.body.Read(buf)
		if n > 0 {
			select {
			case s.in <- buf[:n]:
			case <-s.closed:
				return
			}
			select {
			case <-s.taken:
			case <-s.closed:
				return
			}
		}
		if err != nil {
			s.rerr = err
			close(s.ended)
			return
		}
	}
}

// Write implements net.Conn: p is queued for sendLoop, and Write waits
// only while more than maxQueued bytes are queued (the caller reads slower
// than the proxy answers), as a socket's write waits for a full buffer.
func (s *Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	for {
		select {
		case <-s.closed:
			s.mu.Unlock()
			return 0, net.ErrClosed
		default:
		}
		if s.werr != nil {
			err := s.werr
			s.mu.Unlock()
			return 0, err
		}
		if len(s.out) < maxQueued {
			break
		}
		s.mu.Unlock()
		select {
		case <-s.room:
		case <-s.closed:
		case <-s.wdl.done():
			return 0, os.ErrDeadlineExceeded
		}
		s.mu.Lock()
	}
	s.out = append(s.out, p...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// WouldWait reports whether a write now, of any size, would wait for the
// caller to read: wire.Writer then writes from a goroutine of its own, so
// the goroutine that answers (an event loop's, for an upstream connection)
// never waits for a slow caller.
func (s *Stream) WouldWait(int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.out) >= maxQueued
}

// sendLoop sends what Write queues until the stream is closed and all of
// it is out, sending fails, or the caller goes away. It runs on the
// handler's goroutine: when it returns, the handler returns and the server
// ends the stream.
func (s *Stream) sendLoop() {
	for {
		s.mu.Lock()
		buf := s.out
		if len(buf) > 0 {
			s.out, s.spare = s.spare, nil
		}
		s.mu.Unlock()
		if len(buf) == 0 {
			select {
			case <-s.wake:
				continue
			case <-s.closed:
				s.mu.Lock()
				left := len(s.out)
				s.mu.Unlock()
				if left == 0 {
					return
				}
				continue
			case <-s.ctx.Done():
				s.fail(s.ctx.Err())
				return
			}
		}
		select {
		case s.room <- struct{}{}:
		default:
		}
		if err := s.send(buf); err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		s.spare = buf[:0]
		s.mu.Unlock()
	}
}

func (s *Stream) send(b []byte) error {
	if s.stall != nil {
		s.stall.Reset(s.stallTimeout)
		defer s.stall.Stop()
	}
	if _, err := s.rw.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// resetStalled resets a stream whose caller took nothing for stallTimeout:
// a write deadline already passed makes the HTTP/2 server reset the stream,
// which ends the send that waits.
func (s *Stream) resetStalled() {
	s.stallMu.Lock()
	defer s.stallMu.Unlock()
	if !s.finished {
		_ = s.rc.SetWriteDeadline(time.Now().Add(-time.Second))
	}
}

// fail records why sending stopped; writers waiting for room see it.
func (s *Stream) fail(err error) {
	s.mu.Lock()
	if s.werr == nil {
		s.werr = err
	}
	s.mu.Unlock()
	select {
	case s.room <- struct{}{}:
	default:
	}
}

// finish runs when the handler is about to return: the response writer is
// not to be touched after it.
func (s *Stream) finish() {
	s.stallMu.Lock()
	s.finished = true
	s.stallMu.Unlock()
	if s.stall != nil {
		s.stall.Stop()
	}
	s.Close()
}

// Close implements net.Conn: reading stops at once; what was written
// still goes out, then the stream ends.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.body.Close() // ends readBody's wait for the caller
		s.rdl.stop()
		s.wdl.stop()
	})
	return nil
}

// SetDeadline implements net.Conn.
func (s *Stream) SetDeadline(t time.Time) error {
	s.rdl.set(t)
	s.wdl.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.rdl.set(t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.wdl.set(t)
	return nil
}
