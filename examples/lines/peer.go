package lines

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
)

// This file is the protocol's reference client and server. They read lines
// with bufio, not with the codec, so the codec's tests check it against an
// independent reading of the protocol.

// Error is an ERR answer.
type Error struct{ Text string }

func (e *Error) Error() string { return "lines: ERR " + e.Text }

// Client sends requests over one connection and reads their answers in
// order. Requests may be pipelined: Send several, then Receive their
// answers. A Client is for one goroutine at a time.
type Client struct {
	nc net.Conn
	r  *bufio.Reader
}

// Dial connects a client.
func Dial(addr string) (*Client, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewClient(nc), nil
}

// NewClient is a client on a connection already made.
func NewClient(nc net.Conn) *Client {
	return &Client{nc: nc, r: bufio.NewReaderSize(nc, MaxLine)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.nc.Close() }

// Send writes one request.
func (c *Client) Send(words ...string) error {
	for _, w := range words {
		if w == "" || strings.ContainsAny(w, " \n") {
			return fmt.Errorf("lines: %q is not a word", w)
		}
	}
	if len(words) == 0 {
		return errors.New("lines: a request needs a command")
	}
	_, err := c.nc.Write([]byte(strings.Join(words, " ") + "\n"))
	return err
}

// Receive reads the next answer: its text after OK, or an *Error.
func (c *Client) Receive() (string, error) {
	line, err := readLine(c.r)
	if err != nil {
		return "", err
	}
	word, text, _ := strings.Cut(line, " ")
	switch word {
	case "OK":
		return text, nil
	case "ERR":
		return "", &Error{Text: text}
	}
	return "", fmt.Errorf("lines: answer %.20q is neither OK nor ERR", line)
}

// Call sends a request and reads its answer.
func (c *Client) Call(words ...string) (string, error) {
	if err := c.Send(words...); err != nil {
		return "", err
	}
	return c.Receive()
}

// readLine reads a line of at most MaxLine bytes and drops its '\n'.
func readLine(r *bufio.Reader) (string, error) {
	b, err := r.ReadSlice('\n')
	if err != nil {
		return "", fmt.Errorf("lines: %w", err)
	}
	return string(b[:len(b)-1]), nil
}

// Handler answers a request's words with the text of an OK answer, or an
// error whose text the ERR answer carries.
type Handler func(words []string) (string, error)

// Server answers the requests of each connection in order.
type Server struct {
	ln    net.Listener
	h     Handler
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Serve starts a server on addr ("127.0.0.1:0" for any port).
func Serve(addr string, h Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, h: h, conns: map[net.Conn]struct{}{}}
	go s.accept()
	return s, nil
}

// Addr is the server's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and closes every connection.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for nc := range s.conns {
		nc.Close()
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
	r := bufio.NewReaderSize(nc, MaxLine)
	for {
		line, err := readLine(r)
		if err != nil {
			return
		}
		answer := "OK"
		text, err := s.h(strings.Split(line, " "))
		if err != nil {
			answer, text = "ERR", err.Error()
		}
		if text != "" {
			answer += " " + strings.ReplaceAll(text, "\n", " ")
		}
		if _, err := nc.Write([]byte(answer + "\n")); err != nil {
			return
		}
	}
}
