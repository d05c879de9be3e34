package dubbo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
)

// otelcolVersion is the collector release hack/build-otelcol.sh builds.
const otelcolVersion = "v0.161.0"

// The caller's trace context in these tests: a trace the consumer started.
const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

// collector is a real OpenTelemetry Collector: an OTLP/gRPC receiver whose
// file exporter writes each batch of spans as a line of OTLP JSON.
type collector struct {
	endpoint string
	file     string
}

// startCollector runs the collector hack/build-otelcol.sh built, found in
// $ROSETTA_OTELCOL (the Makefile sets it) or the script's default folder.
func startCollector(t *testing.T) *collector { return startCollectorWith(t, "") }

// startCollectorWith is startCollector with more settings of the OTLP/gRPC
// receiver (YAML indented under its grpc key), such as its tls.
func startCollectorWith(t *testing.T, grpc string) *collector {
	t.Helper()
	dir := os.Getenv("ROSETTA_OTELCOL")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "rosetta", "otelcol-"+otelcolVersion)
	}
	bin := filepath.Join(dir, "otelcol")
	if _, err := os.Stat(bin); err != nil {
		testutil.Unavailable(t, "the OpenTelemetry Collector (hack/build-otelcol.sh)", err)
	}
	tmp := t.TempDir()
	c := &collector{file: filepath.Join(tmp, "spans.json")}
	return testutil.OnFreePorts(t, 1, func(ports []int) (*collector, error) {
		c.endpoint = fmt.Sprintf("127.0.0.1:%d", ports[0])
		cfg := filepath.Join(tmp, "otelcol.yaml")
		// The collector's own telemetry is off: it would bind :8888.
		yaml := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
%s
exporters:
  file:
    path: %s
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
`, c.endpoint, grpc, c.file)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			return nil, err
		}
		p, err := testutil.Start(testutil.Command{Name: "otelcol", Path: bin, Args: []string{"--config=file:" + cfg}, Log: filepath.Join(tmp, "otelcol.log")})
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() {
			p.Stop(10 * time.Second)
			if t.Failed() {
				t.Logf("otelcol log:\n%s", p.LogTail(4000))
			}
		})
		return c, p.Ready(30*time.Second, "to accept OTLP", testutil.Dialable(c.endpoint))
	})
}

// span is what the tests read of an OTLP JSON span.
type span struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Kind         int    `json:"kind"` // 2 server, 3 client
	Attributes   []struct {
		Key   string `json:"key"`
		Value struct {
			String *string `json:"stringValue"`
			Int    *string `json:"intValue"` // OTLP JSON writes 64-bit integers as strings
		} `json:"value"`
	} `json:"attributes"`
	Status struct {
		Code int `json:"code"` // 2 error
	} `json:"status"`
}

func (s span) attr(key string) string {
	for _, a := range s.Attributes {
		if a.Key != key {
			continue
		}
		switch {
		case a.Value.String != nil:
			return *a.Value.String
		case a.Value.Int != nil:
			return *a.Value.Int
		}
	}
	return ""
}

// spans reads every span the collector has written so far.
func (c *collector) spans(t *testing.T) []span {
	t.Helper()
	b, err := os.ReadFile(c.file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []span
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var batch struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []span `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(sc.Bytes(), &batch); err != nil {
			t.Fatalf("collector file: %v", err)
		}
		for _, rs := range batch.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

// waitSpans waits until the collector holds at least n spans.
func (c *collector) waitSpans(t *testing.T, n int) []span {
	t.Helper()
	var got []span
	testutil.Eventually(t, 15*time.Second, fmt.Sprintf("%d spans at the collector", n), func() bool {
		got = c.spans(t)
		return len(got) >= n
	})
	return got
}

// tracedProxy runs a proxy exporting to c whose listener samples percent
// of the requests that come without trace context, with one route to a
// cluster of addrs; flush sends the spans it still holds.
func tracedProxy(t *testing.T, c *collector, percent float64, addrs ...string) (addr string, flush func()) {
	t.Helper()
	addr, export := tracedProxyWith(t, c, percent, nil, addrs...)
	return addr, func() {
		if err := export(10 * time.Second); err != nil {
			t.Fatalf("flush spans: %v", err)
		}
	}
}

// tracedProxyWith is tracedProxy exporting with opts (TLS); export sends
// the spans it still holds within the given time, and says whether the
// collector took them.
func tracedProxyWith(t *testing.T, c *collector, percent float64, opts []tracing.Option, addrs ...string) (addr string, export func(time.Duration) error) {
	t.Helper()
	cfg := proxyConfig(t, []obj{route("all", nil, "a", routeTimeout)}, cluster(t, "a", addrs...))
	cfg = strings.Replace(cfg, `"codec":"dubbo"`, fmt.Sprintf(`"codec":"dubbo","tracing":{"random_sampling_percentage":%g}`, percent), 1)
	tr, err := tracing.New(context.Background(), c.endpoint, "rosetta-proxy", opts...)
	if err != nil {
		t.Fatal(err)
	}
	export = func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return tr.Shutdown(ctx)
	}
	addr = dubbokit.OnFreshPort(t, "proxy", func() (string, string) {
		a := proxytest.StartWithTracer(t, cfg, tr).Addr(t, listenerName)
		return a, a
	})
	return addr, export
}

func traceparent(trace, parent string, sampled bool) string {
	flags := "00"
	if sampled {
		flags = "01"
	}
	return "00-" + trace + "-" + parent + "-" + flags
}

// A dubbo-go call carrying the caller's trace context continues through the
// proxy: the proxy's server span is the caller's span's child, its client
// span the server span's child, and the provider receives the client span
// as its parent in the request's attachments.
func TestTracingContinuesCallersTrace(t *testing.T) {
	col := startCollector(t)
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	addr, flush := tracedProxy(t, col, 0, p.Addr())
	c := dubbokit.NewConsumer(t, addr, consumerConfig())

	ctx := dubbokit.WithAttachments(context.Background(), map[string]string{
		"traceparent": traceparent(callerTrace, callerSpan, true),
		"tracestate":  "vendor=v1",
	})
	got, err := c.Call(ctx, dubbokit.MethodAttachment, "traceparent")
	if err != nil {
		t.Fatal(err)
	}
	flush()
	spans := col.waitSpans(t, 2)
	if len(spans) != 2 {
		t.Fatalf("collector has %d spans, want the proxy's server and client span: %+v", len(spans), spans)
	}
	server, client := spans[0], spans[1]
	if server.Kind != 2 {
		server, client = client, server
	}
	if server.Kind != 2 || client.Kind != 3 {
		t.Fatalf("span kinds %d and %d, want a server (2) and a client (3) span", server.Kind, client.Kind)
	}
	for _, s := range spans {
		if s.TraceID != callerTrace {
			t.Errorf("span %q has trace id %s, want the caller's %s", s.Name, s.TraceID, callerTrace)
		}
	}
	if server.ParentSpanID != callerSpan {
		t.Errorf("server span's parent = %q, want the caller's span %s", server.ParentSpanID, callerSpan)
	}
	if client.ParentSpanID != server.SpanID {
		t.Errorf("client span's parent = %q, want the server span %s", client.ParentSpanID, server.SpanID)
	}
	if want := "a: " + traceparent(callerTrace, client.SpanID, true); got != want {
		t.Errorf("provider got traceparent answer %q, want %q (the proxy's client span as parent)", got, want)
	}
	wantName := dubbokit.Greeter + "/" + dubbokit.MethodAttachment
	for _, s := range spans {
		if s.Name != wantName {
			t.Errorf("span name %q, want %q", s.Name, wantName)
		}
		for k, v := range map[string]string{"rpc.system": "dubbo", "rpc.service": dubbokit.Greeter, "rpc.method": dubbokit.MethodAttachment, "rosetta.cluster": "a", "rosetta.status": "ok"} {
			if s.attr(k) != v {
				t.Errorf("%s span: %s = %q, want %q", s.Name, k, s.attr(k), v)
			}
		}
	}
	if server.attr("rosetta.route") != "all" || server.attr("rosetta.listener") != listenerName {
		t.Errorf("server span route %q listener %q, want all and %s", server.attr("rosetta.route"), server.attr("rosetta.listener"), listenerName)
	}
	if client.attr("server.address") != p.Addr() || client.attr("rosetta.try") != "1" {
		t.Errorf("client span: server.address %q try %q, want %s and 1", client.attr("server.address"), client.attr("rosetta.try"), p.Addr())
	}

	// The tracestate travels on with the proxy's spans.
	got, err = c.Call(ctx, dubbokit.MethodAttachment, "tracestate")
	if err != nil {
		t.Fatal(err)
	}
	if got != "a: vendor=v1" {
		t.Errorf("provider got tracestate %q, want %q", got, "a: vendor=v1")
	}
}

// With sampling at 0%, neither a call without trace context nor one whose
// caller did not sample makes a span, and the unsampled caller's context
// reaches the provider unchanged; a sampled caller's call, sent after them,
// is the only trace the collector gets.
func TestTracingSamplingZeroMakesNoSpans(t *testing.T) {
	col := startCollector(t)
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	addr, flush := tracedProxy(t, col, 0, p.Addr())
	c := dubbokit.NewConsumer(t, addr, consumerConfig())

	for range 20 {
		if _, err := c.Call(context.Background(), dubbokit.MethodEcho, "x"); err != nil {
			t.Fatal(err)
		}
	}
	unsampled := traceparent("11111111111111111111111111111111", callerSpan, false)
	ctx := dubbokit.WithAttachments(context.Background(), map[string]string{"traceparent": unsampled})
	for range 20 {
		got, err := c.Call(ctx, dubbokit.MethodAttachment, "traceparent")
		if err != nil {
			t.Fatal(err)
		}
		if got != "a: "+unsampled {
			t.Fatalf("provider got traceparent %q, want the caller's own %q", got, unsampled)
		}
	}
	sampled := dubbokit.WithAttachments(context.Background(), map[string]string{"traceparent": traceparent(callerTrace, callerSpan, true)})
	if _, err := c.Call(sampled, dubbokit.MethodEcho, "y"); err != nil {
		t.Fatal(err)
	}
	flush()
	col.waitSpans(t, 2)
	time.Sleep(300 * time.Millisecond) // a later batch would have arrived by now
	spans := col.spans(t)
	for _, s := range spans {
		if s.TraceID != callerTrace {
			t.Errorf("span %q of trace %s: want spans of the sampled caller's trace %s only", s.Name, s.TraceID, callerTrace)
		}
	}
	if len(spans) != 2 {
		t.Errorf("collector has %d spans, want 2 (the sampled call's server and client span)", len(spans))
	}
}

// At 100%, a call without trace context starts a trace at the proxy, and
// the provider receives it.
func TestTracingStartsTraceAtFullSampling(t *testing.T) {
	col := startCollector(t)
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	addr, flush := tracedProxy(t, col, 100, p.Addr())
	c := dubbokit.NewConsumer(t, addr, consumerConfig())

	got, err := c.Call(context.Background(), dubbokit.MethodAttachment, "traceparent")
	if err != nil {
		t.Fatal(err)
	}
	flush()
	spans := col.waitSpans(t, 2)
	var client *span
	for i := range spans {
		if spans[i].Kind == 3 {
			client = &spans[i]
		}
		if spans[i].Kind == 2 && spans[i].ParentSpanID != "" {
			t.Errorf("server span has parent %q, want a root span", spans[i].ParentSpanID)
		}
	}
	if client == nil {
		t.Fatalf("no client span among %+v", spans)
	}
	if want := "a: " + traceparent(client.TraceID, client.SpanID, true); got != want {
		t.Errorf("provider got traceparent %q, want %q", got, want)
	}
}
