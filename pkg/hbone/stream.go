package hbone

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

// Stream is one CONNECT stream seen as a connection: Read returns what the
// caller sends (DATA), Write sends to it (DATA, as the caller's windows
// allow), Close ends the stream once what was written has gone out.
// Deadlines behave as a socket's do: one that passes fails the waits it
// bounds and leaves the stream usable once a new one is set.
//
// A Stream is not a socket (it has no file descriptor), so no event loop
// reads it: the proxy has the connection's frame reader push what arrives
// to a feed (Feed, netloop.Feedable), whose frames it handles there and
// then; read with Read instead, it is read by a goroutine of the reader's
// own, which the frame reader wakes. It has no goroutine of its own: Write
// frames, encrypts and writes on the caller's goroutine.
type Stream struct {
	c      *conn
	id     uint32
	dest   netip.AddrPort
	local  net.Addr
	remote net.Addr
	source netip.Addr // Request.Source

	// Receiving, under rmu: buf[off:] is what arrived and was not read;
	// rerr is what Read returns once it is read (io.EOF after the
	// caller's END_STREAM); inflow is what the caller may still send,
	// unacked what was read and not credited back yet.
	rmu      sync.Mutex
	buf      []byte
	off      int
	rerr     error
	rclosed  bool
	inflow   int64
	unacked  int64
	readable chan struct{}
	// feed, when set, takes what arrives in place of Read.
	feed *netloop.Feed
	// remoteEnded: the caller's END_STREAM arrived.
	remoteEnded atomic.Bool

	// Sending: wlock makes one Write at a time; sendWindow (read without
	// the lock by WouldWait), writing, endSent and werr change under c.wmu.
	wlock      sync.Mutex
	sendWindow atomic.Int64
	writing    bool  // a Write is under way: it ends the stream if Close comes meanwhile
	queued     bool  // in c.waiting
	endSent    bool  // END_STREAM or RST_STREAM went out
	werr       error // why writing fails: a reset
	windowed   chan struct{}

	// localDone and remoteDone, under c.mu: each side has ended.
	localDone, remoteDone bool

	closeOnce sync.Once
	closed    chan struct{}
	rdl, wdl  *deadline
}

var _ net.Conn = (*Stream)(nil)

var (
	errPeerProtocol = errors.New("hbone: the caller broke HTTP/2's rules on the stream; it was reset")
	errStalled      = errors.New("hbone: the caller took nothing for the write timeout; the stream was reset")
)

// resetError is a stream's end by the caller's RST_STREAM.
type resetError http2.ErrCode

func (e resetError) Error() string {
	return fmt.Sprintf("hbone: the caller reset the stream (%s)", http2.ErrCode(e))
}

func newStream(c *conn, id uint32, r Request) *Stream {
	return &Stream{
		c:        c,
		id:       id,
		dest:     r.Destination,
		local:    net.TCPAddrFromAddrPort(r.Destination),
		remote:   c.peer.remote,
		source:   r.Source,
		inflow:   int64(c.lim.StreamWindow),
		readable: make(chan struct{}, 1),
		windowed: make(chan struct{}, 1),
		closed:   make(chan struct{}),
		rdl:      newDeadline(),
		wdl:      newDeadline(),
	}
}

// accept opens stream id for r, answers it 200 and hands it to serve.
// It runs on the frame reader, which alone opens streams and applies the
// peer's SETTINGS.
func (c *conn) accept(id uint32, r Request, peerEnded bool, serve func(net.Conn)) {
	s := newStream(c, id, r)
	s.sendWindow.Store(c.peerInitWindow)
	if peerEnded {
		s.remoteEnded.Store(true)
		s.rerr = io.EOF
		s.remoteDone = true
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.streams[id] = s
	c.serving++
	c.mu.Unlock()
	c.srv.Metrics.accepted.Inc()
	c.wmu.Lock()
	c.writeHeadersLocked(id, 200, false)
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		return // the connection's end ends the stream
	}
	serve(s)
}

// Destination is the CONNECT's target: the address the caller dialled.
func (s *Stream) Destination() netip.AddrPort { return s.dest }

// Source is the client the caller tunnels for, as its Forwarded header
// names it (Request.Source); invalid when it names none.
func (s *Stream) Source() netip.Addr { return s.source }

