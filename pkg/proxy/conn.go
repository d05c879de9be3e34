package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// maxWriteBuffer bounds the replies queued for a client that does not read.
const maxWriteBuffer = 64 << 20

// downConn is one downstream connection. Its reader goroutine decodes and
// routes requests; answers from any goroutine are encoded into a buffer that
// one writer goroutine flushes, so concurrent answers share system calls.
type downConn struct {
	l     *listener
	lc    *listenerConfig // the codec is fixed for the connection's life
	nc    net.Conn
	codec codec.Codec

	inflight atomic.Int32
	draining atomic.Bool

	mu      sync.Mutex
	wbuf    []byte
	order   []*slot // in-order protocols: answers wait for those before them
	closing bool    // flush what is queued, then close
	closed  bool
	kick    chan struct{}
}

// slot holds an answer until the answers to earlier requests have gone out.
type slot struct {
	msg   *codec.Message
	ready bool
}

func newDownConn(l *listener, nc net.Conn) *downConn {
	lc := l.cfg.Load()
	cd, err := lc.protocol.New(lc.options)
	if err != nil { // options were checked when the config was applied
		panic("proxy: codec options changed meaning: " + err.Error())
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &downConn{l: l, lc: lc, nc: nc, codec: cd, kick: make(chan struct{}, 1)}
}

func (dc *downConn) serve() {
	defer dc.l.untrack(dc)
	go dc.writeLoop()
	fr := wire.NewReader(dc.nc, dc.codec)
	for {
		if dc.lc.idleTimeout > 0 {
			_ = dc.nc.SetReadDeadline(time.Now().Add(dc.lc.idleTimeout))
		}
		frame, err := fr.Next()
		if err == nil {
			var m *codec.Message
			if m, err = dc.codec.Decode(frame); err == nil {
				dc.dispatch(m)
				continue
			}
		}
		if isTimeout(err) && dc.inflight.Load() > 0 {
			continue // idle means no requests, not a slow upstream
		}
		dc.readFailed(err)
		return
	}
}

func (dc *downConn) readFailed(err error) {
	switch {
	case errors.Is(err, codec.ErrMalformed) || errors.Is(err, codec.ErrTooLarge) || errors.Is(err, codec.ErrUnsupported):
		dc.l.p.metrics.ProtocolError(dc.lc.statPrefix)
		dc.l.p.log.Warn("closing a connection after a bad frame", "listener", dc.lc.name, "remote", dc.nc.RemoteAddr().String(), "err", err)
		dc.close()
	case errors.Is(err, io.EOF), isTimeout(err):
		dc.closeAfterFlush()
	default:
		dc.close()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (dc *downConn) dispatch(m *codec.Message) {
	switch m.Kind {
	case codec.KindRequest, codec.KindOneway:
		dc.l.p.handle(dc, m)
	case codec.KindHeartbeat:
		dc.answerHeartbeat(m)
	}
}

func (dc *downConn) answerHeartbeat(m *codec.Message) {
	hb, ok := dc.codec.(codec.HeartbeatReplier)
	if !ok {
		return
	}
	s := dc.reserve()
	dc.mu.Lock()
	defer dc.mu.Unlock()
	rep, err := hb.HeartbeatReply(m)
	if err != nil || rep == nil {
		rep = nil
	}
	dc.fillLocked(s, rep)
}

// reserve takes the next answer's place for in-order protocols; nil otherwise.
func (dc *downConn) reserve() *slot {
	if dc.lc.protocol.Ordering != codec.InOrder {
		return nil
	}
	s := &slot{}
	dc.mu.Lock()
	dc.order = append(dc.order, s)
	dc.mu.Unlock()
	return s
}

// respond writes an answer (nil: none) in the request's place.
func (dc *downConn) respond(s *slot, m *codec.Message) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.fillLocked(s, m)
}

// reply writes a local error reply built by the codec.
func (dc *downConn) reply(s *slot, req *codec.Message, st codec.Status, detail string) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	rep, err := dc.codec.Reply(req, st, detail)
	if err != nil {
		dc.l.p.log.Warn("codec could not build a local reply", "listener", dc.lc.name, "status", st.String(), "err", err)
		rep = nil
	}
	dc.fillLocked(s, rep)
}

func (dc *downConn) fillLocked(s *slot, m *codec.Message) {
	if s == nil {
		dc.encodeLocked(m)
		return
	}
	s.msg, s.ready = m, true
	for len(dc.order) > 0 && dc.order[0].ready {
		dc.encodeLocked(dc.order[0].msg)
		dc.order[0] = nil
		dc.order = dc.order[1:]
	}
}

func (dc *downConn) encodeLocked(m *codec.Message) {
	if m == nil || dc.closed {
		return
	}
	out, err := dc.codec.Encode(dc.wbuf, m)
	if err != nil {
		dc.l.p.log.Warn("codec could not encode an answer", "listener", dc.lc.name, "err", err)
		return
	}
	dc.wbuf = out
	if len(dc.wbuf) > maxWriteBuffer {
		dc.closeLocked()
		return
	}
	select {
	case dc.kick <- struct{}{}:
	default:
	}
}

func (dc *downConn) writeLoop() {
	var out []byte
	for range dc.kick {
		dc.mu.Lock()
		if dc.closed {
			dc.mu.Unlock()
			return
		}
		out, dc.wbuf = dc.wbuf, out[:0]
		closing := dc.closing && dc.inflight.Load() == 0
		dc.mu.Unlock()
		if len(out) > 0 {
			if _, err := dc.nc.Write(out); err != nil {
				dc.close()
				return
			}
		}
		if closing {
			dc.close()
			return
		}
	}
}

// finished is called when a request's answer is queued: a draining or
// half-closed connection closes once nothing is in flight.
func (dc *downConn) finished() {
	if dc.inflight.Add(-1) != 0 {
		return
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.draining.Load() {
		dc.closing = true
	}
	if dc.closing && !dc.closed {
		select {
		case dc.kick <- struct{}{}:
		default:
		}
	}
}

// startDrain asks the client to go away (where the protocol can) and closes
// the connection when its last request is answered.
func (dc *downConn) startDrain() {
	dc.draining.Store(true)
	if g, ok := dc.codec.(codec.GoAwayer); ok {
		dc.mu.Lock()
		dc.wbuf = append(dc.wbuf, g.GoAway()...)
		dc.mu.Unlock()
	}
	if dc.inflight.Load() == 0 {
		dc.closeAfterFlush()
	}
}

func (dc *downConn) closeAfterFlush() {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.closed {
		return
	}
	dc.closing = true
	select {
	case dc.kick <- struct{}{}:
	default:
	}
}

func (dc *downConn) close() {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.closeLocked()
}

func (dc *downConn) closeLocked() {
	if dc.closed {
		return
	}
	dc.closed = true
	dc.nc.Close()
	select { // the writer wakes, sees closed and stops
	case dc.kick <- struct{}{}:
	default:
	}
}
