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
	nc    net.Conn
	codec codec.Codec
	mu    sync.Mutex
	buf   []byte
	// failed is why the read side ended the connection, so a Send that
	// races the close reports that cause, not "use of closed network
	// connection" (a refused handshake, say).
	failed atomic.Pointer[error]
}

// DialDedicated connects to addr and delivers every frame the server sends to
// recv; recv gets (nil, err) once when the connection ends.
func DialDedicated(addr string, timeout time.Duration, p codec.Protocol, opts codec.Options, lim ReadLimits, recv func(*codec.Message, error)) (*Dedicated, error) {
	cd, err := p.New(opts, codec.PeerServer)
	if err != nil {
		return nil, err
	}
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	d := &Dedicated{nc: nc, codec: cd}
	if hs, ok := cd.(codec.Handshaker); ok {
		// Bounded as the dial is: a server that takes no bytes must not
		// hold the handler that asked for the connection.
		_ = nc.SetWriteDeadline(time.Now().Add(timeout))
		_, err := nc.Write(hs.Handshake(nil))
		_ = nc.SetWriteDeadline(time.Time{})
		if err != nil {
			nc.Close()
			return nil, err
		}
	}
	go d.read(lim, recv)
	return d, nil
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
			d.nc.Close()
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
func (d *Dedicated) Close() { d.nc.Close() }
