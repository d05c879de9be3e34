package upstream

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

// Dedicated is an upstream connection one downstream client owns: nothing is
// rewritten and every message the server sends goes to the owner in order.
type Dedicated struct {
	ep    *Endpoint
	nc    net.Conn
	codec codec.Codec
	mu    sync.Mutex
	buf   []byte
	once  sync.Once // forgets it on the endpoint
	// failed is why the read side ended the connection, so a Send that
	// races the close reports that cause, not "use of closed network
	// connection" (a refused handshake, say).
	failed atomic.Pointer[error]
}

// DialDedicated connects to the endpoint (over its TLS, if it has one) and
// delivers every frame the server sends to recv; recv gets (nil, err) once
// when the connection ends. An endpoint the config removed is refused: the
// client's transaction, blocking command or subscription goes elsewhere.
// One opened before the removal stays open, as a request in flight does,
// until its client ends it or the endpoint's drain time is over.
func (e *Endpoint) DialDedicated(timeout time.Duration, p codec.Protocol, opts codec.Options, recv func(*codec.Message, error)) (*Dedicated, error) {
	if e.removed.Load() {
		return nil, errRemoved
	}
	cd, err := p.New(opts, codec.PeerServer)
	if err != nil {
		return nil, err
	}
	nc, err := net.DialTimeout("tcp", e.Addr, timeout)
	if err == nil && e.tls != nil {
		nc, err = e.tls.handshake(nc, timeout)
	}
	if err != nil {
		return nil, err
	}
	d := &Dedicated{ep: e, nc: nc, codec: cd}
	if !e.addDedicated(d) {
		nc.Close()
		return nil, errRemoved
	}
	if hs, ok := cd.(codec.Handshaker); ok {
		// Bounded as the dial is: a server that takes no bytes must not
		// hold the handler that asked for the connection.
		_ = nc.SetWriteDeadline(time.Now().Add(timeout))
		_, err := nc.Write(hs.Handshake(nil))
		_ = nc.SetWriteDeadline(time.Time{})
		if err != nil {
			d.Close()
			return nil, err
		}
	}
	go d.read(e.read, recv)
	return d, nil
}

// addDedicated records d; false when the endpoint was removed meanwhile.
func (e *Endpoint) addDedicated(d *Dedicated) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed.Load() {
		return false
	}
	if e.dedicated == nil {
		e.dedicated = map[*Dedicated]struct{}{}
	}
	e.dedicated[d] = struct{}{}
	return true
}

func (d *Dedicated) read(lim ReadLimits, recv func(*codec.Message, error)) {
	fr := netloop.NewGoReader(d.nc, d.codec, lim.Limits)
	defer fr.Release()
	for {
		frame, err := fr.Next()
		var m *codec.Message
		if err == nil {
			m, err = codec.SafeDecode(d.codec, frame)
		}
		if err != nil {
			lim.overLimit(err)
			d.failed.Store(&err)
			d.Close()
			recv(nil, err)
			return
		}
		recv(m, nil)
	}
}

// Send writes req as it is.
func (d *Dedicated) Send(req *codec.Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	out, err := d.codec.Encode(d.buf[:0], req)
	if err != nil {
		return err
	}
	d.buf = out
	if _, err = d.nc.Write(out); err != nil {
		if why := d.failed.Load(); why != nil {
			return *why
		}
	}
	return err
}

// Close closes the connection.
func (d *Dedicated) Close() {
	d.nc.Close()
	d.once.Do(d.forget)
}

// forget drops d from its endpoint, which a removed endpoint waits for.
func (d *Dedicated) forget() {
	e := d.ep
	e.mu.Lock()
	delete(e.dedicated, d)
	e.mu.Unlock()
	if e.removed.Load() {
		e.releaseIfIdle()
	}
}
