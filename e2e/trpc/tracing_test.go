package trpc_test

import (
	"context"
	"encoding/json"
	"net"
	"testing"

	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"trpc.group/trpc-go/trpc-go/client"
	"trpc.group/trpc-go/trpc-go/codec"
	"trpc.group/trpc-go/trpc-go/server"
	"trpc.group/trpc-go/trpc-go/transport"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
	rtrpc "github.com/rosetta-mesh/rosetta/protocols/trpc"
)

// traceParent answers with the traceparent entry of the request's
// trans_info, as trpc-go's server hands it to a handler.
const traceParent = "/trpc.rosetta.test.Greeter/TraceParent"

// startTraceServer runs a real trpc-go server whose one method answers
// with the traceparent it received.
func startTraceServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	svc := server.New(server.WithListener(lis), server.WithServiceName(serviceName), server.WithProtocol("trpc"),
		server.WithNetwork("tcp"), server.WithAddress(addr), server.WithTransport(transport.NewServerStreamTransport()))
	desc := &server.ServiceDesc{ServiceName: serviceName, HandlerType: (*greeterAPI)(nil), Methods: []server.Method{
		unaryMethod(traceParent, func(_ *greeter, ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return wrapperspb.String(string(codec.Message(ctx).ServerMetaData()["traceparent"])), nil
		}),
	}}
	if err := svc.Register(desc, &greeter{name: "t"}); err != nil {
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

// TestTracingCarrier: a trpc-go call whose trans_info carries the caller's
// sampled traceparent is traced by the proxy, and the trpc-go server
// receives the proxy's client span as its parent in trans_info.
func TestTracingCarrier(t *testing.T) {
	srv := startTraceServer(t)
	cfg := obj{
		"listeners": []obj{{
			"name":    "trpc",
			"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
			"filter_chains": []obj{{"filters": []obj{{"name": "rosetta.metaprotocol", "typed_config": obj{
				"@type": "type.googleapis.com/rosetta.config.v1alpha1.MetaProtocolProxy",
				"codec": rtrpc.Name, "route_config": obj{"name": "r", "routes": []obj{{"name": "all", "route": obj{"cluster": "a", "timeout": "3s"}}}},
				"tracing": obj{"random_sampling_percentage": 0},
			}}}}},
		}},
		"clusters": []obj{clusterFor("a", srv)},
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	addr := proxytest.StartWithTracer(t, string(js), tracing.NewWithProcessor(rec, resource.Empty())).Addr(t, "trpc")

	const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	got, err := callHello(context.Background(), traceParent, "x", clientOpts(addr, client.WithMetaData("traceparent", []byte(caller)))...)
	if err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want a server and a client span", len(spans))
	}
	var server, client trace.SpanContext
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindServer {
			server = s.SpanContext()
			if s.Parent().SpanID().String() != "00f067aa0ba902b7" || s.Name() != "trpc.rosetta.test.Greeter/TraceParent" {
				t.Errorf("server span %q has parent %s, want the caller's span", s.Name(), s.Parent().SpanID())
			}
		} else {
			client = s.SpanContext()
		}
	}
	if server.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %s, want the caller's", server.TraceID())
	}
	if want := "00-" + client.TraceID().String() + "-" + client.SpanID().String() + "-01"; got != want {
		t.Errorf("the trpc-go server received traceparent %q, want %q (the proxy's client span)", got, want)
	}
}
