// Package greeter runs trpc-go's helloworld Greeter service
// (trpc.test.helloworld.Greeter) on a real trpc-go server, and calls it with
// the real trpc-go client, for the tRPC demo and load commands. The service
// is described by hand, as trpc-go's generated stubs describe one, so no
// code generator is needed; requests and replies are protobuf wrapper types.
//
// Every answer names its server: SayHello answers "<name>: hello <req>",
// SayHi "<name>: hi <req>"; Echo returns its bytes unchanged.
package greeter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	_ "trpc.group/trpc-go/trpc-go" // registers the trpc protocol's codecs
	"trpc.group/trpc-go/trpc-go/client"
	"trpc.group/trpc-go/trpc-go/codec"
	"trpc.group/trpc-go/trpc-go/errs"
	"trpc.group/trpc-go/trpc-go/log"
	"trpc.group/trpc-go/trpc-go/pool/multiplexed"
	"trpc.group/trpc-go/trpc-go/server"
	"trpc.group/trpc-go/trpc-go/transport"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// The service and its functions, as tRPC's func attribute names them.
const (
	ServiceName = "trpc.test.helloworld.Greeter"
	SayHello    = "/trpc.test.helloworld.Greeter/SayHello"
	SayHi       = "/trpc.test.helloworld.Greeter/SayHi"
	Echo        = "/trpc.test.helloworld.Greeter/Echo"
)

// callerName is the caller service the clients name in their requests.
const callerName = "trpc.rosetta.demo.Caller"

// Quiet keeps trpc-go's default logger to errors: at its default level it
// writes a line for every server start and stop.
func Quiet() {
	log.SetLevel("0", log.LevelError)
}

// Server is a trpc-go server of the Greeter service on loopback.
type Server struct {
	name string
	addr string
	svc  server.Service
}

// Serve starts a server called name on listen ("127.0.0.1:0" for a free
// port) and returns once it accepts connections.
func Serve(listen, name string) (*Server, error) {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("greeter: listen %s: %w", listen, err)
	}
	addr := lis.Addr().String()
	svc := server.New(
		server.WithListener(lis),
		server.WithServiceName(ServiceName),
		server.WithProtocol("trpc"),
		server.WithNetwork("tcp"),
		server.WithAddress(addr),
		// trpc-go's standard transport: its Linux default (tnet) trips the
		// race detector inside tnet's poller.
		server.WithTransport(transport.NewServerTransport()),
	)
	s := &Server{name: name, addr: addr, svc: svc}
	if err := svc.Register(s.desc(), s); err != nil {
		lis.Close()
		return nil, fmt.Errorf("greeter: register: %w", err)
	}
	go func() { _ = svc.Serve() }()
	if err := testutil.Poll(10*time.Second, "greeter on "+addr, testutil.Dialable(addr)); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Addr is the server's address.
func (s *Server) Addr() string { return s.addr }

// Name is the name the server answers with.
func (s *Server) Name() string { return s.name }

// Close stops the server and waits until it has.
func (s *Server) Close() {
	done := make(chan struct{}, 1)
	_ = s.svc.Close(done)
	<-done
}

// handlerAPI is the handler type the service description names.
type handlerAPI interface{ Name() string }

func (s *Server) desc() *server.ServiceDesc {
	greet := func(word string) func(*wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return func(req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return wrapperspb.String(s.name + ": " + word + " " + req.GetValue()), nil
		}
	}
	return &server.ServiceDesc{
		ServiceName: ServiceName,
		HandlerType: (*handlerAPI)(nil),
		Methods: []server.Method{
			unary(SayHello, greet("hello")),
			unary(SayHi, greet("hi")),
			unary(Echo, func(req *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) { return req, nil }),
		},
	}
}

// unary describes one unary function, as a generated stub does: decode the
// request through the server's filters, then call fn.
func unary[Req any, PReq interface {
	*Req
	any
}, Rsp any](name string, fn func(PReq) (Rsp, error)) server.Method {
	return server.Method{
		Name: name,
		Func: func(_ any, ctx context.Context, f server.FilterFunc) (any, error) {
			req := PReq(new(Req))
			filters, err := f(req)
			if err != nil {
				return nil, err
			}
			return filters.Filter(ctx, req, func(ctx context.Context, r any) (any, error) {
				return fn(r.(PReq))
			})
		},
	}
}

// Client calls one address with the trpc-go client. Its calls are safe for
// concurrent use; they share one connection, multiplexed by request id.
type Client struct {
	opts []client.Option
}

// Dial returns a client of addr (a server or a proxy in front of one). It
// connects on the first call.
func Dial(addr string) *Client {
	return &Client{opts: []client.Option{
		client.WithTarget("ip://" + addr),
		client.WithProtocol("trpc"),
		client.WithTimeout(5 * time.Second),
		client.WithDisableServiceRouter(),
		client.WithCallerServiceName(callerName),
		client.WithTransport(transport.NewClientTransport()),
		client.WithMultiplexed(true),
		// A pool of its own with one connection: each Client is one
		// connection, as the load harness counts them.
		client.WithMultiplexedPool(multiplexed.New(multiplexed.WithConnectNumber(1))),
		client.WithSerializationType(codec.SerializationTypePB),
	}}
}

// Greet calls fn (SayHello, SayHi or any other name) with req.
func (c *Client) Greet(ctx context.Context, fn, req string) (string, error) {
	rsp := &wrapperspb.StringValue{}
	if err := c.invoke(ctx, fn, wrapperspb.String(req), rsp); err != nil {
		return "", err
	}
	return rsp.GetValue(), nil
}

// Echo calls Echo with b and returns what came back.
func (c *Client) Echo(ctx context.Context, b []byte) ([]byte, error) {
	rsp := &wrapperspb.BytesValue{}
	if err := c.invoke(ctx, Echo, wrapperspb.Bytes(b), rsp); err != nil {
		return nil, err
	}
	return rsp.GetValue(), nil
}

func (c *Client) invoke(ctx context.Context, fn string, req, rsp any) error {
	ctx, msg := codec.WithCloneMessage(ctx)
	defer codec.PutBackMessage(msg)
	msg.WithClientRPCName(fn)
	msg.WithCalleeServiceName(ServiceName)
	msg.WithCalleeMethod(fn[strings.LastIndexByte(fn, '/')+1:])
	return client.DefaultClient.Invoke(ctx, req, rsp, c.opts...)
}

// Answerer returns the name of the server that wrote answer, or "".
func Answerer(answer string) string {
	name, _, ok := strings.Cut(answer, ": ")
	if !ok {
		return ""
	}
	return name
}

// DescribeError says what kind of error a call got: a framework error (from
// the server's framework or a proxy's local reply) or a business error (from
// the handler), with its code and message.
func DescribeError(err error) string {
	var e *errs.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	kind := "business"
	if e.Type == errs.ErrorTypeFramework || e.Type == errs.ErrorTypeCalleeFramework {
		kind = "framework"
	}
	return fmt.Sprintf("tRPC %s error %d: %q", kind, e.Code, e.Msg)
}
