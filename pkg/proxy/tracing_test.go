package proxy_test

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
)

// A listener's tracing config is checked, and a bad percentage is refused
// naming the field.
func TestTracingConfig(t *testing.T) {
	validate := func(tracing obj) error {
		l := listener("in", "", obj{"route_config": obj{"name": "r"}, "tracing": tracing})
		boot, err := config.Parse([]byte(configJSON(t, []obj{l}, nil, nil)))
		if err != nil {
			t.Fatal(err)
		}
		return proxy.Validate(boot.Resources)
	}
	for _, ok := range []obj{{}, {"random_sampling_percentage": 1}, {"random_sampling_percentage": 100, "ignore_caller_sampling": true}} {
		if err := validate(ok); err != nil {
			t.Errorf("tracing %v: %v", ok, err)
		}
	}
	for _, bad := range []float64{-1, 100.01} {
		err := validate(obj{"random_sampling_percentage": bad})
		if want := "filter rosetta.metaprotocol: tracing.random_sampling_percentage"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("percentage %v: %v, want an error with %q", bad, err, want)
		}
	}
}

// Every upstream try gets a client span under the request's server span: a
// try on an endpoint that refuses the connection ends in error and the
// retry elsewhere is a second client span; the server span counts the
// retries. Requests on a listener without tracing make no spans.
func TestTracingSpansPerTry(t *testing.T) {
	good, _ := named(t, "good")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // connections to it are refused
	rec := tracetest.NewSpanRecorder()
	tr := tracing.NewWithProcessor(rec, resource.Empty())
	cfg := configJSON(t,
		[]obj{listener("traced", "r", obj{"tracing": obj{"random_sampling_percentage": 100}}), onLoopback2(listener("plain", "r", nil))},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "c"}))},
		[]obj{cluster("c", "", dead, good.Addr())})
	p := proxytest.StartWithTracer(t, cfg, tr)

	c := dial(t, p.Addr(t, "traced"))
	const requests = 4
	for range requests {
		if got := answeredBy(t, c, map[string]string{"method": "m"}); got != "good" {
			t.Fatalf("answered by %q", got)
		}
	}
	servers := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	clients := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			servers[s.SpanContext().SpanID()] = s
		case trace.SpanKindClient:
			clients[s.Parent().SpanID()] = append(clients[s.Parent().SpanID()], s)
		}
	}
	if len(servers) != requests {
		t.Fatalf("%d server spans, want %d", len(servers), requests)
	}
	retried := 0
	for id, s := range servers {
		tries := clients[id]
		if len(tries) == 0 {
			t.Fatalf("server span %s has no client span", s.Name())
		}
		if got := attr(s, "rosetta.retries"); got != fmt.Sprint(len(tries)-1) {
			t.Errorf("server span: rosetta.retries = %s, want %d", got, len(tries)-1)
		}
		for i, try := range tries {
			last := i == len(tries)-1
			if addr := attr(try, "server.address"); (addr == good.Addr()) != last || (try.Status().Code == codes.Error) == last {
				t.Errorf("try %d of %d to %s ended %v", i+1, len(tries), addr, try.Status())
			}
			if attr(try, "rosetta.try") != fmt.Sprint(i+1) {
				t.Errorf("try %d: rosetta.try = %s", i+1, attr(try, "rosetta.try"))
			}
		}
		if len(tries) > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Error("no request tried the refusing endpoint first; round robin should have")
	}

	before := len(rec.Ended())
	plain := dial(t, p.Addr(t, "plain"))
	for range 4 {
		if got := answeredBy(t, plain, map[string]string{"method": "m"}); got != "good" {
			t.Fatalf("answered by %q", got)
		}
	}
	if n := len(rec.Ended()) - before; n != 0 {
		t.Errorf("a listener without tracing made %d spans", n)
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
