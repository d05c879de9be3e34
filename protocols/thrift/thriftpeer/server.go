package thriftpeer

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/protocols/thrift/internal/echo"
)

// Server is the generated Echo processor in the library's TSimpleServer,
// on a loopback socket. Every answer names the server:
//
//	ping(msg)  -> "<name>: pong <msg>"
//	echo(p)    -> p with its text "<name>: <text>"; the text "oops" throws Oops
//	fire(x)    -> nothing (oneway); Fired counts them
//
// It serves the bare method names and the multiplexed ones ("Echo:ping").
type Server struct {
	name   string
	format Format
	sock   *trackingSocket
	srv    *thrift.TSimpleServer
	calls  atomic.Int64
	fired  atomic.Int64
	served chan struct{}
}

// Serve starts a server called name on addr ("127.0.0.1:0" for a free
// port) speaking format f.
func Serve(addr, name string, f Format) (*Server, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	sock, err := listen(addr, f.config())
	if err != nil {
		return nil, err
	}
	s := &Server{name: name, format: f.withDefaults(), sock: sock, served: make(chan struct{})}
	p := echo.NewEchoProcessor(handler{s})
	mp := thrift.NewTMultiplexedProcessor()
	mp.RegisterProcessor("Echo", p)
	mp.RegisterDefault(p)
	tf, pf := f.factories(f.config())
	s.srv = thrift.NewTSimpleServer4(mp, s.sock, tf, pf)
	go func() {
		defer close(s.served)
		_ = s.srv.Serve()
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.sock.ln.Addr().String() }

// Name is the name the server answers with.
func (s *Server) Name() string { return s.name }

// Format is the transport and protocol the server speaks.
func (s *Server) Format() Format { return s.format }

// Calls counts the two-way calls the server answered (ping and echo).
func (s *Server) Calls() int64 { return s.calls.Load() }

// Fired counts the oneway fire calls the server received.
func (s *Server) Fired() int64 { return s.fired.Load() }

// Close stops accepting, closes every connection and waits until the
// server's goroutines are done.
func (s *Server) Close() error {
	err := s.srv.Stop()
	<-s.served
	return err
}

// trackingSocket is a thrift.TServerTransport on a loopback listener that
// remembers the connections it accepted. TSimpleServer.Stop waits for every
// connection's goroutine, and one blocked reading an idle client (a proxy's
// pooled upstream connection) would hold it forever; Interrupt shuts the
// read side of each, so the library's loop reads EOF and ends quietly (a
// closed socket would end it too, but logged as an error).
type trackingSocket struct {
	ln      net.Listener
	cfg     *thrift.TConfiguration
	mu      sync.Mutex
	stopped bool
	conns   map[*net.TCPConn]struct{}
}

func listen(addr string, cfg *thrift.TConfiguration) (*trackingSocket, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("thriftpeer: listen %s: %w", addr, err)
	}
	return &trackingSocket{ln: ln, cfg: cfg, conns: map[*net.TCPConn]struct{}{}}, nil
}

// Listen implements thrift.TServerTransport; the socket listens from the start.
func (t *trackingSocket) Listen() error { return nil }

// Accept implements thrift.TServerTransport.
func (t *trackingSocket) Accept() (thrift.TTransport, error) {
	c, err := t.ln.Accept()
	if err != nil {
		return nil, thrift.NewTTransportExceptionFromError(err)
	}
	tc := c.(*net.TCPConn)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		tc.Close()
		return nil, thrift.NewTTransportException(thrift.NOT_OPEN, "thriftpeer: server stopped")
	}
	t.conns[tc] = struct{}{}
	return &trackedConn{TSocket: thrift.NewTSocketFromConnConf(tc, t.cfg), tcp: tc, owner: t}, nil
}

// Close implements thrift.TServerTransport.
func (t *trackingSocket) Close() error { return t.ln.Close() }

// Interrupt implements thrift.TServerTransport: it stops accepting and
// ends the reads of the accepted connections.
func (t *trackingSocket) Interrupt() error {
	err := t.ln.Close()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	for c := range t.conns {
		_ = c.CloseRead()
	}
	return err
}

// trackedConn forgets itself when the server closes it.
type trackedConn struct {
	*thrift.TSocket
	tcp   *net.TCPConn
	owner *trackingSocket
}

func (c *trackedConn) Close() error {
	c.owner.mu.Lock()
	delete(c.owner.conns, c.tcp)
	c.owner.mu.Unlock()
	return c.TSocket.Close()
}

// handler implements the generated echo.Echo interface.
type handler struct{ s *Server }

func (h handler) Ping(_ context.Context, msg string) (string, error) {
	h.s.calls.Add(1)
	return h.s.name + ": pong " + msg, nil
}

func (h handler) Fire(_ context.Context, _ string) error {
	h.s.fired.Add(1)
	return nil
}

func (h handler) Echo(_ context.Context, p *echo.Payload) (*echo.Payload, error) {
	h.s.calls.Add(1)
	if p.Text == "oops" {
		return nil, &echo.Oops{Why: h.s.name + ": oops"}
	}
	p.Text = h.s.name + ": " + p.Text
	return p, nil
}

var (
	_ thrift.TServerTransport = (*trackingSocket)(nil)
	_ echo.Echo               = handler{}
)
