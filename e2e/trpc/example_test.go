package trpc_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"trpc.group/trpc-go/trpc-go/server"
	"trpc.group/trpc-go/trpc-go/stream"
	"trpc.group/trpc-go/trpc-go/transport"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

const exampleConfig = "../../examples/trpc/proxy.yaml"

// The functions of trpc-go's helloworld Greeter, which the example routes.
const (
	hwSayHello = "/trpc.test.helloworld.Greeter/SayHello"
	hwSayHi    = "/trpc.test.helloworld.Greeter/SayHi"
	hwCollect  = "/trpc.test.helloworld.Greeter/Collect"
)

// startHelloworld runs a real trpc-go server with SayHello, SayHi (unary,
// answering "<name>: hello|hi <req>") and Collect (a client stream).
func startHelloworld(t *testing.T, name string) string {
	t.Helper()
	greet := func(word string) func(g *greeter, _ context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return func(g *greeter, _ context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return wrapperspb.String(g.name + ": " + word + " " + req.GetValue()), nil
		}
	}
	collectDesc := moreStreams()[0]
	collectDesc.StreamName = hwCollect
	desc := &server.ServiceDesc{
		ServiceName:  "trpc.test.helloworld.Greeter",
		HandlerType:  (*greeterAPI)(nil),
		StreamHandle: stream.NewStreamDispatcher(),
		Methods:      []server.Method{unaryMethod(hwSayHello, greet("hello")), unaryMethod(hwSayHi, greet("hi"))},
		Streams:      countActive([]server.StreamDesc{collectDesc}),
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	svc := server.New(
		server.WithListener(lis),
		server.WithServiceName(desc.ServiceName),
		server.WithProtocol("trpc"),
		server.WithNetwork("tcp"),
		server.WithAddress(addr),
		server.WithTransport(transport.NewServerStreamTransport()),
		server.WithStreamTransport(transport.NewServerStreamTransport()),
	)
	if err := svc.Register(desc, &greeter{name: name}); err != nil {
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

// socketAddr returns "host:port" of an Envoy address.
func socketAddr(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
}

// setPort points an Envoy address at addr.
func setPort(t *testing.T, a *corev3.Address, addr string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	sa := a.GetSocketAddress()
	sa.Address = host
	sa.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(p)}
}

// TestExampleConfig: examples/trpc/proxy.yaml loads, passes the proxy's own
// checks, and says what its header says (listener 127.0.0.1:8000, admin
// 127.0.0.1:15001, SayHello to 127.0.0.1:8001, the rest to 127.0.0.1:8002).
// Then, with its addresses moved to free ports, real trpc-go clients go
// through it: SayHello lands on the first server, other funcs (unary and a
// client stream) on the second.
func TestExampleConfig(t *testing.T) {
	boot, err := config.LoadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.Validate(boot.Resources); err != nil {
		t.Fatalf("%s: %v", exampleConfig, err)
	}
	if boot.Admin.Address != "127.0.0.1:15001" {
		t.Errorf("admin address %q, want 127.0.0.1:15001", boot.Admin.Address)
	}
	if len(boot.Listeners) != 1 || socketAddr(boot.Listeners[0].GetAddress()) != "127.0.0.1:8000" {
		t.Fatalf("want one listener on 127.0.0.1:8000, got %v", boot.Listeners)
	}
	wantEndpoint := map[string]string{"hello": "127.0.0.1:8001", "other": "127.0.0.1:8002"}
	if len(boot.Clusters) != len(wantEndpoint) {
		t.Fatalf("%d clusters, want %d", len(boot.Clusters), len(wantEndpoint))
	}
	endpoints := map[string]*corev3.Address{} // cluster name to its one endpoint
	for _, c := range boot.Clusters {
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			t.Fatalf("cluster %s: want exactly one endpoint", c.GetName())
		}
		a := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()
		if got := socketAddr(a); got != wantEndpoint[c.GetName()] {
			t.Errorf("cluster %s: endpoint %s, want %s", c.GetName(), got, wantEndpoint[c.GetName()])
		}
		endpoints[c.GetName()] = a
	}

	// Run it on free ports against real servers.
	setPort(t, boot.Listeners[0].GetAddress(), "127.0.0.1:0")
	setPort(t, endpoints["hello"], startHelloworld(t, "hello-server"))
	setPort(t, endpoints["other"], startHelloworld(t, "other-server"))
	p := proxy.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := p.Apply(boot.Resources); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	addr, ok := p.Addr(boot.Listeners[0].GetName())
	if !ok {
		t.Fatal("the example's listener is not serving")
	}

	ctx := context.Background()
	for _, c := range []struct{ fn, want string }{
		{hwSayHello, "hello-server: hello ann"},
		{hwSayHi, "other-server: hi ann"},
	} {
		got, err := callHello(ctx, c.fn, "ann", clientOpts(addr)...)
		if err != nil || got != c.want {
			t.Errorf("%s through the example: %q, %v; want %q", c.fn, got, err, c.want)
		}
	}

	// A stream to another func follows the default route too.
	sp := newStreamPeer(addr)
	cs, end, err := sp.open(ctx, hwCollect, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer end()
	for _, m := range []string{"x", "y"} {
		if err := cs.SendMsg(wrapperspb.String(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	rsp := &wrapperspb.StringValue{}
	if err := cs.RecvMsg(rsp); err != nil || rsp.GetValue() != "other-server: x,y" {
		t.Fatalf("Collect through the example: %q, %v; want %q", rsp.GetValue(), err, "other-server: x,y")
	}
}
