package trpc_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	trpc "trpc.group/trpc-go/trpc-go"
	"trpc.group/trpc-go/trpc-go/client"
	"trpc.group/trpc-go/trpc-go/codec"
	"trpc.group/trpc-go/trpc-go/errs"
	"trpc.group/trpc-go/trpc-go/server"
	"trpc.group/trpc-go/trpc-go/stream"
	"trpc.group/trpc-go/trpc-go/transport"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// The test service: one unary method and one bidirectional stream, described
// by hand the way trpc-go's generated stubs describe a service, so the tests
// need no code generator.
const (
	serviceName = "trpc.rosetta.test.Greeter"
	sayHello    = "/trpc.rosetta.test.Greeter/SayHello"
	failHello   = "/trpc.rosetta.test.Greeter/FailHello"
	chat        = "/trpc.rosetta.test.Greeter/Chat"
)

// seen records "<server>: <request>" for every SayHello a server handled,
// so a test can see oneway calls arrive.
var seen sync.Map

// greeter answers SayHello with "<name>: hello <req>" and echoes stream
// messages with the same prefix, so a test can tell which server answered.
type greeter struct{ name string }

type greeterAPI interface{ Name() string }

// Name implements greeterAPI.
func (g *greeter) Name() string { return g.name }

func unaryMethod(name string, fn func(g *greeter, ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error)) server.Method {
	return server.Method{
		Name: name,
		Func: func(svr interface{}, ctx context.Context, f server.FilterFunc) (interface{}, error) {
			req := &wrapperspb.StringValue{}
			filters, err := f(req)
			if err != nil {
				return nil, err
			}
			return filters.Filter(ctx, req, func(ctx context.Context, r interface{}) (interface{}, error) {
				return fn(svr.(*greeter), ctx, r.(*wrapperspb.StringValue))
			})
		},
	}
}

func serviceDesc() *server.ServiceDesc {
	return &server.ServiceDesc{
		ServiceName:  serviceName,
		HandlerType:  (*greeterAPI)(nil),
		StreamHandle: stream.NewStreamDispatcher(),
		Methods: []server.Method{
			unaryMethod(sayHello, func(g *greeter, ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
				// Echo the request attachment so the capture has one both ways.
				msg := codec.Message(ctx)
				if a := server.GetAttachment(msg); a != nil {
					if b, err := io.ReadAll(a.Request()); err == nil && len(b) > 0 {
						a.SetResponse(bytes.NewReader(b))
					}
				}
				seen.Store(g.name+": "+req.GetValue(), true)
				return wrapperspb.String(g.name + ": hello " + req.GetValue()), nil
			}),
			unaryMethod(failHello, func(g *greeter, ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
				return nil, errs.New(1001, g.name+": no hello for "+req.GetValue())
			}),
		},
		Streams: countActive(append([]server.StreamDesc{{
			StreamName:    chat,
			ClientStreams: true,
			ServerStreams: true,
			Handler: func(svr interface{}, s server.Stream) error {
				g := svr.(*greeter)
				for {
					req := &wrapperspb.StringValue{}
					if err := s.RecvMsg(req); err != nil {
						if errors.Is(err, io.EOF) {
							return nil
						}
						return err
					}
					if err := s.SendMsg(wrapperspb.String(g.name + ": " + req.GetValue())); err != nil {
						return err
					}
				}
			},
		}}, moreStreams()...)),
	}
}

// startServer runs a real trpc-go server on a free loopback port and returns
// its address. It closes with the test.
func startServer(t testing.TB, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	svc := server.New(
		server.WithListener(lis),
		server.WithServiceName(serviceName),
		server.WithProtocol("trpc"),
		server.WithNetwork("tcp"),
		server.WithAddress(addr),
		server.WithTransport(transport.NewServerStreamTransport()),
		server.WithStreamTransport(transport.NewServerStreamTransport()),
	)
	if err := svc.Register(serviceDesc(), &greeter{name: name}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = svc.Serve() }()
	t.Cleanup(func() {
		done := make(chan struct{}, 1)
		_ = svc.Close(done)
		<-done
	})
	testutil.WaitDialable(t, addr)
	return addr
}

// clientOpts are the options of a plain trpc-go client calling target.
func clientOpts(addr string, more ...client.Option) []client.Option {
	return append([]client.Option{
		client.WithTarget("ip://" + addr),
		client.WithProtocol("trpc"),
		client.WithTimeout(5 * time.Second),
		client.WithDisableServiceRouter(),
		client.WithCallerServiceName("trpc.rosetta.test.Caller"),
		// trpc-go's standard transport: its default on Linux (tnet) trips the
		// race detector's pointer checks inside tnet's poller.
		client.WithTransport(transport.NewClientTransport()),
	}, more...)
}

// callHello makes one unary call with trpc-go's client to method.
func callHello(ctx context.Context, method, req string, opts ...client.Option) (string, error) {
	ctx, msg := codec.WithCloneMessage(ctx)
	defer codec.PutBackMessage(msg)
	msg.WithClientRPCName(method)
	msg.WithCalleeServiceName(serviceName)
	msg.WithSerializationType(codec.SerializationTypePB)
	rsp := &wrapperspb.StringValue{}
	if err := client.DefaultClient.Invoke(ctx, wrapperspb.String(req), rsp, opts...); err != nil {
		return "", err
	}
	return rsp.GetValue(), nil
}

// chatOnce opens a stream, sends msgs, closes its side and collects replies.
func chatOnce(ctx context.Context, msgs []string, opts ...client.Option) ([]string, error) {
	// The message is not put back in trpc-go's pool: the stream's own
	// goroutine still reads it after the stream has ended.
	ctx, msg := codec.WithCloneMessage(ctx)
	msg.WithCalleeServiceName(serviceName)
	opts = append(opts,
		client.WithStreamTransport(transport.NewClientStreamTransport()),
		client.WithCurrentSerializationType(codec.SerializationTypePB))
	cs, err := stream.NewStreamClient().NewStream(ctx,
		&client.ClientStreamDesc{StreamName: chat, ClientStreams: true, ServerStreams: true}, chat, opts...)
	if err != nil {
		return nil, err
	}
	var got []string
	for _, m := range msgs {
		if err := cs.SendMsg(wrapperspb.String(m)); err != nil {
			return nil, err
		}
		rsp := &wrapperspb.StringValue{}
		if err := cs.RecvMsg(rsp); err != nil {
			return nil, err
		}
		got = append(got, rsp.GetValue())
	}
	if err := cs.CloseSend(); err != nil {
		return nil, err
	}
	rsp := &wrapperspb.StringValue{}
	if err := cs.RecvMsg(rsp); !errors.Is(err, io.EOF) {
		return nil, errors.Join(errors.New("stream did not end with EOF"), err)
	}
	return got, nil
}

// frameError asserts err is a framework error from the callee with code.
func frameError(t testing.TB, err error, code int, msg string) {
	t.Helper()
	var e *errs.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a trpc-go *errs.Error", err, err)
	}
	if e.Type != errs.ErrorTypeCalleeFramework || int(e.Code) != code || (msg != "" && e.Msg != msg) {
		t.Fatalf("error type %d code %d msg %q; want callee framework error (type %d) code %d msg %q",
			e.Type, e.Code, e.Msg, errs.ErrorTypeCalleeFramework, code, msg)
	}
}

var _ = trpc.ProtocolName // the trpc package registers the "trpc" codec in init
