package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/rosetta-mesh/rosetta/bench/load"
)

// The Dubbo driver's load.ConnDriver half: a client and a provider over
// connections the harness makes (TLS ones for the mutual TLS comparison),
// since dubbopeer dials and listens on TCP itself. Their frames are encoded
// once by dubbo-go-hessian2, the library dubbopeer uses: the provider answers
// every call with the same echo of the payload without decoding the
// request, as dubbopeer.ServeStatic does, and the client checks each
// answer's status and response flag, as dubbopeer's prepared calls do.

// Dubbo frame header (16 bytes): magic 0xdabb, flags (0x80 request, 0x40
// two-way, 0x20 event, low 5 bits the serialization), status, request id
// (8 bytes), body length (4 bytes).
const (
	headerLen    = 16
	flagRequest  = 0x80
	flagTwoWay   = 0x40
	flagEvent    = 0x20
	statusOK     = 20
	hessian2     = 2
	callTimeout  = 5 * time.Second
	maxBodyBytes = 8 << 20
)

// dubboFrames are the frames of echo calls with a payload of n bytes, each
// with request id 0: the request, its answer and a heartbeat's answer.
type dubboFrames struct {
	request, answer, heartbeat []byte
}

func encodeFrames(n int) (*dubboFrames, error) {
	codec := hessian.NewHessianCodec(nil)
	payload := strings.Repeat("x", n)
	var f dubboFrames
	var err error
	if f.request, err = codec.Write(
		hessian.Service{Path: echoInterface, Interface: echoInterface, Method: "echo"},
		hessian.DubboHeader{Type: hessian.PackageRequest_TwoWay, SerialID: hessian2},
		hessian.NewRequest([]any{payload}, map[string]string{})); err != nil {
		return nil, fmt.Errorf("loadtest: dubbo request: %w", err)
	}
	if f.answer, err = codec.Write(hessian.Service{},
		hessian.DubboHeader{Type: hessian.PackageResponse, SerialID: hessian2, ResponseStatus: statusOK},
		hessian.NewResponse(payload, nil, map[string]string{hessian.DUBBO_VERSION_KEY: hessian.DEFAULT_DUBBO_PROTOCOL_VERSION})); err != nil {
		return nil, fmt.Errorf("loadtest: dubbo answer: %w", err)
	}
	if f.heartbeat, err = codec.Write(hessian.Service{},
		hessian.DubboHeader{Type: hessian.PackageHeartbeat, SerialID: hessian2, ResponseStatus: statusOK}, nil); err != nil {
		return nil, fmt.Errorf("loadtest: dubbo heartbeat: %w", err)
	}
	return &f, nil
}

// withID is a copy of frame's header with request id id (as its 8 bytes
// from a header).
func withID(frame, id []byte) [headerLen]byte {
	var h [headerLen]byte
	copy(h[:], frame[:headerLen])
	copy(h[4:12], id)
	return h
}

