package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// listener accepts connections for one Rosetta listener. One without an
// address has no socket (ln is nil): it serves only the HBONE streams to
// its authorities.
type listener struct {
	p    *Proxy
	name string
	addr string
	ln   net.Listener
	cfg  atomic.Pointer[listenerConfig]

	mu       sync.Mutex
	conns    map[*downConn]struct{}
	draining bool
	idle     chan struct{} // closed when draining and the last connection is gone
	// handshaking counts connections accepted and not yet tracked (their
	// TLS handshake runs); with conns they make the listener's count.
	handshaking atomic.Int64
}

// listen binds lc's address, when it has one.
func listen(p *Proxy, lc *listenerConfig) (*listener, error) {
	l := &listener{p: p, name: lc.name, addr: lc.addr, conns: map[*downConn]struct{}{}, idle: make(chan struct{})}
	if lc.addr != "" {
		ln, err := net.Listen("tcp", lc.addr)
		if err != nil {
			return nil, err
		}
		l.ln = ln
	}
	l.cfg.Store(lc)
	return l, nil
}

func (l *listener) serve() {
	var delay time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay) // back off on EMFILE and the like, as net/http does
				continue
			}
			return
		}
		delay = 0
		lc := l.cfg.Load()
		if !l.admit(lc) {
			l.p.metrics.Refused(lc.statPrefix)
			nc.Close()
			continue
		}
		if lc.tls != nil {
			l.handshaking.Add(1)
			go l.secure(nc, lc)
			continue
		}
		l.serveConn(nc, "", "plaintext")
	}
}

// serveConn serves a connection whose transport is settled: principal is
// the caller's verified identity, "" for plaintext. An HBONE stream comes
// here too (transport "hbone"); it is no socket, so it is read on a
// goroutine of its own, never on an event loop.
func (l *listener) serveConn(nc net.Conn, principal, transport string) {
	dc, ok := l.track(nc, principal)
	if !ok {
		nc.Close()
		return
	}
	l.p.metrics.DownstreamAccepted(dc.lc.statPrefix, transport)
	dc.start()
}

// admit reports whether the listener has room for one more connection;
// a connection accepted past max_connections is closed at once, before it
// costs a handshake or a buffer.
func (l *listener) admit(lc *listenerConfig) bool {
	if lc.maxConns <= 0 {
		return true
	}
	l.mu.Lock()
	n := len(l.conns)
	l.mu.Unlock()
	return n+int(l.handshaking.Load()) < lc.maxConns
}

func (l *listener) track(nc net.Conn, principal string) (*downConn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.draining {
		return nil, false
	}
	dc := newDownConn(l, nc, principal)
	l.conns[dc] = struct{}{}
	l.p.metrics.DownstreamConn(l.cfg.Load().statPrefix, 1)
	dc.connectionOpened()
	return dc, true
}

func (l *listener) untrack(dc *downConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[dc]; !ok {
		return
	}
	delete(l.conns, dc)
	l.p.metrics.DownstreamConn(l.cfg.Load().statPrefix, -1)
	dc.connectionClosed()
	dc.lazyDone()
	if l.draining && len(l.conns) == 0 {
		close(l.idle)
	}
}

func (l *listener) closeListener() {
	if l.ln != nil {
		l.ln.Close()
	}
}

// drain stops accepting and asks every connection to close once its requests
// in flight are answered; after ctx ends (or grace, when positive) it closes
// what is left.
func (l *listener) drain(ctx context.Context, grace time.Duration) {
	l.closeListener()
	l.mu.Lock()
	if l.draining {
		l.mu.Unlock()
		return
	}
	l.draining = true
	conns := make([]*downConn, 0, len(l.conns))
	for dc := range l.conns {
		conns = append(conns, dc)
	}
	if len(l.conns) == 0 {
		close(l.idle)
	}
	l.mu.Unlock()
	for _, dc := range conns {
		dc.startDrain()
	}
	if grace > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, grace)
		defer cancel()
	}
	select {
	case <-l.idle:
	case <-ctx.Done():
		for _, dc := range conns {
			dc.close()
		}
	}
}
