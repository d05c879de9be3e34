package upstream

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// Errors a Request may be completed with.
var (
	// ErrConnect: the connection could not be made; the request never left.
	ErrConnect = errors.New("upstream connect failed")
	// ErrReset: the connection closed while the request was in flight.
	ErrReset = errors.New("upstream connection reset")
	// ErrOverloaded: a connection or request limit was reached.
	ErrOverloaded = errors.New("upstream limit reached")
	// ErrNoEndpoint: the cluster has no endpoint.
	ErrNoEndpoint = errors.New("no healthy upstream")
)

var errClosedBeforeSend = fmt.Errorf("%w: the connection closed before the request was sent", ErrConnect)

// errRemoved refuses a new request to an endpoint the config removed; it was
// not sent, so it is as safe to retry elsewhere as a connect failure.
var errRemoved = fmt.Errorf("%w: the endpoint was removed from the config and takes no new requests", ErrConnect)

// Request is one request in flight upstream.
type Request interface {
	// Done is called for each frame answering the request (once for a
	// unary request) unless the request is cancelled first: with the
	// response, or with one of the errors above. b, when not nil, is the
	// calling reader's round: writes Done makes may wait for it (Round.Hold).
	Done(resp *codec.Message, err error, b *netloop.Round)
}

// Conn is one upstream connection that many downstream requests share. For
// protocols paired by ID it rewrites each request's ID to one unique on this
// connection; for in-order protocols it pairs responses first in, first out.
type Conn struct {
	pool  *Pool
	codec codec.Codec
	nc    net.Conn
	// home, when set, is the round of the event loop that reads the
	// connection (Pool.Send).
	home *netloop.Round

	// w's lock also guards closed, closing and inflight, so a request is
	// registered before its bytes can leave.
	w        *wire.Writer
	closed   bool
	inflight inflight
	// draining is set once the endpoint is removed: the connection takes
	// no new request, and closing is set once nothing is in flight on it,
	// which closes it when what is queued has been written.
	draining atomic.Bool
	closing  bool
	// waiting counts requests sent before the connection was made, capped
	// by the cluster's MaxPending.
	waiting    int
	maxPending int

	active atomic.Int32
	// held counts the requests Send registered while a round held w: on an
	// in-order connection, active above held means answers are due to
	// requests already written (Writer.Awaiting).
	held int32
}

func newConn(p *Pool) (*Conn, error) {
	cd, err := p.proto.New(p.opts, codec.PeerServer)
	if err != nil {
		return nil, err
	}
	c := &Conn{pool: p, codec: cd}
	o := wire.Options{Timeout: writeTimeout, Max: maxWriteBuffer, Server: true, Failed: func(err error) {
		p.ep.read.overLimit(err)
		c.close(fmt.Errorf("%w: write: %v", ErrReset, err))
	}, Idle: func() bool { return c.closing }}
	if p.proto.Ordering == codec.InOrder {
		c.inflight = &fifo{}
		o.Awaiting = func() bool { return c.active.Load() > c.held }
	} else {
		c.inflight = &byID{m: map[uint64]Request{}}
	}
	c.w = wire.NewWriter(nil, o)
	if hs, ok := cd.(codec.Handshaker); ok {
		// Ahead of any request: Send queues after it.
		c.w.Lock()
		c.w.AppendLocked(hs.Handshake(nil))
		c.w.Unlock()
	}
	return c, nil
}