func (dubbo) DialConn(nc net.Conn, payload int) (load.Client, error) {
	f, err := encodeFrames(payload)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := &connClient{nc: nc, frame: f.request, heartbeat: f.heartbeat, pending: map[uint64]chan error{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (dubbo) ServeListener(ln net.Listener, payload int) (func(), error) {
	f, err := encodeFrames(payload)
	if err != nil {
		return nil, err
	}
	p := &connProvider{ln: ln, frames: f, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p.stop, nil
}

// connClient makes echo calls over one connection, many in flight, paired
// with their answers by request id.
type connClient struct {
	nc net.Conn

	wmu       sync.Mutex
	frame     []byte // the request; its id is rewritten per call under wmu
	heartbeat []byte

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan error
	err     error // set once the connection is gone
	done    chan struct{}
}

var errCallTimeout = errors.New("loadtest: dubbo call timed out")

func (c *connClient) Call() error {
	ch := make(chan error, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	c.wmu.Lock()
	binary.BigEndian.PutUint64(c.frame[4:12], id)
	_, err := c.nc.Write(c.frame)
	c.wmu.Unlock()
	if err != nil {
		c.nc.Close() // the reader fails every pending call
	}
	t := time.NewTimer(callTimeout)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-t.C:
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return errCallTimeout
	}
}

func (c *connClient) Close() error {
	err := c.nc.Close()
	<-c.done
	return err
}

func (c *connClient) read() {
	defer close(c.done)
	br := bufio.NewReaderSize(c.nc, 32<<10)
	var err error
	for err == nil {
		var hdr [headerLen]byte
		var n int
		if n, err = readHeader(br, hdr[:]); err != nil {
			break
		}
		var flag []byte
		if flag, err = br.Peek(min(n, 1)); err != nil {
			break
		}
		result := answerError(hdr[:], flag)
		if _, err = br.Discard(n); err != nil {
			break
		}
		if hdr[2]&flagRequest != 0 {
			err = c.answerHeartbeat(hdr[:])
			continue
		}
		c.mu.Lock()
		ch, ok := c.pending[binary.BigEndian.Uint64(hdr[4:12])]
		delete(c.pending, binary.BigEndian.Uint64(hdr[4:12]))
		c.mu.Unlock()
		if ok {
			ch <- result
		}
	}
	c.nc.Close()
	c.mu.Lock()
	c.err = fmt.Errorf("loadtest: dubbo connection: %w", err)
	waiting := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, ch := range waiting {
		ch <- c.err
	}
}

// answerHeartbeat answers a peer's two-way heartbeat, the only request a
// consumer serves.
func (c *connClient) answerHeartbeat(hdr []byte) error {
	if hdr[2]&flagEvent == 0 || hdr[2]&flagTwoWay == 0 {
		return nil
	}
	h := withID(c.heartbeat, hdr[4:12])
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(append(h[:], c.heartbeat[headerLen:]...))
	return err
}

// answerError checks an answer: status 20 and a body that starts with the
// response flag of a value (a one-byte hessian2 int, 0x90+n), 1 or 4 (with
// attachments).
func answerError(hdr, body []byte) error {
	if hdr[3] != statusOK {
		return fmt.Errorf("loadtest: dubbo status %d", hdr[3])
	}
	if hdr[2]&flagEvent != 0 {
		return nil
	}
	if len(body) == 0 || (int32(body[0])-0x90 != hessian.RESPONSE_VALUE && int32(body[0])-0x90 != hessian.RESPONSE_VALUE_WITH_ATTACHMENTS) {
		return fmt.Errorf("loadtest: dubbo answer is not a value (flag %x)", body)
	}
	return nil
}

// readHeader reads a frame header into hdr and returns the body's length.
func readHeader(r io.Reader, hdr []byte) (int, error) {
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, err
	}
	if hdr[0] != hessian.MAGIC_HIGH || hdr[1] != hessian.MAGIC_LOW {
		return 0, fmt.Errorf("loadtest: bad dubbo magic %x", hdr[:2])
	}
	n := binary.BigEndian.Uint32(hdr[12:16])
	if n > maxBodyBytes {
		return 0, fmt.Errorf("loadtest: dubbo body of %d bytes", n)
	}
	return int(n), nil
}

// connProvider answers every two-way call with one encoded echo, and
// heartbeats with a heartbeat answer. A connection's answers are written
// when its reader has nothing more buffered, so calls that arrive together
// leave together.
type connProvider struct {
	ln     net.Listener
	frames *dubboFrames
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (p *connProvider) accept() {
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
		go p.serve(nc)
	}
}

func (p *connProvider) serve(nc net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, nc)
		p.mu.Unlock()
		nc.Close()
	}()
	br := bufio.NewReaderSize(nc, 32<<10)
	bw := bufio.NewWriterSize(nc, 32<<10)
	var hdr [headerLen]byte
	for {
		n, err := readHeader(br, hdr[:])
		if err != nil {
			return
		}
		if _, err := br.Discard(n); err != nil {
			return
		}
		if hdr[2]&flagRequest != 0 && hdr[2]&flagTwoWay != 0 {
			out := p.frames.answer
			if hdr[2]&flagEvent != 0 {
				out = p.frames.heartbeat
			}
			h := withID(out, hdr[4:12])
			_, _ = bw.Write(h[:])
			_, _ = bw.Write(out[headerLen:])
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}

func (p *connProvider) stop() {
	p.mu.Lock()
	p.closed = true
	p.ln.Close()
	for nc := range p.conns {
		nc.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