// LocalAddr is the destination the caller dialled, not the HBONE port.
func (s *Stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr is the caller's end of the HTTP/2 connection.
func (s *Stream) RemoteAddr() net.Addr { return s.remote }

// Read implements net.Conn. What it takes is credited back to the caller
// once half the stream's (or the connection's) window is.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		s.rmu.Lock()
		if s.rclosed {
			s.rmu.Unlock()
			return 0, net.ErrClosed
		}
		if s.off < len(s.buf) {
			n := copy(p, s.buf[s.off:])
			s.off += n
			if s.off == len(s.buf) {
				s.off, s.buf = 0, s.buf[:0]
			}
			inc := s.consumedLocked(int64(n))
			s.rmu.Unlock()
			s.c.credit(s, inc, int64(n))
			return n, nil
		}
		if err := s.rerr; err != nil {
			s.rmu.Unlock()
			return 0, err
		}
		s.rmu.Unlock()
		select {
		case <-s.readable:
		case <-s.closed:
			return 0, net.ErrClosed
		case <-s.rdl.done():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// consumedLocked counts n bytes of the stream's window as read and
// returns what to credit back: all that was read since the last credit,
// once it is half the window; rmu is held.
func (s *Stream) consumedLocked(n int64) int64 {
	s.unacked += n
	if s.unacked < int64(s.c.lim.StreamWindow)/2 || s.rerr != nil {
		return 0
	}
	inc := s.unacked
	s.unacked = 0
	s.inflow += inc
	return inc
}

// received takes a DATA frame's data (n bytes of the windows, padding
// included) or the caller's end of the stream; it runs on the frame
// reader.
func (s *Stream) received(data []byte, n int64, end bool) error {
	s.rmu.Lock()
	if n > s.inflow {
		s.rmu.Unlock()
		s.c.credit(nil, 0, n)
		s.c.reset(s, http2.ErrCodeFlowControl, errPeerProtocol)
		return nil
	}
	s.inflow -= n
	if f := s.feed; f != nil && !s.rclosed && s.rerr == nil {
		return s.fed(f, data, n, end)
	}
	dropped := n - int64(len(data))
	var inc int64
	if s.rclosed || s.rerr != nil {
		dropped = n
	} else {
		s.appendLocked(data)
		if dropped > 0 {
			inc = s.consumedLocked(dropped) // padding: read as it arrives
		}
	}
	if end {
		s.remoteEnded.Store(true)
		if s.rerr == nil {
			s.rerr = io.EOF
		}
	}
	s.rmu.Unlock()
	s.wakeReader()
	s.c.credit(s, inc, dropped)
	if end {
		s.c.ended(s, false, true)
	}
	return nil
}

// fed hands data to the stream's feed, which takes it all at once, so the
// windows are credited for all of it; rmu is held on entry and released.
// What the feed holds of a frame not yet whole is bounded by its own
// limits, not by the window.
func (s *Stream) fed(f *netloop.Feed, data []byte, n int64, end bool) error {
	inc := s.consumedLocked(n)
	if end {
		s.remoteEnded.Store(true)
		s.rerr = io.EOF
	}
	s.rmu.Unlock()
	if len(data) > 0 {
		f.Push(&s.c.round, data)
	}
	s.c.credit(s, inc, n)
	if end {
		f.End(&s.c.round, io.EOF)
		s.c.ended(s, false, true)
	}
	return nil
}

// Feed implements netloop.Feedable: from now on what arrives goes to f on
// the connection's frame reader. False when input already waits in the
// stream's buffer, which Read must take first.
func (s *Stream) Feed(f *netloop.Feed) bool {
	s.rmu.Lock()
	if s.feed != nil || s.off < len(s.buf) || s.rclosed {
		s.rmu.Unlock()
		return false
	}
	s.feed = f
	err := s.rerr
	s.rmu.Unlock()
	if err != nil {
		// Ended before it was fed (a CONNECT with END_STREAM): the
		// feed's handler learns it once it is serving.
		go f.End(nil, err)
	}
	return true
}

func (s *Stream) appendLocked(data []byte) {
	if len(data) == 0 {
		return
	}
	if s.off > 0 && cap(s.buf)-len(s.buf) < len(data) {
		n := copy(s.buf, s.buf[s.off:])
		s.buf, s.off = s.buf[:n], 0
	}
	s.buf = append(s.buf, data...)
}

func (s *Stream) wakeReader() {
	select {
	case s.readable <- struct{}{}:
	default:
	}
}

func (s *Stream) wakeWriter() {
	select {
	case s.windowed <- struct{}{}:
	default:
	}
}

// fail ends the stream's reading with err, once what it holds is read
// or, on a reset (drop), at once; reading that ended with the caller's
// END_STREAM ends so unless drop.
func (s *Stream) fail(err error, drop bool) {
	s.rmu.Lock()
	var dropped int64
	if drop {
		dropped = int64(len(s.buf) - s.off)
		s.buf, s.off = nil, 0
	}
	first := s.rerr == nil
	if first || drop && s.rerr == io.EOF {
		s.rerr = err
	}
	f := s.feed
	s.rmu.Unlock()
	s.wakeReader()
	s.wakeWriter()
	s.c.credit(nil, 0, dropped)
	if f != nil && first {
		f.End(nil, err)
	}
}

// resetByPeer ends the stream on the caller's RST_STREAM.
func (s *Stream) resetByPeer(code http2.ErrCode) {
	err := resetError(code)
	s.c.wmu.Lock()
	s.endSent = true
	if s.werr == nil {
		s.werr = err
	}
	s.wakeWriter()
	s.c.wmu.Unlock()
	s.fail(err, true)
	s.c.ended(s, true, true)
}

// Write implements net.Conn: p goes out as DATA frames of at most the
// caller's SETTINGS_MAX_FRAME_SIZE, written on the caller's goroutine.
// Write waits while the caller's windows are shut (the caller reads
// slower than the proxy answers), as a socket's write waits for a full
// buffer; a stream that takes nothing for Limits.WriteTimeout is reset.
func (s *Stream) Write(p []byte) (int, error) {
	s.wlock.Lock()
	defer s.wlock.Unlock()
	c := s.c
	c.wmu.Lock()
	if s.isClosed() {
		c.wmu.Unlock()
		return 0, net.ErrClosed
	}
	s.writing = true
	var stall *time.Timer
	written := 0
	var err error
	for written < len(p) {
		if err = s.werrLocked(); err != nil {
			break
		}
		n := int(min(int64(len(p)-written), writeChunk, s.sendWindow.Load(), c.sendWindow.Load()))
		if n <= 0 {
			if !s.queued {
				s.queued = true
				c.waiting = append(c.waiting, s)
			}
			c.wmu.Unlock()
			err = s.waitWindow(&stall)
			c.wmu.Lock()
			if err != nil {
				break
			}
			continue
		}
		err = c.writeDataLocked(s.id, p[written:written+n])
		s.sendWindow.Add(-int64(n))
		c.sendWindow.Add(-int64(n))
		written += n
		if err != nil {
			break
		}
		if written < len(p) {
			c.wmu.Unlock() // let the other streams' writes in
			c.wmu.Lock()
		}
	}
	if stall != nil {
		stall.Stop()
	}
	s.writing = false
	stalled := errors.Is(err, errStalled)
	end := s.isClosed() && !s.endSent && !stalled
	if end {
		c.endLocked(s)
	}
	c.wmu.Unlock()
	if end {
		c.ended(s, true, true)
	}
	if stalled {
		c.reset(s, http2.ErrCodeCancel, errStalled)
	}
	return written, err
}

func (s *Stream) werrLocked() error {
	if s.werr != nil {
		return s.werr
	}
	return s.c.werr
}

// waitWindow waits for a send window to open, at most until the write
// deadline or, with no progress, Limits.WriteTimeout (then errStalled).
func (s *Stream) waitWindow(stall **time.Timer) error {
	var stalled <-chan time.Time
	if d := s.c.lim.WriteTimeout; d > 0 {
		if *stall == nil {
			*stall = time.NewTimer(d)
		} else {
			(*stall).Reset(d)
		}
		stalled = (*stall).C
	}
	select {
	case <-s.windowed:
		return nil
	case <-s.wdl.done():
		return os.ErrDeadlineExceeded
	case <-stalled:
		return errStalled
	}
}

// writeDataLocked frames p as DATA and writes it; c.wmu is held.
func (c *conn) writeDataLocked(id uint32, p []byte) error {
	for len(p) > 0 {
		k := min(len(p), c.peerMaxFrame)
		_ = c.wfr.WriteData(id, false, p[:k])
		p = p[k:]
	}
	return c.flushLocked()
}

// endLocked ends the server's side of s: END_STREAM, and RST_STREAM
// NO_ERROR when the caller's side is still open, since nothing reads it
// any more (RFC 9113 8.1); c.wmu is held.
func (c *conn) endLocked(s *Stream) {
	s.endSent = true
	_ = c.wfr.WriteData(s.id, true, nil)
	if !s.remoteEnded.Load() {
		_ = c.wfr.WriteRSTStream(s.id, http2.ErrCodeNo)
	}
	_ = c.flushLocked()
}

// WouldWait reports whether a write of n bytes now would hold up the
// caller: wire.Writer then writes from a goroutine of its own, so the
// goroutine that answers (an event loop's, for an upstream connection)
// never waits for a slow caller, nor encrypts a large answer.
func (s *Stream) WouldWait(n int) bool {
	if n > maxInlineWrite || s.c.sock != nil && s.c.sock.draining.Load() {
		return true
	}
	return int64(n) > min(s.sendWindow.Load(), s.c.sendWindow.Load())
}

func (s *Stream) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// Close implements net.Conn: reading stops at once; what was written has
// gone out (or goes out, when a Write is under way), then the stream ends.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.rdl.stop()
		s.wdl.stop()
		s.rmu.Lock()
		dropped := int64(len(s.buf) - s.off)
		s.buf, s.off, s.rclosed = nil, 0, true
		s.rmu.Unlock()
		c := s.c
		c.mu.Lock()
		c.serving--
		c.mu.Unlock()
		c.credit(nil, 0, dropped)
		c.wmu.Lock()
		end := !s.writing && !s.endSent
		if end {
			c.endLocked(s)
		}
		c.wmu.Unlock()
		if end {
			c.ended(s, true, true)
		}
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
