package thriftpeer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/rosetta-mesh/rosetta/protocols/thrift/internal/echo"
)

// Client is the generated Echo client on one connection. Its methods are
// safe for concurrent use, but a Thrift connection carries one call at a
// time (the library's client reads the reply before the next call), so
// concurrent calls take turns: open one Client per goroutine for
// parallelism.
type Client struct {
	mu     sync.Mutex
	sock   *thrift.TSocket
	std    *thrift.TStandardClient
	gen    *echo.EchoClient
	broken error
}

// Dial connects a client speaking format f to addr.
func Dial(addr string, f Format) (*Client, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	cfg := f.config()
	cfg.ConnectTimeout, cfg.SocketTimeout = 5*time.Second, 30*time.Second
	sock := thrift.NewTSocketConf(addr, cfg)
	if err := sock.Open(); err != nil {
		return nil, fmt.Errorf("thriftpeer: dial %s: %w", addr, err)
	}
	tf, pf := f.factories(cfg)
	trans, err := tf.GetTransport(sock)
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("thriftpeer: dial %s: %w", addr, err)
	}
	prot := pf.GetProtocol(trans)
	std := thrift.NewTStandardClient(prot, prot)
	return &Client{sock: sock, std: std, gen: echo.NewEchoClient(std)}, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = errors.New("thriftpeer: client closed")
	}
	return c.sock.Close()
}

// Ping calls ping(msg); a server answers "<name>: pong <msg>".
func (c *Client) Ping(ctx context.Context, msg string) (string, error) {
	var out string
	err := c.do(func() (err error) {
		out, err = c.gen.Ping(ctx, msg)
		return err
	})
	return out, err
}

// Echo calls echo with a payload of text and blob and returns what came
// back; a server answers with the text "<name>: <text>" and the same blob.
// The text "oops" makes the server throw its declared exception, returned
// as *Exception.
func (c *Client) Echo(ctx context.Context, text string, blob []byte) (string, []byte, error) {
	var out *echo.Payload
	err := c.do(func() (err error) {
		out, err = c.gen.Echo(ctx, &echo.Payload{Text: text, Blob: blob})
		return err
	})
	var oops *echo.Oops
	if errors.As(err, &oops) {
		return "", nil, &Exception{Why: oops.GetWhy()}
	}
	if err != nil {
		return "", nil, err
	}
	return out.GetText(), out.GetBlob(), nil
}

// Fire sends the oneway call fire(x). Go's library writes it as a CALL
// message that gets no reply (see protocols/thrift/README.md).
func (c *Client) Fire(ctx context.Context, x string) error {
	return c.do(func() error { return c.gen.Fire(ctx, x) })
}

// Call calls any method name with ping's argument and result shapes, for a
// method the service (or a proxy's routes) does not know.
func (c *Client) Call(ctx context.Context, method, msg string) (string, error) {
	res := echo.NewEchoPingResult()
	err := c.do(func() error {
		_, err := c.std.Call(ctx, method, &echo.EchoPingArgs{Msg: msg}, res)
		return err
	})
	return res.GetSuccess(), err
}

// do runs one call with the connection to itself. A transport or protocol
// error leaves the connection at an unknown point of a frame, so it fails
// later calls.
func (c *Client) do(call func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return c.broken
	}
	err := call()
	var pe thrift.TProtocolException // transport exceptions are protocol exceptions too
	if errors.As(err, &pe) {
		c.broken = fmt.Errorf("thriftpeer: connection unusable after: %w", err)
		c.sock.Close()
	}
	return err
}
