package dubbopeer

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"sync"
	"sync/atomic"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// Consumer makes concurrent calls over one connection, pairing responses
// with calls by request id.
type Consumer struct {
	nc     net.Conn
	w      *frameWriter
	nextID atomic.Int64

	mu      sync.Mutex
	pending map[int64]*call
	err     error // set once the connection is gone
	done    chan struct{}
}

// reply is what the reader hands a waiting call.
type reply struct {
	value       any
	attachments map[string]string
	err         error
}

type call struct {
	// full asks for the whole response decoded; without it a successful
	// response is only checked (the Prepared fast path).
	full bool
	ch   chan reply
}

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan reply, 1)} }}

// Dial connects a consumer to a provider or a proxy over TCP.
func Dial(addr string) (*Consumer, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dubbopeer: %w", err)
	}
	return NewConsumer(nc), nil
}

// NewConsumer makes calls over nc, a connection the caller made (a TLS one,
// say) to a provider or a proxy. The consumer owns nc: Close closes it.
func NewConsumer(nc net.Conn) *Consumer {
	c := &Consumer{nc: nc, w: newFrameWriter(nc), pending: map[int64]*call{}, done: make(chan struct{})}
	go c.read()
	return c
}

// Close closes the connection; calls in flight fail.
func (c *Consumer) Close() error {
	err := c.nc.Close()
	<-c.done
	return err
}

// Call invokes method on svc and waits for the result, the response's
// attachments, or an error: a *StatusError for a non-20 status, an
// *Exception for a service exception, ctx's error, or a connection error.
func (c *Consumer) Call(ctx context.Context, svc Service, method string, args []any, attachments map[string]string) (any, map[string]string, error) {
	id := c.nextID.Add(1)
	frame, err := encodeRequest(svc, method, args, attachments, id, true)
	if err != nil {
		return nil, nil, err
	}
	r := c.roundTrip(ctx, id, frame, nil, true)
	return r.value, r.attachments, r.err
}

// Send makes a oneway call: it returns once the request is queued.
func (c *Consumer) Send(svc Service, method string, args []any, attachments map[string]string) error {
	frame, err := encodeRequest(svc, method, args, attachments, c.nextID.Add(1), false)
	if err != nil {
		return err
	}
	return c.w.write(frame, nil)
}

// Ping sends a heartbeat and waits for its answer.
func (c *Consumer) Ping(ctx context.Context) error {
	id := c.nextID.Add(1)
	frame, err := encode(hessian.Service{}, hessian.DubboHeader{Type: hessian.PackageHeartbeat, ID: id}, []any{})
	if err != nil {
		return err
	}
	return c.roundTrip(ctx, id, frame, nil, true).err
}

// Prepared is a request encoded once and sent many times; only its request
// id changes. It is the cheap path for load generation.
type Prepared struct {
	frame []byte
}

// Prepare encodes a two-way call for CallPrepared.
func Prepare(svc Service, method string, args []any, attachments map[string]string) (*Prepared, error) {
	frame, err := encodeRequest(svc, method, args, attachments, 0, true)
	if err != nil {
		return nil, err
	}
	return &Prepared{frame: frame}, nil
}

// CallPrepared sends p and waits for the response. A successful response is
// checked (status 20, a value or null) but not decoded; failures are decoded
// and returned as by Call.
func (c *Consumer) CallPrepared(ctx context.Context, p *Prepared) error {
	id := c.nextID.Add(1)
	var hdr [headerLen]byte
	copy(hdr[:], p.frame[:headerLen])
	binary.BigEndian.PutUint64(hdr[4:], uint64(id))
	return c.roundTrip(ctx, id, hdr[:], p.frame[headerLen:], false).err
}

