package hbone

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

// conn is one HTTP/2 connection: a CONNECT-only server side of RFC 9113.
// One goroutine, the frame reader (serve), reads its frames and does what
// they ask on the spot: it hands a stream's DATA to the stream's feed (the
// proxy's frame splitter and handler, netloop.Feed), answers SETTINGS and
// PING, opens streams and answers their CONNECT. The writes the feeds'
// handlers make (requests upstream, local answers) wait in the frame
// reader's round until it reads the socket again, so the requests of
// several streams read together leave in one write. Nothing else runs per
// connection: a stream's writer frames and encrypts what it writes on its
// own goroutine under wmu. So a request costs no hand-off between
// goroutines. A stream nobody feeds is read with Read: its DATA waits in
// its buffer, which wakes its reader.
type conn struct {
	srv   *Server
	lim   Limits
	nc    net.Conn // the TCP connection, closed to end everything
	rw    net.Conn // what frames go over: the *tls.Conn over sock
	sock  *sock    // nil when rw is no socket's (tests)
	peer  peer
	start time.Time
	// lastRead is when the last frame came, as time since start.
	lastRead atomic.Int64

	// The frame reader's own.
	fr             *http2.Framer
	rd             errReader
	peerInitWindow int64 // SETTINGS_INITIAL_WINDOW_SIZE
	round          netloop.Round

	// Receiving flow control, the connection's: inflow is what the peer
	// may still send (only the frame reader takes from it); unacked is
	// what was read or dropped and is not yet credited back.
	inflow  atomic.Int64
	unacked atomic.Int64

	// Writing: everything below, the streams' send windows and their
	// sending state are changed under wmu.
	wmu          sync.Mutex
	out          outBuf
	wfr          *http2.Framer // writes to out
	hbuf         bytes.Buffer
	henc         *hpack.Encoder // writes to hbuf
	werr         error          // writing failed: the connection is done
	sendWindow   atomic.Int64   // read without the lock by WouldWait
	peerMaxFrame int
	waiting      []*Stream // writers waiting for a send window

	// State, under mu.
	mu      sync.Mutex
	streams map[uint32]*Stream // open and half-closed ones
	// serving counts the streams accepted and not yet closed by the
	// proxy, which a stream the caller reset still is for a while.
	serving   int
	maxSeen   uint32        // the highest stream the peer opened
	idleSince time.Duration // when the last stream ended
	goingAway bool          // GOAWAY sent: no new streams
	closed    bool
	pinging   bool // our PING is unanswered
	pingAt    time.Duration
	pingData  [8]byte
	pings     uint64
	timer     *time.Timer
	timerAt   time.Duration
}

// outBuf collects the frames of one write, which then go to the socket in
// one TLS write.
type outBuf struct{ b []byte }

func (o *outBuf) Write(p []byte) (int, error) {
	o.b = append(o.b, p...)
	return len(p), nil
}

// errReader keeps the connection's read error apart from the framer's
// parse errors, some of which (io.ErrUnexpectedEOF for a frame too short
// for its fields) look like a read's.
type errReader struct {
	r   io.Reader
	err error
	// beforeRead runs before every read, when the connection is no
	// socket's (tests); a socket's runs it itself (sock.beforeRead).
	beforeRead func()
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.beforeRead != nil {
		r.beforeRead()
	}
	n, err := r.r.Read(p)
	if err != nil {
		r.err = err
	}
	return n, err
}

// connError ends the connection with GOAWAY and code.
type connError struct {
	code   http2.ErrCode
	reason string
}

func (e connError) Error() string { return fmt.Sprintf("hbone: %s: %s", e.code, e.reason) }

var (
	errConnClosed = errors.New("hbone: the HTTP/2 connection ended")
	errPingAnswer = errors.New("hbone: the caller did not answer a PING in time")
)

