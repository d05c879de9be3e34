package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/rosetta-mesh/rosetta/internal/queue"
	"github.com/rosetta-mesh/rosetta/pkg/authz"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// downConn is one downstream connection. Its reader goroutine decodes and
// routes requests; answers from any goroutine are encoded into the writer's
// queue, and whoever finds no write in progress writes it out.
type downConn struct {
	l     *listener
	lc    *listenerConfig // the codec is fixed for the connection's life
	nc    net.Conn
	codec codec.Codec
	// peer is what authorization knows of the caller (its verified
	// identity, address and the listener port); each request adds its
	// attributes to a copy.
	peer authz.Request

	inflight atomic.Int32
	draining atomic.Bool

	// The metric series this connection's successful requests last went
	// to: most of them go to the same ones, which then cost no lookup.
	// Atomic: answers may come back on several goroutines.
	lastRequest   atomic.Pointer[observability.Series]
	lastOperation atomic.Pointer[observability.Series]
	lastIstio     atomic.Pointer[observability.IstioSeries]
	// source is what the caller's verified identity and its address tell
	// of it, for Istio's metrics (sourceOf).
	source *observability.Workload

	streamsMu sync.Mutex
	streams   map[uint64]*stream // by the client's stream ID

	// lazy is where the connection is in reporting its destination
	// (lazy.go), under lazyMu but read without it once reported.
	lazyMu sync.Mutex
	lazy   atomic.Uint32

	// w's lock also guards order, closing and broken.
	w       *wire.Writer
	order   queue.Queue[*slot] // in-order protocols: answers wait for those before them
	closing bool               // close once nothing is queued or in flight
	// broken: an answer of an in-order protocol could not be written, so
	// none after it may be (it would answer the wrong request); the
	// connection closes once what is queued before it is written.
	broken bool
}

// slot holds an answer until the answers to earlier requests have gone out.
type slot struct {
	msg   *codec.Message
	ready bool
	// failed: the answer could not be built, so the connection breaks
	// in its place (see broken).
	failed bool
}

