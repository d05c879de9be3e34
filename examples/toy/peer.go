package toy

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// Response is what a Client call returns.
type Response struct {
	Headers map[string]string
	Body    []byte
	// Status is 0 for success; for a proxy's local reply, the codec.Status plus one.
	Status byte
}

// Err returns the response's error, if it is one.
func (r *Response) Err() error {
	if r.Status == 0 {
		return nil
	}
	return fmt.Errorf("toy: status %v: %s", codec.Status(r.Status-1), r.Body)
}

// Client makes concurrent calls over one connection.
type Client struct {
	nc      net.Conn
	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan *Response
	err     error
}

// Dial connects a client.
func Dial(addr string) (*Client, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewClient(nc), nil
}

// NewClient is a client on a connection already made (a TLS one, say).
func NewClient(nc net.Conn) *Client {
	c := &Client{nc: nc, waiting: map[uint64]chan *Response{}}
	go c.read()
	return c
}

// Close closes the connection.
func (c *Client) Close() error { return c.nc.Close() }

// Call sends a request and waits for its response.
func (c *Client) Call(headers map[string]string, body []byte) (*Response, error) {
	ch := make(chan *Response, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.next++
	id := c.next
	c.waiting[id] = ch
	frame, err := AppendFrame(nil, KindRequest, id, 0, headers, body)
	if err == nil {
		_, err = c.nc.Write(frame)
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	r, ok := <-ch
	if !ok {
		return nil, c.failure()
	}
	return r, nil
}

// Send sends a oneway request.
func (c *Client) Send(headers map[string]string, body []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	frame, err := AppendFrame(nil, KindOneway, c.next, 0, headers, body)
	if err != nil {
		return err
	}
	_, err = c.nc.Write(frame)
	return err
}

func (c *Client) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) read() {
	fr := wire.NewReader(c.nc, Codec{})
	var err error
	for {
		var frame []byte
		if frame, err = fr.Next(); err != nil {
			break
		}
		var m *codec.Message
		if m, err = (Codec{}).Decode(frame); err != nil {
			break
		}
		c.deliver(m)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = errors.Join(errors.New("toy: connection closed"), err)
	for id, ch := range c.waiting {
		close(ch)
		delete(c.waiting, id)
	}
}

func (c *Client) deliver(m *codec.Message) {
	c.mu.Lock()
	ch := c.waiting[m.ID]
	delete(c.waiting, m.ID)
	c.mu.Unlock()
	if ch == nil {
		return
	}
	attrs, off, _ := readHeaders(m.Raw[headLen:], int(m.Raw[headLen-1]))
	ch <- &Response{Headers: attrs, Body: m.Raw[headLen+off:], Status: m.Raw[13]}
}

// Request is what a Server handler gets.
type Request struct {
	Headers map[string]string
	Body    []byte
	Oneway  bool
}

// Handler answers a request; a nil response sends nothing (the server then
// never answers, which tests of timeouts use).
type Handler func(*Request) *Response

// Server serves the toy protocol, each request on its own goroutine.
type Server struct {
	ln      net.Listener
	handler Handler
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

// Serve starts a server on addr ("127.0.0.1:0" for any port).
func Serve(addr string, h Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return ServeListener(ln, h), nil
}

// ServeListener serves on a listener already open (a TLS one, say).
func ServeListener(ln net.Listener, h Handler) *Server {
	s := &Server{ln: ln, handler: h, conns: map[net.Conn]struct{}{}}
	go s.accept()
	return s
}

// Addr is the server's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and closes every connection, as a crash would.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *Server) accept() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[nc] = struct{}{}
		s.mu.Unlock()
		go s.serve(nc)
	}
}

func (s *Server) serve(nc net.Conn) {
	defer nc.Close()
	var wmu sync.Mutex
	fr := wire.NewReader(nc, Codec{})
	for {
		frame, err := fr.Next()
		if err != nil {
			return
		}
		m, err := (Codec{}).Decode(frame)
		if err != nil {
			return
		}
		go func() {
			attrs, off, _ := readHeaders(m.Raw[headLen:], int(m.Raw[headLen-1]))
			r := s.handler(&Request{Headers: attrs, Body: m.Raw[headLen+off:], Oneway: m.Kind == codec.KindOneway})
			if r == nil || m.Kind == codec.KindOneway {
				return
			}
			out, err := AppendFrame(nil, KindResponse, m.ID, r.Status, r.Headers, r.Body)
			if err != nil {
				return
			}
			wmu.Lock()
			defer wmu.Unlock()
			_, _ = nc.Write(out)
		}()
	}
}
