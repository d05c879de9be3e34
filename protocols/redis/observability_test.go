package redis

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
	"github.com/rosetta-mesh/rosetta/pkg/tracing"
)

// Istio-named clusters of two cache services, whose endpoints carry the
// workload metadata the controller writes.
const (
	cacheA = "outbound|6379||cache-a.shop.svc.cluster.local"
	cacheB = "outbound|6379||cache-b.shop.svc.cluster.local"
)

func withWorkload(c obj, workload string) obj {
	for _, lb := range c["load_assignment"].(obj)["endpoints"].([]obj)[0]["lb_endpoints"].([]obj) {
		lb["metadata"] = obj{"filter_metadata": obj{"istio": obj{"workload": workload}}}
	}
	return c
}

// cacheConfig is a Redis listener sending keys "b:" to cache-b and the
// rest to cache-a, with filter fields extra (tracing).
func cacheConfig(t *testing.T, a, b *server, extra obj) string {
	t.Helper()
	cfg := listenerConfig(t, nil, []obj{prefixRoute("to-b", "b:", cacheB, nil), prefixRoute("rest", "", cacheA, nil)},
		withWorkload(clusterConfig(cacheA, a.Addr), "cache-a;shop;cache-a;v7;Kubernetes"),
		withWorkload(clusterConfig(cacheB, b.Addr), "cache-b;shop;cache-b;v8;Kubernetes"))
	var m obj
	must(t, json.Unmarshal([]byte(cfg), &m), "config")
	filter := m["listeners"].([]any)[0].(obj)["filter_chains"].([]any)[0].(obj)["filters"].([]any)[0].(obj)["typed_config"].(obj)
	for k, v := range extra {
		filter[k] = v
	}
	out, err := json.Marshal(m)
	must(t, err, "config")
	return string(out)
}

// istioCount sums istio_requests_total over the series whose labels hold
// every one of labels.
func istioCount(metrics string, labels ...string) int {
	n := 0
	for _, line := range strings.Split(metrics, "\n") {
		rest, ok := strings.CutPrefix(line, "istio_requests_total{")
		if !ok {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(rest, l)
		}
		if i := strings.LastIndexByte(rest, ' '); all && i >= 0 {
			v, _ := strconv.Atoi(rest[i+1:])
			n += v
		}
	}
	return n
}

// Requests through the Redis handler carry the destination labels of the
// cluster and endpoint their command went to; a command split across both
// services is labelled with one of them (the part that ended last), and
// one the proxy answers itself (PING) has none.
func TestIstioDestinationLabelsOfRedisCommands(t *testing.T) {
	a, b := startServer(t), startServer(t)
	p := proxytest.Start(t, cacheConfig(t, a, b, nil))
	c, cx := client(t, p.Addr(t, "redis")), ctx(t)
	for i := range 3 {
		must(t, c.Set(cx, "a:"+itoa(i), "x", 0).Err(), "SET a")
	}
	must(t, c.Set(cx, "b:1", "y", 0).Err(), "SET b")
	redis := `request_protocol="redis"`
	m := p.Get(t, "/metrics")
	for _, w := range []struct {
		labels []string
		want   int
	}{
		{[]string{redis, `destination_service="cache-a.shop.svc.cluster.local"`, `destination_service_name="cache-a"`, `destination_workload="cache-a"`, `destination_version="v7"`, `response_code="OK"`}, 3},
		{[]string{redis, `destination_service="cache-b.shop.svc.cluster.local"`, `destination_workload="cache-b"`, `destination_app="cache-b"`, `destination_workload_namespace="shop"`}, 1},
	} {
		if got := istioCount(m, w.labels...); got != w.want {
			t.Errorf("istio_requests_total{%s} = %d, want %d", strings.Join(w.labels, ","), got, w.want)
		}
	}
	// The split command goes to both: which part ends last decides.
	must(t, c.MSet(cx, "a:9", "1", "b:9", "2").Err(), "MSET across both")
	unknown := istioCount(m, redis, `destination_service="unknown"`)
	must(t, c.Ping(cx).Err(), "PING")
	m = p.Get(t, "/metrics")
	if got := istioCount(m, redis, `destination_service="cache-`); got != 5 {
		t.Errorf("%d requests labelled with a cache service, want 5", got)
	}
	if got := istioCount(m, redis, `destination_service="unknown"`); got != unknown+1 {
		t.Errorf("PING, answered by the proxy: %d requests without a destination, want %d", got, unknown+1)
	}
	if t.Failed() {
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "istio_requests_total{") {
				t.Log(line)
			}
		}
	}
}

