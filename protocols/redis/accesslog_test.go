package redis

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/proxy/proxytest"
)

// loggingProxy runs a proxy with one Redis listener whose access log is
// accessLog, routing keys "b:" to server b, "down:" to a cluster whose only
// endpoint refuses connections, and everything else to server a.
func loggingProxy(t *testing.T, accessLog obj) (proxy string, a, b *server) {
	t.Helper()
	a, b = startServer(t), startServer(t)
	down := testutil.Listen(t)
	downAddr := down.Addr().String()
	down.Close()
	routes := []obj{prefixRoute("to-b", "b:", "b", nil), prefixRoute("to-down", "down:", "down", nil), prefixRoute("rest", "", "a", nil)}
	cfg := listenerConfig(t, nil, routes, clusterConfig("a", a.Addr), clusterConfig("b", b.Addr), clusterConfig("down", downAddr))
	var m obj
	must(t, json.Unmarshal([]byte(cfg), &m), "config")
	filter := m["listeners"].([]any)[0].(obj)["filter_chains"].([]any)[0].(obj)["filters"].([]any)[0].(obj)["typed_config"].(obj)
	filter["access_log"] = accessLog
	out, err := json.Marshal(m)
	must(t, err, "config")
	return proxytest.Start(t, string(out)).Addr(t, "redis"), a, b
}

// logLines waits until path holds n lines and returns them, each decoded
// from JSON.
func logLines(t *testing.T, path string, n int) []map[string]any {
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
	var out []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestAccessLogThroughRedisCLI: real redis-cli commands through the proxy
// each leave one JSON line in the log file, naming the route, cluster,
// upstream server and command; a command whose cluster is down logs its
// error and the endpoint it tried; a command the proxy answers itself (PING) logs no upstream.
func TestAccessLogThroughRedisCLI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	proxy, a, b := loggingProxy(t, obj{"format": "JSON", "path": path})
	out := cli(t, proxy, "SET a:1 one\nGET b:1\nGET down:1\nPING\n")
	if !strings.Contains(out, "OK") || !strings.Contains(out, "PONG") {
		t.Fatalf("redis-cli: %s", out)
	}
	lines := logLines(t, path, 5)[1:] // redis-cli asks for COMMAND DOCS first
	want := []map[string]any{
		{"route": "rest", "cluster": "a", "upstream": a.Addr, "method": "SET", "status": "ok", "tries": 1.0},
		{"route": "to-b", "cluster": "b", "upstream": b.Addr, "method": "GET", "status": "ok", "tries": 1.0},
		{"route": "to-down", "cluster": "down", "method": "GET", "status": "no_upstream", "response_code": "NOUPSTREAM"},
		{"route": "", "cluster": "", "upstream": "", "method": "PING", "status": "ok", "tries": 0.0},
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %#v, want %#v (line %v)", i, k, lines[i][k], v, lines[i])
			}
		}
		if lines[i]["listener"] != "redis" || lines[i]["protocol"] != "redis" || lines[i]["start_time"] == "" {
			t.Errorf("line %d: %v", i, lines[i])
		}
		if lines[i]["request_bytes"].(float64) <= 0 || lines[i]["response_bytes"].(float64) <= 0 {
			t.Errorf("line %d: bytes %v / %v", i, lines[i]["request_bytes"], lines[i]["response_bytes"])
		}
	}
}

// TestAccessLogSampling: with sample_percent 0 nothing is logged, with 50
// about half of go-redis's commands are, and only the fields asked for.
func TestAccessLogSampling(t *testing.T) {
	dir := t.TempDir()
	none := filepath.Join(dir, "none.log")
	half := filepath.Join(dir, "half.log")
	p0, _, _ := loggingProxy(t, obj{"format": "JSON", "path": none, "sample_percent": 0})
	p50, _, _ := loggingProxy(t, obj{"format": "JSON", "path": half, "sample_percent": 50, "fields": []string{"method", "route"}})
	c0, c50, cx := client(t, p0), client(t, p50), ctx(t)
	const n = 400
	for range n {
		if err := c0.Get(cx, "a:x").Err(); err != nil && err.Error() != "redis: nil" {
			t.Fatal(err)
		}
		_ = c50.Get(cx, "a:x").Err()
	}
	time.Sleep(200 * time.Millisecond) // the writer's queue empties
	b, err := os.ReadFile(half)
	must(t, err, "read")
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	gets := 0
	for _, l := range lines {
		var m map[string]any
		must(t, json.Unmarshal([]byte(l), &m), "line %q", l)
		if len(m) != 2 {
			t.Fatalf("line %q: want the fields method and route only", l)
		}
		if m["method"] == "GET" {
			gets++
		}
	}
	if gets < n/2-80 || gets > n/2+80 {
		t.Errorf("%d of %d GETs logged at 50%%", gets, n)
	}
	if b, err := os.ReadFile(none); err == nil && len(b) > 0 {
		t.Errorf("sample_percent 0 logged:\n%s", b)
	}
}
