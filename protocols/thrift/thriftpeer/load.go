package thriftpeer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/protocols/thrift/internal/echo"
)

// maxReplyFrame caps a reply's frame length: Thrift's own default
// MaxFrameSize.
const maxReplyFrame = thrift.DEFAULT_MAX_FRAME_SIZE

// loadCallTimeout fails a LoadClient call whose reply does not come.
const loadCallTimeout = 10 * time.Second

// LoadClient makes echo calls for the load harness over one framed binary
// connection, many in flight at once. The call is encoded once, by the
// generated code, and sent with a fresh seqid each time; replies are paired
// with calls by seqid, so they may come in any order. A Thrift server
// answers one connection's calls in order, a proxy that multiplexes may
// not. It checks a reply's type and length, not its fields.
type LoadClient struct {
	conn   net.Conn
	frame  []byte // the framed call; its seqid is rewritten under wmu
	seqOff int
	minLen int // a reply frame's least length: it echoes the blob

	wmu sync.Mutex

	mu      sync.Mutex
	seq     uint32
	pending map[uint32]chan error
	err     error // set once the connection failed
}

// DialLoad connects a LoadClient to a framed binary server (or a proxy in
// front of one) at addr; its calls echo a blob of payload bytes.
func DialLoad(addr string, payload int) (*LoadClient, error) {
	frame, seqOff, err := encodeEchoCall(payload)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("thriftpeer: dial %s: %w", addr, err)
	}
	c := &LoadClient{conn: conn, frame: frame, seqOff: seqOff, minLen: payload, pending: map[uint32]chan error{}}
	go c.read()
	return c, nil
}

// encodeEchoCall writes echo({blob: payload bytes}) as a framed strict
// binary CALL with seqid 0, with the generated code, and returns the offset
// of its seqid.
func encodeEchoCall(payload int) ([]byte, int, error) {
	if payload < 0 || payload > maxReplyFrame/2 {
		return nil, 0, fmt.Errorf("thriftpeer: payload of %d bytes is out of range", payload)
	}
	mem := thrift.NewTMemoryBuffer()
	cfg := &thrift.TConfiguration{}
	trans := thrift.NewTFramedTransportConf(mem, cfg)
	prot := thrift.NewTBinaryProtocolConf(trans, cfg)
	ctx := context.Background()
	args := &echo.EchoEchoArgs{Payload: &echo.Payload{Blob: bytes.Repeat([]byte{'x'}, payload)}}
	if err := prot.WriteMessageBegin(ctx, "echo", thrift.CALL, 0); err != nil {
		return nil, 0, err
	}
	if err := args.Write(ctx, prot); err != nil {
		return nil, 0, err
	}
	if err := prot.WriteMessageEnd(ctx); err != nil {
		return nil, 0, err
	}
	if err := prot.Flush(ctx); err != nil {
		return nil, 0, err
	}
	// frame length (4), version and type (4), name length (4), name.
	return mem.Bytes(), 4 + 4 + 4 + len("echo"), nil
}

// Call makes one echo call and waits for its reply. It is safe for
// concurrent use.
func (c *LoadClient) Call() error {
	ch := make(chan error, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.seq++
	id := c.seq
	c.pending[id] = ch
	c.mu.Unlock()

	c.wmu.Lock()
	binary.BigEndian.PutUint32(c.frame[c.seqOff:], id)
	_, err := c.conn.Write(c.frame)
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("thriftpeer: write: %w", err))
	}
	t := time.NewTimer(loadCallTimeout)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-t.C:
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return fmt.Errorf("thriftpeer: no reply to seqid %d within %v", id, loadCallTimeout)
	}
}

// Close closes the connection; calls in flight fail.
func (c *LoadClient) Close() error {
	err := c.conn.Close()
	c.fail(errors.New("thriftpeer: client closed"))
	return err
}

// fail ends the connection: every call in flight and every later call gets err.
func (c *LoadClient) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		c.conn.Close()
	}
	for id, ch := range c.pending {
		ch <- c.err
		delete(c.pending, id)
	}
}

func (c *LoadClient) read() {
	br := bufio.NewReaderSize(c.conn, 64<<10)
	var buf []byte
	for {
		var head [4]byte
		if _, err := io.ReadFull(br, head[:]); err != nil {
			c.fail(fmt.Errorf("thriftpeer: read: %w", err))
			return
		}
		n := binary.BigEndian.Uint32(head[:])
		if n > maxReplyFrame {
			c.fail(fmt.Errorf("thriftpeer: reply frame of %d bytes exceeds %d", n, maxReplyFrame))
			return
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			c.fail(fmt.Errorf("thriftpeer: read: %w", err))
			return
		}
		id, callErr, err := c.parseReply(buf)
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		ch, ok := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ok { // else the call timed out and left
			ch <- callErr
		}
	}
}

// parseReply reads a strict binary reply's header: its seqid, and the call's
// error when it is an exception or too short to hold the echoed blob. err
// means the stream is not what a LoadClient talks to.
func (c *LoadClient) parseReply(b []byte) (id uint32, callErr, err error) {
	if len(b) < 12 || b[0] != 0x80 || b[1] != 0x01 {
		return 0, nil, errors.New("thriftpeer: reply is not a strict binary message")
	}
	typ := thrift.TMessageType(b[3])
	nameLen := binary.BigEndian.Uint32(b[4:])
	if uint64(nameLen)+12 > uint64(len(b)) {
		return 0, nil, errors.New("thriftpeer: reply name overruns its frame")
	}
	id = binary.BigEndian.Uint32(b[8+nameLen:])
	switch {
	case typ == thrift.EXCEPTION:
		return id, readException(b), nil
	case typ != thrift.REPLY:
		return id, fmt.Errorf("thriftpeer: reply of message type %d", typ), nil
	case len(b) < c.minLen:
		return id, fmt.Errorf("thriftpeer: reply of %d bytes cannot echo %d", len(b), c.minLen), nil
	}
	return id, nil, nil
}

// readException decodes an EXCEPTION message's TApplicationException with
// the library.
func readException(msg []byte) error {
	mem := thrift.NewTMemoryBuffer()
	mem.Write(msg)
	prot := thrift.NewTBinaryProtocolConf(mem, &thrift.TConfiguration{})
	ctx := context.Background()
	if _, _, _, err := prot.ReadMessageBegin(ctx); err != nil {
		return err
	}
	ae := thrift.NewTApplicationException(thrift.UNKNOWN_APPLICATION_EXCEPTION, "")
	if err := ae.Read(ctx, prot); err != nil {
		return err
	}
	return ae
}