// A traced Redis listener makes a server span per command (named after
// it) and a client span per request the handler sends: one for a command
// to one server, one per server for a split command, none for a command
// the proxy answers itself.
func TestRedisSpans(t *testing.T) {
	a, b := startServer(t), startServer(t)
	rec := tracetest.NewSpanRecorder()
	p := proxytest.StartWithTracer(t, cacheConfig(t, a, b, obj{"tracing": obj{"random_sampling_percentage": 100}}),
		tracing.NewWithProcessor(rec, resource.Empty()))
	c, cx := client(t, p.Addr(t, "redis")), ctx(t)
	rec.Reset() // HELLO and CLIENT SETINFO of go-redis's handshake
	must(t, c.Set(cx, "a:1", "x", 0).Err(), "SET")
	must(t, c.MSet(cx, "a:2", "1", "b:2", "2").Err(), "MSET")
	must(t, c.Ping(cx).Err(), "PING")

	servers := map[string]sdktrace.ReadOnlySpan{}
	clients := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			servers[s.Name()] = s
		case trace.SpanKindClient:
			clients[s.Parent().SpanID()] = append(clients[s.Parent().SpanID()], s)
		}
	}
	for name, want := range map[string]struct {
		cluster string
		addrs   []string
	}{
		"SET":  {cacheA, []string{a.Addr}},
		"MSET": {"", []string{a.Addr, b.Addr}},
		"PING": {"", nil},
	} {
		s, ok := servers[name]
		if !ok {
			t.Errorf("no server span %s (servers: %v)", name, servers)
			continue
		}
		if got := spanAttr(s, "rpc.system"); got != "redis" {
			t.Errorf("%s: rpc.system %q", name, got)
		}
		if want.cluster != "" && spanAttr(s, "rosetta.cluster") != want.cluster {
			t.Errorf("%s: rosetta.cluster %q, want %q", name, spanAttr(s, "rosetta.cluster"), want.cluster)
		}
		var addrs []string
		for _, c := range clients[s.SpanContext().SpanID()] {
			if c.SpanContext().TraceID() != s.SpanContext().TraceID() {
				t.Errorf("%s: a client span of another trace", name)
			}
			addrs = append(addrs, spanAttr(c, "server.address"))
		}
		slices.Sort(addrs)
		slices.Sort(want.addrs)
		if !slices.Equal(addrs, want.addrs) {
			t.Errorf("%s: client spans to %v, want %v", name, addrs, want.addrs)
		}
	}
}

// A Redis listener tracing at 0% makes no span: Redis has no carrier, so
// no caller's flag can ask for one.
func TestRedisSpansSampledOut(t *testing.T) {
	a, b := startServer(t), startServer(t)
	rec := tracetest.NewSpanRecorder()
	p := proxytest.StartWithTracer(t, cacheConfig(t, a, b, obj{"tracing": obj{"random_sampling_percentage": 0}}),
		tracing.NewWithProcessor(rec, resource.Empty()))
	c, cx := client(t, p.Addr(t, "redis")), ctx(t)
	must(t, c.MSet(cx, "a:2", "1", "b:2", "2").Err(), "MSET")
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans at 0%%", n)
	}
}

func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