func newConn(srv *Server, nc, rw net.Conn, sk *sock, p peer) *conn {
	c := &conn{
		srv:            srv,
		lim:            srv.Limits.withDefaults(),
		nc:             nc,
		rw:             rw,
		sock:           sk,
		peer:           p,
		start:          time.Now(),
		peerInitWindow: initialWindow,
		peerMaxFrame:   defaultFrameSize,
		streams:        map[uint32]*Stream{},
	}
	c.rd.r = rw
	if sk != nil {
		sk.beforeRead, sk.afterRead = c.round.Flush, c.round.Stamp
	} else {
		c.rd.beforeRead = c.round.Flush
	}
	c.fr = http2.NewFramer(nil, &c.rd)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(maxHeaderTable, nil)
	c.fr.MaxHeaderListSize = uint32(c.lim.MaxHeaderBytes)
	c.fr.SetMaxReadFrameSize(defaultFrameSize)
	c.fr.SetReuseFrames()
	c.wfr = http2.NewFramer(&c.out, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.inflow.Store(int64(c.lim.ConnectionWindow))
	c.sendWindow.Store(initialWindow)
	return c
}

func (c *conn) now() time.Duration { return time.Since(c.start) }

// serve reads the connection's frames until it ends, then ends its
// streams. The TLS handshake is done.
func (c *conn) serve() {
	err := c.run()
	c.round.Flush() // what the last frames' handlers wrote
	var ce connError
	if errors.As(err, &ce) {
		c.srv.Log.Debug("HBONE connection refused", "remote", c.peer.remote.String(), "err", err)
		c.goAwayAndLinger(ce)
	}
	c.close(err)
}

func (c *conn) run() error {
	if err := c.writePreface(); err != nil {
		return err
	}
	if c.lim.HandshakeTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.lim.HandshakeTimeout))
	}
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.rw, preface[:]); err != nil {
		return err
	}
	if string(preface[:]) != http2.ClientPreface {
		return connError{http2.ErrCodeProtocol, "no HTTP/2 client preface"}
	}
	for settled := false; ; {
		f, err := c.readFrame()
		if err != nil {
			return err
		}
		if !settled {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				return connError{http2.ErrCodeProtocol, "the client preface is not followed by SETTINGS"}
			}
			settled = true
			_ = c.nc.SetReadDeadline(time.Time{})
			c.startTimer()
		}
		if f == nil {
			continue // a stream's error, answered
		}
		if err := c.handle(f); err != nil {
			return err
		}
	}
}

// writePreface sends the server's SETTINGS and opens the connection's
// receive window to ConnectionWindow.
func (c *conn) writePreface() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.wfr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.lim.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.lim.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(c.lim.MaxHeaderBytes)},
	)
	if more := c.lim.ConnectionWindow - initialWindow; more > 0 {
		_ = c.wfr.WriteWindowUpdate(0, uint32(more))
	}
	return c.flushLocked()
}

// readFrame reads the next frame. A stream's error (malformed headers, a
// zero WINDOW_UPDATE) is answered here with RST_STREAM, and gives no frame
// and no error; a connection's is a connError; a read's is itself.
func (c *conn) readFrame() (http2.Frame, error) {
	fh, err := c.fr.ReadFrameHeader()
	if err == nil {
		var f http2.Frame
		f, err = c.fr.ReadFrameForHeader(fh)
		if err == nil {
			c.lastRead.Store(int64(c.now()))
			return f, nil
		}
	}
	if c.rd.err != nil {
		return nil, c.rd.err
	}
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se) && (fh.Type != http2.FrameHeaders || se.Cause != nil):
		// A header block that was decoded but is malformed, or a frame
		// that concerns only its stream. (A HEADERS frame that could not
		// be parsed left HPACK's state behind: that is the connection's.)
		return nil, c.streamError(se.StreamID, se.Code, fh.Type == http2.FrameHeaders)
	case errors.Is(err, http2.ErrFrameTooLarge):
		return nil, connError{http2.ErrCodeFrameSize, err.Error()}
	case errors.As(err, &ce):
		reason := "malformed frame"
		if d := c.fr.ErrorDetail(); d != nil {
			reason = d.Error()
		}
		return nil, connError{http2.ErrCode(ce), reason}
	}
	return nil, connError{http2.ErrCodeProtocol, fmt.Sprintf("malformed %s frame: %v", fh.Type, err)}
}