// dial connects and starts the reader and writer; requests sent meanwhile wait
// in the write buffer.
func (c *Conn) dial(timeout time.Duration) {
	nc, err := net.DialTimeout("tcp", c.pool.ep.Addr, timeout)
	if err == nil && c.pool.ep.tls != nil {
		nc, err = c.pool.ep.tls.handshake(nc, timeout)
	}
	if err != nil {
		c.pool.ep.fail()
		c.close(fmt.Errorf("%w: %s: %v", ErrConnect, c.pool.ep.Addr, err))
		return
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c.w.Lock()
	closed, idle := c.closed, c.closing
	if !closed && !idle {
		c.nc = nc
	}
	c.w.Unlock()
	if closed || idle {
		nc.Close()
		if idle { // drained before it was made: what it held was cancelled
			c.close(errDrained)
		}
		return
	}
	c.pool.ep.succeed()
	c.w.SetConn(nc)
	netloop.ServeOn(c.home, nc, c.codec, c.w, c, c.pool.limits())
}

// Send writes msg on this connection and registers r for its response (r nil:
// no response expected). It returns the ID msg carries upstream.
//
// b, when not nil, holds the write until the caller's round flushes.
func (c *Conn) Send(msg *codec.Message, r Request, b *netloop.Round) (uint64, error) {
	c.w.Lock()
	defer c.w.Unlock()
	if c.closed {
		return 0, errClosedBeforeSend // nothing left: as safe to retry as a connect failure
	}
	if c.draining.Load() {
		return 0, errRemoved
	}
	if c.w.QueuedLocked() > maxWriteBuffer {
		return 0, ErrOverloaded
	}
	if c.nc == nil {
		if c.waiting >= c.maxPending {
			return 0, ErrOverloaded
		}
		c.waiting++
	}
	orig := msg.ID
	id := c.inflight.nextID(orig)
	msg.ID = id
	err := c.w.EncodeLocked(c.codec, msg)
	msg.ID = orig
	if err != nil {
		return 0, err
	}
	if !c.w.Held() {
		c.held = 0 // what was held before has been written
	}
	if r != nil {
		c.inflight.add(id, r)
		c.active.Add(1)
	}
	b.Hold(c.w)
	if r != nil && c.w.Held() {
		c.held++
	}
	return id, nil
}

// SendAs writes msg with the given ID, registering nothing: a frame of a
// stream this connection already carries.
func (c *Conn) SendAs(msg *codec.Message, id uint64) error {
	c.w.Lock()
	defer c.w.Unlock()
	if c.closed {
		return ErrReset
	}
	orig := msg.ID
	msg.ID = id
	err := c.w.EncodeLocked(c.codec, msg)
	msg.ID = orig
	return err
}

// Bind registers r for the stream frames the server sends with id, until
// one has EndStream or the connection closes.
func (c *Conn) Bind(id uint64, r Request) error {
	c.w.Lock()
	defer c.w.Unlock()
	if c.closed || c.closing {
		return ErrReset
	}
	c.inflight.add(id, r)
	c.active.Add(1)
	return nil
}

// Cancel forgets the request with id; a late response to it is dropped.
func (c *Conn) Cancel(id uint64) {
	c.w.Lock()
	if c.inflight.cancel(id) {
		c.active.Add(-1)
	}
	c.closeIfIdleLocked()
	c.w.Unlock()
}

// Frame implements netloop.Handler: a response goes to its request, an error
// or a bad frame closes the connection.
func (c *Conn) Frame(frame []byte, err error, b *netloop.Round) bool {
	var m *codec.Message
	if err == nil {
		m, err = codec.SafeDecode(c.codec, frame)
	}
	if err != nil {
		c.pool.ep.read.overLimit(err)
		c.close(fmt.Errorf("%w: %v", ErrReset, err))
		return false
	}
	c.handle(m, b)
	return true
}

// Stopped implements netloop.Handler: a connection whose writer closed it
// (a drained one, through Options.Idle) is released as any other.
func (c *Conn) Stopped() {
	c.w.Lock()
	err := errStopped
	if c.closing {
		err = errDrained
	}
	c.w.Unlock()
	c.close(err)
}

func (c *Conn) handle(m *codec.Message, b *netloop.Round) {
	switch m.Kind {
	case codec.KindResponse, codec.KindStream:
		c.w.Lock()
		r := c.inflight.take(m.ID, m.Kind == codec.KindResponse || m.EndStream)
		if r != nil && (m.Kind == codec.KindResponse || m.EndStream) {
			c.active.Add(-1)
		}
		c.w.Unlock()
		if r != nil {
			r.Done(m, nil, b)
		}
		if c.draining.Load() {
			// After Done: a response that opens a stream binds it
			// (Bind) before the connection is found idle.
			c.w.Lock()
			c.closeIfIdleLocked()
			c.w.Unlock()
		}
	case codec.KindHeartbeat:
		c.answerHeartbeat(m)
	}
}

// answerHeartbeat answers a server's keep-alive so the server keeps the
// shared connection open.
func (c *Conn) answerHeartbeat(m *codec.Message) {
	hb, ok := c.codec.(codec.HeartbeatReplier)
	if !ok {
		return
	}
	c.w.Lock()
	defer c.w.Unlock()
	if rep, err := codec.SafeHeartbeatReply(hb, m); err == nil && rep != nil && !c.closed {
		if out, err := codec.SafeEncode(c.codec, nil, rep); err == nil {
			c.w.AppendLocked(out)
		}
	}
}

// close fails every request in flight with err and releases the connection.
func (c *Conn) close(err error) {
	c.w.Lock()
	if c.closed {
		c.w.Unlock()
		return
	}
	c.closed = true
	waiting := c.inflight.drain()
	c.active.Store(0)
	c.w.CloseLocked()
	nc := c.nc
	c.w.Unlock()
	if nc != nil {
		nc.Close()
	}
	if errors.Is(err, ErrReset) && len(waiting) > 0 {
		c.pool.ep.fail()
	}
	c.pool.remove(c)
	for _, r := range waiting {
		r.Done(nil, err, nil)
	}
}

// Close closes the connection; requests in flight fail with ErrReset.
func (c *Conn) Close() { c.close(fmt.Errorf("%w: closed by the proxy", ErrReset)) }

var (
	// errDrained ends a drained connection; nothing is in flight on it
	// by then.
	errDrained = fmt.Errorf("%w: the endpoint was removed from the config and the connection drained", ErrReset)
	errStopped = fmt.Errorf("%w: reading the connection stopped", ErrReset)
)

// drain makes the connection take no new request and close once the
// requests in flight on it are answered (or cancelled).
func (c *Conn) drain() {
	c.w.Lock()
	c.draining.Store(true)
	c.closeIfIdleLocked()
	c.w.Unlock() // writes what is queued, then closes through Options.Idle
}

// closeIfIdleLocked marks a draining connection with nothing in flight for
// closing: the writer closes it once its queue is written (Options.Idle),
// and the reader's end releases it (Stopped). One not yet dialled is
// closed by dial. w's lock is held.
func (c *Conn) closeIfIdleLocked() {
	if c.draining.Load() && !c.closed && c.active.Load() == 0 {
		c.closing = true
	}
}
