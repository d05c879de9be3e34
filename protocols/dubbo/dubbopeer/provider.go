package dubbopeer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// Request is one call a Provider received.
type Request struct {
	Interface string
	Version   string
	Method    string
	Args      []any
	// Attachments as the library reads them: string values only, plus
	// "dubbo" holding the body's Dubbo version.
	Attachments map[string]string
	// Oneway is true when the caller expects no response.
	Oneway bool
}

// Handler serves calls. Its result is the response value. An error that is a
// *StatusError answers with that status and message; any other error is a
// service exception (status 20 with an exception, as a Java service throwing).
// The context ends when the provider closes. Handlers run concurrently.
type Handler func(ctx context.Context, req *Request) (any, error)

// Provider serves Dubbo calls on a listener.
type Provider struct {
	name    string
	handler Handler
	ln      net.Listener
	// static, when set, is the pre-encoded answer to every call (id 0).
	static []byte
	ctx    context.Context
	cancel context.CancelFunc
	calls  atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Serve listens on addr (use "127.0.0.1:0" for a free port) and serves
// calls with handler, as ServeListener does.
func Serve(addr, name string, handler Handler) (*Provider, error) {
	if handler == nil {
		return nil, errors.New("dubbopeer: Serve needs a handler")
	}
	ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	return ServeListener(ln, name, handler), nil
}

// ServeListener serves calls with handler on every connection ln accepts
// (a TLS listener, say). Every response carries the attachment
// "provider: <name>", so a caller can tell which provider answered. The
// provider owns ln: Close closes it. A nil handler panics.
func ServeListener(ln net.Listener, name string, handler Handler) *Provider {
	if handler == nil {
		panic("dubbopeer: ServeListener needs a handler")
	}
	return start(ln, &Provider{name: name, handler: handler})
}

// ServeStatic is a provider for load tests: it answers every two-way call
// with value, encoded once, without decoding the request body, so the cost
// measured is the caller's and the proxy's rather than the provider's.
func ServeStatic(addr, name string, value any) (*Provider, error) {
	p := &Provider{name: name}
	var err error
	if p.static, err = p.encodeResponse(0, value, nil); err != nil {
		return nil, err
	}
	ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	return start(ln, p), nil
}

func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dubbopeer: %w", err)
	}
	return ln, nil
}

// start serves p on ln.
func start(ln net.Listener, p *Provider) *Provider {
	p.ln = ln
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.conns = map[net.Conn]struct{}{}
	p.wg.Add(1)
	go p.accept()
	return p
}

// Addr is the address the provider listens on.
func (p *Provider) Addr() string { return p.ln.Addr().String() }

// Name is the provider's name.
func (p *Provider) Name() string { return p.name }

// Calls counts the calls (two-way and oneway) handed to the handler so far.
func (p *Provider) Calls() int64 { return p.calls.Load() }

// Close stops the listener, closes every connection and waits for the
// handlers to return.
func (p *Provider) Close() error {
	p.mu.Lock()
	p.closed = true
	err := p.ln.Close()
	for nc := range p.conns {
		nc.Close()
	}
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	return err
}

func (p *Provider) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			nc.Close()
			return
		}
		p.conns[nc] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serveConn(nc)
	}
}

func (p *Provider) serveConn(nc net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, nc)
		p.mu.Unlock()
		nc.Close()
	}()
	fr := newFrameReader(nc)
	w := newFrameWriter(nc)
	for {
		h, _, err := fr.next()
		if err != nil {
			return
		}
		if err := p.handleFrame(fr, w, h); err != nil {
			return
		}
	}
}

// handleFrame answers heartbeats at once and starts a goroutine per call.
func (p *Provider) handleFrame(fr *frameReader, w *frameWriter, h hessian.DubboHeader) error {
	if h.Type&hessian.PackageRequest == 0 {
		return nil // a response (to nothing we sent): ignore it
	}
	twoWay := h.Type&hessian.PackageRequest_TwoWay != 0
	if h.Type&hessian.PackageHeartbeat != 0 {
		if !twoWay {
			return nil
		}
		resp, err := heartbeatResponse(h.ID)
		if err != nil {
			return err
		}
		return w.write(resp, nil)
	}
	if p.static != nil {
		p.calls.Add(1)
		if !twoWay {
			return nil
		}
		var hdr [headerLen]byte
		copy(hdr[:], p.static[:headerLen])
		binary.BigEndian.PutUint64(hdr[4:], uint64(h.ID))
		return w.write(hdr[:], p.static[headerLen:])
	}
	req, err := readRequest(fr)
	if err != nil {
		if !twoWay {
			return nil
		}
		// The body was read whole, so the stream is still in step: answer
		// this call and keep serving the connection.
		return p.respond(w, h.ID, nil, &StatusError{Status: StatusBadRequest, Message: err.Error()})
	}
	req.Oneway = !twoWay
	p.calls.Add(1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		v, err := p.handler(p.ctx, req)
		if twoWay {
			_ = p.respond(w, h.ID, v, err) // a write error closes the connection
		}
	}()
	return nil
}

// readRequest decodes a request body with the library's (strict) decoder.
func readRequest(fr *frameReader) (*Request, error) {
	parts := make([]any, 7)
	if err := fr.readBody(parts); err != nil {
		return nil, err
	}
	req := &Request{}
	var ok [5]bool
	req.Interface, ok[0] = parts[1].(string)
	req.Version, ok[1] = parts[2].(string)
	req.Method, ok[2] = parts[3].(string)
	req.Args, ok[3] = parts[5].([]any)
	req.Attachments, ok[4] = parts[6].(map[string]string)
	for i, part := range [...]int{1, 2, 3, 5, 6} {
		if !ok[i] {
			return nil, fmt.Errorf("dubbopeer: request body part %d has an unexpected type %T", part, parts[part])
		}
	}
	return req, nil
}

// respond writes the answer to one two-way call.
func (p *Provider) respond(w *frameWriter, id int64, value any, err error) error {
	frame, encErr := p.encodeResponse(id, value, err)
	if encErr != nil {
		// The value cannot be written (a Go type hessian2 cannot express):
		// tell the caller rather than leave it waiting.
		frame, encErr = p.encodeResponse(id, nil, &StatusError{Status: StatusServiceError, Message: encErr.Error()})
		if encErr != nil {
			return encErr
		}
	}
	return w.write(frame, nil)
}

// encodeResponse encodes the answer to call id.
func (p *Provider) encodeResponse(id int64, value any, err error) ([]byte, error) {
	h := hessian.DubboHeader{Type: hessian.PackageResponse, ID: id, ResponseStatus: StatusOK}
	atts := map[string]string{hessian.DUBBO_VERSION_KEY: dubboVersion, providerKey: p.name}
	var body any = hessian.NewResponse(value, nil, atts)
	var se *StatusError
	switch {
	case errors.As(err, &se):
		h.ResponseStatus = se.Status
		body = hessian.NewResponse(nil, errors.New(se.Message), nil)
	case err != nil:
		body = hessian.NewResponse(nil, err, atts)
	}
	return encode(hessian.Service{}, h, body)
}

// ProviderName returns the provider attachment of a response's attachments:
// the name of the Provider that answered.
func ProviderName(attachments map[string]string) string { return attachments[providerKey] }