func newDownConn(l *listener, nc net.Conn, principal string) *downConn {
	lc := l.cfg.Load()
	cd, err := lc.protocol.New(lc.options, codec.PeerClient)
	if err != nil { // options were checked when the config was applied
		panic("proxy: codec options changed meaning: " + err.Error())
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	dc := &downConn{l: l, lc: lc, nc: nc, codec: cd}
	dc.peer = peerOf(nc, principal, lc.port)
	dc.source = l.p.sourceOf(nc, principal)
	dc.w = wire.NewWriter(nc, wire.Options{
		Timeout: writeTimeout,
		// Answers queued for a caller that does not read are held to the
		// connection's buffer limit, as its unfinished frames are.
		Max:    min(maxWriteBuffer, lc.limits.Buffer.PerConn),
		Failed: dc.writeFailed,
		Idle:   func() bool { return dc.broken || dc.closing && dc.inflight.Load() == 0 },
	})
	return dc
}

// writeFailed ends the connection once a write failed or the answers
// queued for the caller passed the limit.
func (dc *downConn) writeFailed(err error) {
	if reason := netloop.LimitReason(err); reason != "" {
		dc.l.p.metrics.ClosedByLimit(dc.lc.statPrefix, reason)
	}
	dc.close()
}

// start has netloop read the connection: on an event loop, fed by an
// HBONE connection's reader, or on a goroutine of its own.
func (dc *downConn) start() {
	netloop.Serve(dc.nc, dc.codec, dc.w, dc, dc.lc.limits)
}

// Frame implements netloop.Handler: a frame is decoded and dispatched, an
// error ends the reading (false) unless it is an idle timeout with requests
// still in flight.
func (dc *downConn) Frame(frame []byte, err error, b *netloop.Round) bool {
	if a, ok := dc.codec.(*autoCodec); ok && !dc.adopt(a, err) {
		return false // an auto listener's connection whose protocol is unknown (sniff.go)
	}
	var m *codec.Message
	if err == nil {
		if m, err = codec.SafeDecode(dc.codec, frame); err == nil {
			dc.dispatch(m, b)
			return true
		}
	}
	if isTimeout(err) && dc.inflight.Load() > 0 {
		return true // idle means no requests, not a slow upstream
	}
	dc.readFailed(m, err)
	return false
}

// Stopped implements netloop.Handler; it runs once reading has ended, on the
// goroutine that read.
func (dc *downConn) Stopped() {
	if c, ok := dc.codec.(codec.Closer); ok {
		c.Close()
	}
	dc.resetStreams()
	dc.l.untrack(dc)
}

// readFailed ends the connection after a read error. A bad frame whose kind
// and ID the codec could read (partial) is answered with the protocol's bad
// request error first.
func (dc *downConn) readFailed(partial *codec.Message, err error) {
	if reason := netloop.LimitReason(err); reason != "" {
		// Counted, not logged at warn: a hostile client can make many.
		dc.l.p.metrics.ClosedByLimit(dc.lc.statPrefix, reason)
		dc.l.p.log.Debug("closing a connection over a limit", "listener", dc.lc.name, "remote", dc.nc.RemoteAddr().String(), "limit", reason, "err", err)
		switch {
		case reason == netloop.ReasonIdle:
			dc.closeAfterFlush()
		case dc.replyToHead(err):
		default:
			dc.close()
		}
		return
	}
	switch {
	case errors.Is(err, codec.ErrMalformed) || errors.Is(err, codec.ErrTooLarge) || errors.Is(err, codec.ErrUnsupported):
		dc.l.p.metrics.ProtocolError(dc.lc.statPrefix)
		dc.warn("closing a connection after a bad frame", err)
		if partial != nil && partial.Kind == codec.KindRequest {
			dc.reply(dc.reserve(&slot{}), partial, codec.StatusBadRequest, "rosetta: "+err.Error(), nil)
			dc.closeAfterFlush()
			return
		}
		dc.close()
	case errors.Is(err, io.EOF), isTimeout(err):
		dc.closeAfterFlush()
	default:
		dc.close()
	}
}

// replyToHead answers the request a limit cut short with the protocol's
// bad request error, when the codec can read its kind and ID from its
// head, and closes once that is written; false when it cannot.
func (dc *downConn) replyToHead(err error) bool {
	hd, ok := dc.codec.(codec.HeadDecoder)
	if !ok {
		return false
	}
	var m *codec.Message
	if perr := codec.Guard("DecodeHead", func() { m, ok = hd.DecodeHead(wire.HeadOf(err)) }); perr != nil || !ok || m.Kind != codec.KindRequest {
		return false
	}
	dc.reply(dc.reserve(&slot{}), m, codec.StatusBadRequest, "rosetta: "+err.Error(), nil)
	dc.closeAfterFlush()
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (dc *downConn) dispatch(m *codec.Message, b *netloop.Round) {
	switch m.Kind {
	case codec.KindRequest, codec.KindOneway:
		dc.lazyUsed()
		dc.l.p.handle(dc, m, b)
	case codec.KindStream:
		dc.lazyUsed()
		dc.forwardStream(m)
	case codec.KindHeartbeat:
		dc.answerHeartbeat(m, b)
	}
}

func (dc *downConn) answerHeartbeat(m *codec.Message, b *netloop.Round) {
	hb, ok := dc.codec.(codec.HeartbeatReplier)
	if !ok {
		return
	}
	s := dc.reserve(&slot{})
	dc.w.Lock()
	defer dc.w.Unlock()
	rep, err := codec.SafeHeartbeatReply(hb, m)
	if err != nil {
		dc.warn("codec could not answer a heartbeat", err)
		dc.failLocked(s)
	} else {
		dc.fillLocked(s, rep)
	}
	b.Hold(dc.w)
}

// reserve takes the next answer's place, s, for in-order protocols; nil
// otherwise.
func (dc *downConn) reserve(s *slot) *slot {
	if dc.lc.protocol.Ordering != codec.InOrder {
		return nil
	}
	dc.w.Lock()
	dc.order.Push(s)
	dc.w.Unlock()
	return s
}

// respond writes an answer (nil: none) in the request's place; b, when not
// nil, is the calling goroutine's round, which the write may wait for.
func (dc *downConn) respond(s *slot, m *codec.Message, b *netloop.Round) {
	dc.w.Lock()
	defer dc.w.Unlock()
	dc.fillLocked(s, m)
	b.Hold(dc.w)
}

// hold makes the connection's next writes wait for b.
func (dc *downConn) hold(b *netloop.Round) {
	if b == nil {
		return
	}
	dc.w.Lock()
	b.Hold(dc.w)
	dc.w.Unlock()
}

// reply writes a local error reply built by the codec.
func (dc *downConn) reply(s *slot, req *codec.Message, st codec.Status, detail string, b *netloop.Round) {
	dc.w.Lock()
	defer dc.w.Unlock()
	b.Hold(dc.w)
	rep, err := codec.SafeReply(dc.codec, req, st, detail)
	if err != nil {
		dc.l.p.log.Warn("codec could not build a local reply", "listener", dc.lc.name, "status", st.String(), "err", err)
		dc.failLocked(s)
		return
	}
	dc.fillLocked(s, rep)
}

func (dc *downConn) fillLocked(s *slot, m *codec.Message) {
	if s == nil {
		dc.encodeLocked(m)
		return
	}
	s.msg, s.ready = m, true
	for dc.order.Len() > 0 && (*dc.order.At(0)).ready {
		next := dc.order.Pop()
		dc.broken = dc.broken || next.failed
		dc.encodeLocked(next.msg)
	}
}

// failLocked fills s with an answer that could not be built. An in-order
// connection breaks in its place, as when an answer cannot be encoded: the
// answers before it go out, and the connection closes rather than pair the
// ones after it with the wrong requests. By ID, the caller just gets no
// answer to that request.
func (dc *downConn) failLocked(s *slot) {
	if s != nil {
		s.failed = true
	}
	dc.fillLocked(s, nil)
}

func (dc *downConn) encodeLocked(m *codec.Message) {
	if m == nil || dc.w.Closed() || dc.broken {
		return
	}
	if err := dc.w.EncodeLocked(dc.codec, m); err != nil {
		dc.warn("codec could not encode an answer", err)
		dc.broken = dc.lc.protocol.Ordering == codec.InOrder
		return
	}
	if m.Written != nil {
		m.Written()
	}
}

// finished is called when a request's answer is queued: a draining or
// half-closed connection closes once nothing is in flight.
func (dc *downConn) finished() {
	if dc.inflight.Add(-1) != 0 {
		return
	}
	dc.w.Lock()
	if dc.draining.Load() {
		dc.closing = true
	}
	dc.w.Unlock() // closes through Options.Idle when closing
}

// startDrain asks the client to go away (where the protocol can) and closes
// the connection when its last request is answered.
func (dc *downConn) startDrain() {
	dc.draining.Store(true)
	dc.w.Lock()
	if g, ok := dc.codec.(codec.GoAwayer); ok && !dc.w.Closed() {
		dc.w.AppendLocked(g.GoAway())
	}
	dc.closing = true
	dc.w.Unlock()
}

// closeAfterFlush closes once every answer in flight is written.
func (dc *downConn) closeAfterFlush() {
	dc.w.Lock()
	dc.closing = true
	dc.w.Unlock()
}

func (dc *downConn) close() { dc.w.Close() }

// warn logs a problem of this connection; a codec's panic is logged with
// its stack, which says where the bug is.
func (dc *downConn) warn(msg string, err error) {
	attrs := []any{"listener", dc.lc.name, "remote", dc.nc.RemoteAddr().String(), "err", err}
	var pe *codec.PanicError
	if errors.As(err, &pe) {
		attrs = append(attrs, "stack", string(pe.Stack))
	}
	dc.l.p.log.Warn(msg, attrs...)
}

// codecFailed closes the connection after a codec's panic in code the
// proxy called back (a dedicated connection's receiver): the codec's state
// for this client may be broken, and an answer may be lost, so nothing it
// writes from now on can be trusted.
func (dc *downConn) codecFailed(err error) {
	dc.l.p.metrics.ProtocolError(dc.lc.statPrefix)
	dc.warn("closing a connection after a codec's panic", err)
	dc.close()
}