func encodeRequest(svc Service, method string, args []any, attachments map[string]string, id int64, twoWay bool) ([]byte, error) {
	if args == nil {
		args = []any{}
	}
	// The library writes service fields into the attachments map; copy it so
	// a caller may share one map between concurrent calls.
	atts := make(map[string]string, len(attachments)+5)
	maps.Copy(atts, attachments)
	typ := hessian.PackageRequest
	if twoWay {
		typ = hessian.PackageRequest_TwoWay
	}
	s := hessian.Service{Path: svc.Interface, Interface: svc.Interface, Group: svc.Group, Version: svc.Version, Method: method, Timeout: svc.Timeout}
	return encode(s, hessian.DubboHeader{Type: typ, ID: id}, hessian.NewRequest(args, atts))
}

// roundTrip registers id, writes the frame (head then tail) and waits.
func (c *Consumer) roundTrip(ctx context.Context, id int64, head, tail []byte, full bool) reply {
	cl := callPool.Get().(*call)
	cl.full = full
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		callPool.Put(cl)
		return reply{err: err}
	}
	c.pending[id] = cl
	c.mu.Unlock()
	if err := c.w.write(head, tail); err != nil {
		c.forget(id, cl)
		return reply{err: fmt.Errorf("dubbopeer: write: %w", err)}
	}
	select {
	case r := <-cl.ch:
		callPool.Put(cl)
		return r
	case <-ctx.Done():
		c.forget(id, cl)
		return reply{err: ctx.Err()}
	}
}

// forget abandons a call. If the reader already took it, its reply is on the
// way and must be drained before the call is reused.
func (c *Consumer) forget(id int64, cl *call) {
	c.mu.Lock()
	_, mine := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if !mine {
		<-cl.ch
	}
	callPool.Put(cl)
}

func (c *Consumer) read() {
	defer close(c.done)
	fr := newFrameReader(c.nc)
	var err error
	for err == nil {
		var h hessian.DubboHeader
		var body []byte
		if h, body, err = fr.next(); err == nil {
			err = c.handle(fr, h, body)
		}
	}
	c.nc.Close()
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %v", errClosed, err)
	waiting := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, cl := range waiting {
		cl.ch <- reply{err: c.err}
	}
}

// handle acts on one frame from the peer.
func (c *Consumer) handle(fr *frameReader, h hessian.DubboHeader, body []byte) error {
	if h.Type&hessian.PackageRequest != 0 {
		// A peer may probe the consumer with heartbeats; anything else a
		// consumer does not serve.
		if h.Type&hessian.PackageHeartbeat != 0 && h.Type&hessian.PackageRequest_TwoWay != 0 {
			resp, err := heartbeatResponse(h.ID)
			if err != nil {
				return err
			}
			return c.w.write(resp, nil)
		}
		return nil
	}
	c.mu.Lock()
	cl, ok := c.pending[h.ID]
	delete(c.pending, h.ID)
	c.mu.Unlock()
	if !ok {
		return nil // the caller gave up on it
	}
	cl.ch <- decodeResponse(fr, h, body, cl.full)
	return nil
}

func decodeResponse(fr *frameReader, h hessian.DubboHeader, body []byte, full bool) reply {
	switch {
	case h.ResponseStatus != StatusOK:
		return reply{err: &StatusError{Status: h.ResponseStatus, Message: errorMessage(body)}}
	case h.Type&hessian.PackageHeartbeat != 0:
		return reply{}
	case !full && len(body) > 0 && successFlag(body[0]):
		return reply{}
	}
	var resp hessian.Response
	if err := fr.readBody(&resp); err != nil {
		return reply{err: err}
	}
	if resp.Exception != nil {
		return reply{attachments: resp.Attachments, err: &Exception{Message: resp.Exception.Error()}}
	}
	return reply{value: resp.RspObj, attachments: resp.Attachments}
}

// successFlag reports whether b is the response flag (a one-byte hessian2
// int, 0x90+n) of a value or null response: 1, 2, 4 or 5.
func successFlag(b byte) bool {
	switch int32(b) - 0x90 {
	case hessian.RESPONSE_VALUE, hessian.RESPONSE_NULL_VALUE, hessian.RESPONSE_VALUE_WITH_ATTACHMENTS, hessian.RESPONSE_NULL_VALUE_WITH_ATTACHMENTS:
		return true
	}
	return false
}
