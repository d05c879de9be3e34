// Package hbone terminates HBONE, the tunnel Istio's ambient mode carries
// connections in: HTTP/2 CONNECT inside Istio mutual TLS (ALPN "h2"), on
// port 15008 by convention. ztunnel opens one CONNECT stream per
// connection a workload makes, whose :authority is the destination the
// workload dialled ("10.96.0.12:20880", a Service's ClusterIP and port),
// and pools the streams of many connections on few HTTP/2 connections.
//
// The Server verifies the caller's certificate, reads its SPIFFE identity,
// and asks its Open function where each stream goes; an accepted stream is
// answered 200 and handed over as a net.Conn (a Stream), which the proxy
// serves as it serves a TCP connection of the listener that owns the
// destination.
package hbone

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// Request is a CONNECT stream the server was asked to open.
type Request struct {
	// Destination is the CONNECT's :authority: the address the caller
	// dialled.
	Destination netip.AddrPort
	// Principal is the caller's verified identity as authorization names
	// it ("cluster.local/ns/shop/sa/frontend"); "" when its certificate
	// carries no SPIFFE ID.
	Principal string
	// Remote is the caller's end of the HTTP/2 connection.
	Remote net.Addr
	// Source is the client whose connection the caller tunnels, as the
	// CONNECT's Forwarded header names it (for=, RFC 7239; ztunnel sends
	// the client's address there); invalid when the header names none.
	// It is the caller's claim, checked only by its certificate.
	Source netip.Addr
}

// OpenFunc decides where a stream goes. It returns serve, which takes the
// stream once it is answered 200 (serve must not block: the stream is
// served on goroutines of the caller's), or a refusal reason (one of the
// Refused constants; the stream is then answered 503).
type OpenFunc func(Request) (serve func(net.Conn), refused string)

// Server terminates HBONE connections. Set its fields, then call Serve;
// Shutdown ends it. It runs the TLS handshakes itself (bounded, counted,
// the caller's identity read once per connection) and serves the
// connections that negotiated h2 with a CONNECT-only HTTP/2 server of its
// own (conn), built on golang.org/x/net/http2's framer and HPACK.
type Server struct {
	// TLS is the server's config; ServerTLS makes it from an Istio mTLS
	// server config. It must verify client certificates.
	TLS     *tls.Config
	Open    OpenFunc
	Limits  Limits
	Metrics *Metrics
	Log     *slog.Logger

	once sync.Once

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]*conn // by their TCP connection; nil while it shakes hands
	shutdown bool
	wg       sync.WaitGroup
}

// peer is what a connection's requests know of the caller.
type peer struct {
	principal string
	remote    net.Addr
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.Log == nil {
			s.Log = slog.Default()
		}
		if s.Metrics == nil {
			s.Metrics = NewMetrics(prometheus.NewRegistry())
		}
		s.conns = map[net.Conn]*conn{}
	})
}

// ErrServerClosed is Serve's answer after Shutdown.
var ErrServerClosed = errors.New("hbone: server closed")

// Serve accepts HBONE connections on ln until Shutdown (then it returns
// ErrServerClosed) or ln fails.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing() {
				return ErrServerClosed
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay) // back off on EMFILE and the like
				continue
			}
			return err
		}
		delay = 0
		if !s.track(nc) {
			s.Metrics.connsRefused.Inc()
			nc.Close()
			continue
		}
		go s.serveConn(nc)
	}
}

func (s *Server) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdown
}

// track counts a new connection, false when the server is at its maximum
// or shutting down.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown || s.Limits.MaxConnections > 0 && len(s.conns) >= s.Limits.MaxConnections {
		return false
	}
	s.conns[nc] = nil
	s.wg.Add(1)
	s.Metrics.conns.Inc()
	return true
}

// untrack forgets a connection that ended, once.
func (s *Server) untrack(nc net.Conn) {
	nc.Close()
	s.mu.Lock()
	_, ok := s.conns[nc]
	delete(s.conns, nc)
	s.mu.Unlock()
	if ok {
		s.Metrics.conns.Dec()
		s.wg.Done()
	}
}

// serveConn runs a connection's TLS handshake and, when it negotiated h2,
// reads its frames, on a goroutine of the connection's own, so a slow
// client never holds up accepting.
func (s *Server) serveConn(nc net.Conn) {
	defer s.untrack(nc)
	c, ok := s.handshake(nc)
	if ok {
		c.serve()
	}
}

// handshake runs the TLS handshake and registers the connection, false
// when it failed or the server is shutting down.
func (s *Server) handshake(nc net.Conn) (*conn, bool) {
	lim := s.Limits.withDefaults()
	sk := newSock(nc, lim.WriteTimeout)
	if lim.HandshakeTimeout > 0 {
		_ = nc.SetReadDeadline(time.Now().Add(lim.HandshakeTimeout))
	}
	tc := tls.Server(sk, s.TLS)
	err := tc.Handshake()
	if err == nil && tc.ConnectionState().NegotiatedProtocol != ALPN {
		err = errors.New("the client did not negotiate ALPN h2")
	}
	if err != nil {
		if !s.closing() { // Shutdown closes the handshakes it finds
			s.Metrics.handshakes.Inc()
			s.Log.Debug("HBONE handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		}
		return nil, false
	}
	p := peer{remote: nc.RemoteAddr()}
	if id, ok := identity.PeerID(tc.ConnectionState()); ok {
		p.principal = id.Principal()
	}
	c := newConn(s, nc, tc, sk, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return nil, false
	}
	s.conns[nc] = c
	return c, true
}

// Shutdown stops accepting, sends GOAWAY on every connection (its open
// streams go on; the caller opens new ones elsewhere), and waits until the
// connections have ended or ctx does, then closes what is left. The
// streams end as whoever serves them closes them: the proxy drains them
// with the listeners' connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.shutdown = true
	ln := s.ln
	var serving []*conn
	for nc, c := range s.conns {
		if c == nil {
			nc.Close() // a handshake: never served
		} else {
			serving = append(serving, c)
		}
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range serving {
		c.drain()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}
