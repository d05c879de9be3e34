package proxy_test

import (
	"sync"
	"testing"

	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
)

// BenchmarkRoundTrip compares a call made directly to a server with the same
// call through the proxy, in one run, with parallel callers on one client
// connection each. The ratio of the two is the proxy's cost. The last row
// goes through a listener tracing at 0%: every request is sampled out,
// which should cost what no tracing costs.
func BenchmarkRoundTrip(b *testing.B) {
	srv, err := toy.Serve("127.0.0.1:0", func(r *toy.Request) *toy.Response { return &toy.Response{Body: r.Body} })
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	p := proxytest.StartWithTracer(b, configJSON(b,
		[]obj{listener("in", "r", nil), onLoopback2(listener("traced", "r", obj{"tracing": obj{"random_sampling_percentage": 0}}))},
		[]obj{routeConfig("r", route("echo", match("method", "echo"), obj{"cluster": "echo", "timeout": "5s"}))},
		[]obj{cluster("echo", "", srv.Addr())}), tracing.NewWithProcessor(tracetest.NewSpanRecorder(), resource.Empty()))
	body := make([]byte, 1024)
	headers := map[string]string{"method": "echo"}
	for _, tc := range []struct{ name, addr string }{{"direct", srv.Addr()}, {"proxy", p.Addr(b, "in")}, {"proxy-traced-0%", p.Addr(b, "traced")}} {
		b.Run(tc.name, func(b *testing.B) {
			var mu sync.Mutex
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				c := dial(b, tc.addr)
				mu.Unlock()
				for pb.Next() {
					r, err := c.Call(headers, body)
					if err != nil || r.Err() != nil {
						b.Fatal(err, r.Err())
					}
				}
			})
		})
	}
}