// handle does what one frame asks.
func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		return c.onPing(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.GoAwayFrame:
		if f.ErrCode != http2.ErrCodeNo {
			c.srv.Log.Debug("HBONE caller went away", "remote", c.peer.remote.String(), "code", f.ErrCode.String())
		}
		c.drain()
		return nil
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	}
	return nil // PRIORITY, PRIORITY_UPDATE and frames of unknown types
}

// stream is the open stream id, or nil; an id the peer never opened is
// a connError (frames other than HEADERS and PRIORITY on an idle stream).
func (c *conn) stream(id uint32, what string) (*Stream, error) {
	c.mu.Lock()
	s, idle := c.streams[id], id > c.maxSeen || id%2 == 0
	c.mu.Unlock()
	if s == nil && idle {
		return nil, connError{http2.ErrCodeProtocol, what + " on idle stream " + fmt.Sprint(id)}
	}
	return s, nil
}

func (c *conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included: flow control counts it
	if n > c.inflow.Load() {
		return connError{http2.ErrCodeFlowControl, "DATA past the connection's window"}
	}
	c.inflow.Add(-n)
	s, err := c.stream(f.StreamID, "DATA")
	if err != nil {
		return err
	}
	if s == nil {
		c.credit(nil, 0, n) // a stream that ended: dropped
		return nil
	}
	if s.remoteEnded.Load() {
		c.credit(nil, 0, n)
		c.reset(s, http2.ErrCodeStreamClosed, errPeerProtocol)
		return nil
	}
	return s.received(f.Data(), n, f.StreamEnded())
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if f.HasDuplicates() {
		return connError{http2.ErrCodeProtocol, "duplicate SETTINGS"}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingInitialWindowSize:
			return c.setInitialWindowLocked(int64(st.Val))
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(st.Val)
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(st.Val)
		}
		return nil
	})
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		return connError{http2.ErrCode(ce), "a SETTINGS value out of range"}
	case err != nil:
		return err // a window overflowed
	}
	_ = c.wfr.WriteSettingsAck()
	return c.flushLocked()
}

