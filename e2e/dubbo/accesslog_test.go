package dubbo

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// startProxyWithFilter is startProxy with more fields on the listener's
// MetaProtocolProxy filter (access_log); it returns the proxy too.
func startProxyWithFilter(t *testing.T, extra obj, routes []obj, clusters ...obj) (*proxytest.Proxy, string) {
	t.Helper()
	var cfg obj
	if err := json.Unmarshal([]byte(proxyConfig(t, routes, clusters...)), &cfg); err != nil {
		t.Fatal(err)
	}
	filter := cfg["listeners"].([]any)[0].(obj)["filter_chains"].([]any)[0].(obj)["filters"].([]any)[0].(obj)["typed_config"].(obj)
	for k, v := range extra {
		filter[k] = v
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var px *proxytest.Proxy
	addr := dubbokit.OnFreshPort(t, "proxy", func() (string, string) {
		px = proxytest.Start(t, string(b))
		addr := px.Addr(t, listenerName)
		return addr, addr
	})
	return px, addr
}

// readLog waits until path holds n lines and decodes each from JSON.
func readLog(t *testing.T, path string, n int) []map[string]any {
	t.Helper()
	var lines []string
	testutil.Eventually(t, 5*time.Second, "access log lines", func() bool {
		b, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		return len(b) > 0 && len(lines) >= n
	})
	if len(lines) != n {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), n, strings.Join(lines, "\n"))
	}
	out := make([]map[string]any, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &out[i]); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
	}
	return out
}

func checkLine(t *testing.T, i int, line map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if line[k] != v {
			t.Errorf("line %d: %s = %#v, want %#v\n%v", i, k, line[k], v, line)
		}
	}
}

// TestAccessLogOfDubboCalls: real dubbo-go calls through the proxy leave
// one JSON line each in the log file, naming the MetaRouter route, the
// cluster and provider, Dubbo's interface and method, the trace id of a
// traceparent attachment, and the reason of an error the proxy answered
// itself.
func TestAccessLogOfDubboCalls(t *testing.T) {
	a, b := twoProviders(t)
	path := filepath.Join(t.TempDir(), "access.log")
	_, addr := startProxyWithFilter(t, obj{"access_log": obj{"format": "JSON", "path": path}}, []obj{
		route("say-hello", map[string]string{"method": dubbokit.MethodSayHello}, "a", routeTimeout),
		route("echo", map[string]string{"method": dubbokit.MethodEcho}, "b", routeTimeout),
	}, cluster(t, "a", a.Addr()), cluster(t, "b", b.Addr()))
	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	traced := dubbokit.WithAttachments(context.Background(), map[string]string{"traceparent": "00-" + trace + "-00f067aa0ba902b7-01"})
	if got, err := c.SayHello(traced, "x"); err != nil || got != "a: hello x" {
		t.Fatalf("sayHello = %q, %v", got, err)
	}
	if got, err := c.Echo(context.Background(), "y"); err != nil || got != "b: y" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	if _, err := c.Call(context.Background(), dubbokit.MethodAttachment, "k"); err == nil {
		t.Fatal("a call no route matches succeeded")
	}
	lines := readLog(t, path, 3)
	checkLine(t, 0, lines[0], map[string]any{"listener": listenerName, "route": "say-hello", "cluster": "a", "upstream": a.Addr(),
		"protocol": "dubbo", "service": "org.rosetta.Greeter", "method": "sayHello", "status": "ok", "response_code": "20",
		"tries": 1.0, "trace_id": trace, "detail": ""})
	checkLine(t, 1, lines[1], map[string]any{"route": "echo", "cluster": "b", "upstream": b.Addr(), "method": "echo", "status": "ok", "trace_id": ""})
	checkLine(t, 2, lines[2], map[string]any{"route": "", "cluster": "", "upstream": "", "method": "attachment",
		"status": "no_route", "response_code": "60", "tries": 0.0, "detail": "no route matched the request"})
	for i, l := range lines {
		if l["request_bytes"].(float64) <= 0 || l["response_bytes"].(float64) < 0 || l["duration_ms"].(float64) < 0 {
			t.Errorf("line %d: bytes or duration: %v", i, l)
		}
		if _, err := time.Parse(time.RFC3339Nano, l["start_time"].(string)); err != nil {
			t.Errorf("line %d: start_time: %v", i, err)
		}
	}
	if lines[0]["response_bytes"].(float64) == 0 {
		t.Errorf("an answered call logs no response bytes: %v", lines[0])
	}
}

// TestAccessLogTextAndSampling: the text format with chosen fields, and a
// listener sampling 0% that writes nothing while its calls succeed.
func TestAccessLogTextAndSampling(t *testing.T) {
	a := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version})
	dir := t.TempDir()
	text, none := filepath.Join(dir, "text.log"), filepath.Join(dir, "none.log")
	routes := []obj{route("all", nil, "a", routeTimeout)}
	_, logged := startProxyWithFilter(t, obj{"access_log": obj{"path": text, "fields": []string{"route", "method", "status"}}}, routes, cluster(t, "a", a.Addr()))
	_, silent := startProxyWithFilter(t, obj{"access_log": obj{"path": none, "sample_percent": 0}}, routes, cluster(t, "a", a.Addr()))
	for _, addr := range []string{logged, silent} {
		c := dubbokit.NewConsumer(t, addr, consumerConfig())
		for range 5 {
			if _, err := c.SayHello(context.Background(), "x"); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.Eventually(t, 5*time.Second, "5 text lines", func() bool {
		b, _ := os.ReadFile(text)
		return strings.Count(string(b), "\n") == 5
	})
	b, _ := os.ReadFile(text)
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l != "route=all method=sayHello status=ok" {
			t.Errorf("text line %q", l)
		}
	}
	time.Sleep(100 * time.Millisecond) // what the writer would have written
	if b, err := os.ReadFile(none); err != nil || len(b) != 0 {
		t.Errorf("sample_percent 0: %q, %v; want an empty file", b, err)
	}
}
