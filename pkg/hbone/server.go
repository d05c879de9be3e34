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
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rosetta-mesh/rosetta/pkg/config"
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
}

// OpenFunc decides where a stream goes. It returns serve, which takes the
// stream once it is answered 200 (serve must not block: the stream is
// served on goroutines of the caller's), or a refusal reason (one of the
// Refused constants; the stream is then answered 503).
type OpenFunc func(Request) (serve func(net.Conn), refused string)

// Server terminates HBONE connections. Set its fields, then call Serve;
// Shutdown ends it. It runs the TLS handshakes itself (bounded, counted,
// the caller's identity read once per connection) and hands the
// connections that negotiated h2 to net/http's HTTP/2 server.
type Server struct {
	// TLS is the server's config; ServerTLS makes it from an Istio mTLS
	// server config. It must verify client certificates.
	TLS     *tls.Config
	Open    OpenFunc
	Limits  Limits
	Metrics *Metrics
	Log     *slog.Logger

	once sync.Once
	hs   *http.Server
	// ready hands hs the connections whose handshake succeeded.
	ready *handshaken

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{} // by their TCP connection, handshakes included
	shutdown bool
	wg       sync.WaitGroup
}

// peer is what a connection's requests know of the caller.
type peer struct {
	principal string
	remote    net.Addr
}

type peerKey struct{}

func (s *Server) init() {
	s.once.Do(func() {
		if s.Log == nil {
			s.Log = slog.Default()
		}
		if s.Metrics == nil {
			s.Metrics = NewMetrics(prometheus.NewRegistry())
		}
		lim := s.Limits
		var protocols http.Protocols
		protocols.SetHTTP2(true)
		s.hs = &http.Server{
			Handler:        http.HandlerFunc(s.handle),
			Protocols:      &protocols,
			MaxHeaderBytes: lim.MaxHeaderBytes,
			IdleTimeout:    lim.IdleTimeout,
			HTTP2: &http.HTTP2Config{
				MaxConcurrentStreams:          int(lim.MaxConcurrentStreams),
				SendPingTimeout:               lim.ReadIdleTimeout,
				PingTimeout:                   lim.PingTimeout,
				WriteByteTimeout:              lim.WriteTimeout,
				MaxReceiveBufferPerStream:     int(lim.StreamWindow),
				MaxReceiveBufferPerConnection: int(lim.ConnectionWindow),
			},
			ErrorLog: slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug),
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				p := peer{remote: c.RemoteAddr()}
				if tc, ok := c.(*tls.Conn); ok {
					if id, ok := identity.PeerID(tc.ConnectionState()); ok {
						p.principal = id.Principal()
					}
				}
				return context.WithValue(ctx, peerKey{}, p)
			},
			ConnState: func(c net.Conn, st http.ConnState) {
				if tc, ok := c.(*tls.Conn); ok && (st == http.StateClosed || st == http.StateHijacked) {
					s.untrack(tc.NetConn())
				}
			},
		}
		s.ready = &handshaken{conns: make(chan net.Conn), closed: make(chan struct{})}
		s.conns = map[net.Conn]struct{}{}
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
	s.ready.addr = ln.Addr()
	s.mu.Unlock()
	go func() { _ = s.hs.Serve(s.ready) }()
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
		go s.handshake(nc)
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
	s.conns[nc] = struct{}{}
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

// handshake runs a connection's TLS handshake on a goroutine of its own,
// so a slow client never holds up accepting, and hands it to the HTTP/2
// server when it negotiated h2.
func (s *Server) handshake(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(s.Limits.HandshakeTimeout))
	tc := tls.Server(nc, s.TLS)
	err := tc.Handshake()
	if err == nil && tc.ConnectionState().NegotiatedProtocol != ALPN {
		err = errors.New("the client did not negotiate ALPN h2")
	}
	if err != nil {
		if !s.closing() { // Shutdown closes the handshakes it finds
			s.Metrics.handshakes.Inc()
			s.Log.Debug("HBONE handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		}
		s.untrack(nc)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	if !s.ready.hand(tc) {
		s.untrack(nc) // shutting down
	}
}

// handshaken is the listener the HTTP/2 server accepts from: the
// connections whose handshake is done.
type handshaken struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func (l *handshaken) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handshaken) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handshaken) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handshaken) Addr() net.Addr { return l.addr }

// handle answers one request of an HBONE connection. A refusal ends only
// its stream: the connection keeps serving the others.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	p, _ := r.Context().Value(peerKey{}).(peer)
	if r.Method != http.MethodConnect {
		w.Header().Set("Allow", http.MethodConnect)
		s.refuse(w, http.StatusMethodNotAllowed, RefusedMethod)
		return
	}
	dest, err := config.ParseAuthority(r.Host)
	if err != nil {
		s.refuse(w, http.StatusBadRequest, RefusedBadAuthority)
		return
	}
	serve, reason := s.Open(Request{Destination: dest, Principal: p.principal, Remote: p.remote})
	if serve == nil {
		// 503 for a destination no listener serves, as Istio's HBONE
		// terminators answer a CONNECT they cannot take to a destination:
		// ztunnel's inbound answers 503 when it cannot resolve the target,
		// and an Envoy waypoint's CONNECT route goes to its main_internal
		// listener, which has no filter chain for such a destination, so
		// the router's upstream fails, which it answers with 503.
		s.refuse(w, http.StatusServiceUnavailable, reason)
		return
	}
	st := newStream(w, r, dest, p.remote, s.Limits.WriteTimeout)
	defer st.finish()
	w.WriteHeader(http.StatusOK)
	if err := st.rc.Flush(); err != nil {
		return
	}
	s.Metrics.accepted.Inc()
	go st.readBody()
	serve(st)
	st.sendLoop()
}

func (s *Server) refuse(w http.ResponseWriter, status int, reason string) {
	s.Metrics.refused.WithLabelValues(reason).Inc()
	w.WriteHeader(status)
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
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	err := s.hs.Shutdown(ctx) // GOAWAY; returns once its connections are gone
	if err != nil {
		_ = s.hs.Close()
	}
	// What is left was never served: handshakes, and a connection handed
	// over as the server stopped.
	s.ready.Close()
	s.mu.Lock()
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}
