package load

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// spanSink is an OTLP/gRPC trace receiver that counts the spans it gets
// and keeps nothing, so the traced row measures the proxy's cost of making
// and exporting spans, not a collector's.
type spanSink struct {
	coltracepb.UnimplementedTraceServiceServer
	spans atomic.Int64
	srv   *grpc.Server
	addr  string
}

func startSpanSink() (*spanSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &spanSink{srv: grpc.NewServer(), addr: ln.Addr().String()}
	coltracepb.RegisterTraceServiceServer(s.srv, s)
	go s.srv.Serve(ln)
	return s, nil
}

func (s *spanSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += int64(len(ss.Spans))
		}
	}
	s.spans.Add(n)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (s *spanSink) stop() { s.srv.Stop() }

// tracedSetup is the proxy row with tracing on: the listener samples pct
// percent of requests and the proxy exports to sink.
func tracedSetup(upstream string, pct float64, sink *spanSink) proxySetup {
	return proxySetup{
		name:     fmt.Sprintf("rosetta (traces at %g%%)", pct),
		upstream: upstream,
		tracing:  pct,
		args:     []string{"--otlp-endpoint", sink.addr},
	}
}