// setInitialWindowLocked applies a new SETTINGS_INITIAL_WINDOW_SIZE to
// every stream's send window (RFC 9113 6.9.2); wmu is held.
func (c *conn) setInitialWindowLocked(v int64) error {
	delta := v - c.peerInitWindow
	c.peerInitWindow = v
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.streams {
		if s.sendWindow.Add(delta) > maxWindow {
			return connError{http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream's window"}
		}
	}
	c.wakeWritersLocked()
	return nil
}

func (c *conn) onPing(f *http2.PingFrame) error {
	if f.IsAck() {
		c.mu.Lock()
		if c.pinging && f.Data == c.pingData {
			c.pinging = false
		}
		c.mu.Unlock()
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.wfr.WritePing(true, f.Data)
	return c.flushLocked()
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if c.sendWindow.Add(inc) > maxWindow {
			return connError{http2.ErrCodeFlowControl, "WINDOW_UPDATE overflows the connection's window"}
		}
		c.wakeWritersLocked()
		return nil
	}
	s, err := c.stream(f.StreamID, "WINDOW_UPDATE")
	if s == nil {
		return err
	}
	c.wmu.Lock()
	overflow := s.sendWindow.Add(inc) > maxWindow
	c.wakeWritersLocked()
	c.wmu.Unlock()
	if overflow {
		c.reset(s, http2.ErrCodeFlowControl, errPeerProtocol)
	}
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	s, err := c.stream(f.StreamID, "RST_STREAM")
	if s != nil {
		s.resetByPeer(f.ErrCode)
	}
	return err
}

// streamError answers the framer's error on a stream with RST_STREAM. A
// header block that opens no stream still counts as the peer's newest
// stream, which must be its highest yet; another frame on a stream never
// opened is the connection's error, and one on a stream that ended is
// ignored.
func (c *conn) streamError(id uint32, code http2.ErrCode, headers bool) error {
	c.mu.Lock()
	s, idle := c.streams[id], id > c.maxSeen
	switch {
	case s == nil && id%2 == 0, s == nil && idle && !headers:
		c.mu.Unlock()
		return connError{http2.ErrCodeProtocol, fmt.Sprintf("a frame on idle stream %d", id)}
	case s == nil && !idle && headers:
		c.mu.Unlock()
		return connError{http2.ErrCodeStreamClosed, fmt.Sprintf("HEADERS on closed stream %d", id)}
	case s == nil && idle:
		c.maxSeen = id
	}
	c.mu.Unlock()
	switch {
	case s != nil:
		c.reset(s, code, errPeerProtocol)
	case headers:
		c.refuse(id, code)
	}
	return nil
}

// refuse resets a stream that was never opened.
func (c *conn) refuse(id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.wfr.WriteRSTStream(id, code)
	_ = c.flushLocked()
}

// flushLocked writes the frames collected in out; wmu is held. A failed
// write closes the connection, which ends the frame reader and then every
// stream.
func (c *conn) flushLocked() error {
	if c.werr != nil || len(c.out.b) == 0 {
		c.out.b = c.out.b[:0]
		return c.werr
	}
	_, err := c.rw.Write(c.out.b)
	if cap(c.out.b) > 4*writeChunk {
		c.out.b = nil
	} else {
		c.out.b = c.out.b[:0]
	}
	if err != nil {
		c.werr = err
		c.nc.Close()
	}
	return err
}

// wakeWritersLocked wakes the writers that wait for a send window; wmu is
// held.
func (c *conn) wakeWritersLocked() {
	for _, s := range c.waiting {
		s.queued = false
		s.wakeWriter()
	}
	clear(c.waiting)
	c.waiting = c.waiting[:0]
}

// credit counts n bytes of the connection's window as read (or dropped)
// and, once half the window is, credits them back with WINDOW_UPDATE,
// with streamInc for s when that is more than 0.
func (c *conn) credit(s *Stream, streamInc int64, n int64) {
	var connInc int64
	if n > 0 && c.unacked.Add(n) >= int64(c.lim.ConnectionWindow)/2 {
		if connInc = c.unacked.Swap(0); connInc > 0 {
			c.inflow.Add(connInc)
		}
	}
	if streamInc <= 0 && connInc <= 0 {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if streamInc > 0 && !s.endSent {
		_ = c.wfr.WriteWindowUpdate(s.id, uint32(streamInc))
	}
	if connInc > 0 {
		_ = c.wfr.WriteWindowUpdate(0, uint32(connInc))
	}
	_ = c.flushLocked()
}

// reset ends s with RST_STREAM and code: its reads and writes fail with
// err.
func (c *conn) reset(s *Stream, code http2.ErrCode, err error) {
	c.wmu.Lock()
	if !s.endSent {
		s.endSent = true
		_ = c.wfr.WriteRSTStream(s.id, code)
		_ = c.flushLocked()
	}
	if s.werr == nil {
		s.werr = err
	}
	s.wakeWriter()
	c.wmu.Unlock()
	s.fail(err, true)
	c.ended(s, true, true)
}

// ended records that a side of s is done; once both are, s leaves the
// connection. The last stream of a connection going away ends it.
func (c *conn) ended(s *Stream, local, remote bool) {
	c.mu.Lock()
	s.localDone = s.localDone || local
	s.remoteDone = s.remoteDone || remote
	if !s.localDone || !s.remoteDone || c.streams[s.id] != s {
		c.mu.Unlock()
		return
	}
	delete(c.streams, s.id)
	last := len(c.streams) == 0
	var finish bool
	if last {
		c.idleSince = c.now()
		finish = c.goingAway && !c.closed
		if c.lim.IdleTimeout > 0 && c.timer != nil && c.timerAt > c.idleSince+c.lim.IdleTimeout {
			c.timerAt = c.idleSince + c.lim.IdleTimeout
			c.timer.Reset(c.lim.IdleTimeout)
		}
	}
	c.mu.Unlock()
	if finish {
		go c.finish()
	}
}

// drain sends GOAWAY (no new streams; the open ones go on) and ends the
// connection once its streams have.
func (c *conn) drain() {
	c.mu.Lock()
	if c.goingAway || c.closed {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	last, idle := c.maxSeen, len(c.streams) == 0
	c.mu.Unlock()
	c.wmu.Lock()
	_ = c.wfr.WriteGoAway(last, http2.ErrCodeNo, nil)
	_ = c.flushLocked()
	c.wmu.Unlock()
	if idle {
		c.finish()
	}
}

// finish ends a connection that went away: the peer reads the end after
// the GOAWAY, and the frame reader, reading its end (or giving up after
// goAwayLinger), closes the connection.
func (c *conn) finish() {
	if c.sock != nil {
		c.sock.closeWrite()
		_ = c.nc.SetReadDeadline(time.Now().Add(goAwayLinger))
		return
	}
	c.nc.Close()
}

// goAwayAndLinger ends the connection with GOAWAY and e's code, then
// reads what the peer still sends for a while, so that the kernel does
// not reset the connection under the GOAWAY.
func (c *conn) goAwayAndLinger(e connError) {
	c.mu.Lock()
	c.goingAway = true
	last := c.maxSeen
	c.mu.Unlock()
	c.wmu.Lock()
	_ = c.wfr.WriteGoAway(last, e.code, []byte(e.reason))
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil || c.sock == nil {
		return
	}
	c.sock.closeWrite()
	_ = c.nc.SetReadDeadline(time.Now().Add(goAwayLinger))
	_, _ = io.Copy(io.Discard, c.nc)
}

// close ends the connection and every stream on it with err.
func (c *conn) close(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		err = errConnClosed
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	streams := make([]*Stream, 0, len(c.streams))
	for _, s := range c.streams {
		streams = append(streams, s)
	}
	clear(c.streams)
	c.mu.Unlock()
	c.nc.Close()
	c.wmu.Lock()
	if c.werr == nil {
		c.werr = err
	}
	c.wakeWritersLocked()
	c.wmu.Unlock()
	for _, s := range streams {
		s.fail(err, false)
	}
}

// startTimer starts the connection's one timer: it pings a peer silent
// for ReadIdleTimeout, closes one that leaves the ping unanswered for
// PingTimeout, and sends GOAWAY on a connection without streams for
// IdleTimeout.
func (c *conn) startTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.timer != nil {
		return
	}
	c.idleSince = c.now()
	c.timerAt = c.nextTickLocked(c.idleSince)
	c.timer = time.AfterFunc(c.timerAt-c.idleSince, c.tick)
}

func (c *conn) tick() {
	now := c.now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	var ping, dead, idle bool
	if c.pinging {
		dead = now-c.pingAt >= c.lim.PingTimeout
	} else if c.lim.ReadIdleTimeout > 0 && now-time.Duration(c.lastRead.Load()) >= c.lim.ReadIdleTimeout {
		ping = true
		c.pinging, c.pingAt = true, now
		c.pings++
		c.pingData = [8]byte{'h', 'b', 'o', 'n', 'e', byte(c.pings >> 16), byte(c.pings >> 8), byte(c.pings)}
	}
	idle = c.lim.IdleTimeout > 0 && len(c.streams) == 0 && !c.goingAway && now-c.idleSince >= c.lim.IdleTimeout
	data := c.pingData
	c.timerAt = c.nextTickLocked(now)
	c.timer.Reset(c.timerAt - now)
	c.mu.Unlock()
	switch {
	case dead:
		c.srv.Log.Debug("HBONE caller left a PING unanswered", "remote", c.peer.remote.String())
		c.close(errPingAnswer)
	case idle:
		c.drain()
	case ping:
		c.wmu.Lock()
		_ = c.wfr.WritePing(false, data)
		_ = c.flushLocked()
		c.wmu.Unlock()
	}
}

// nextTickLocked is when the timer has something to look at next.
func (c *conn) nextTickLocked(now time.Duration) time.Duration {
	next := now + time.Hour
	if c.pinging {
		next = min(next, c.pingAt+c.lim.PingTimeout)
	} else if c.lim.ReadIdleTimeout > 0 {
		next = min(next, time.Duration(c.lastRead.Load())+c.lim.ReadIdleTimeout)
	}
	if c.lim.IdleTimeout > 0 && len(c.streams) == 0 && !c.goingAway {
		next = min(next, c.idleSince+c.lim.IdleTimeout)
	}
	return max(next, now+time.Millisecond)
}
