package main

import (
	"regexp"
	"strings"
	"testing"
)

const redisDemoFile = "../../examples/redis/demo.yaml"

// redisPart is the demo's output from the Redis part on.
func redisPart(t *testing.T, out string) string {
	t.Helper()
	i := strings.Index(out, "Rosetta demo, Redis:")
	if i < 0 {
		t.Fatalf("no Redis part in:\n%s", out)
	}
	return out[i:]
}

// TestDemoRedis: the demo's Redis part (go-redis with its defaults through
// the proxy to two miniredis servers) answers PING and HELLO in the proxy,
// puts b: keys on redis-b only and the others on redis-a only (each server
// asked directly), and splits one MGET into one command per server, merged
// in key order.
func TestDemoRedis(t *testing.T) {
	out := redisPart(t, mustRun(t, "demo", "--calls", "5", "--concurrency", "2"))
	// KEY ROUTE CONFIGURED redis-a redis-b
	for _, tc := range []struct{ key, route, server, a, b string }{
		{"user:1", "default", "redis-a", "yes", "-"},
		{"b:cart:1", "prefix-b", "redis-b", "-", "yes"},
		{"user:2", "default", "redis-a", "yes", "-"},
		{"b:cart:2", "prefix-b", "redis-b", "-", "yes"},
	} {
		r := row(t, out, tc.key)
		if len(r) != 5 || r[1] != tc.route || r[2] != tc.server || r[3] != tc.a || r[4] != tc.b {
			t.Errorf("row %q, want %v", r, tc)
		}
	}
	for _, want := range []string{
		"PING -> PONG",
		"HELLO 3 -> server=redis version=7.0.0 proto=3 mode=standalone",
		"(commands each server received: redis-a 1, redis-b 1)",
		`-> ["alice" "3 items" "bob" "1 item" (nil)]`,
		"rosettactl route examples/redis/demo.yaml --attr key=b:cart:1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestRedisDemoConfig: examples/redis/demo.yaml passes validate and routes
// b: keys to redis-b.
func TestRedisDemoConfig(t *testing.T) {
	out := mustRun(t, "validate", redisDemoFile)
	if !strings.Contains(out, ": ok (1 listener, 1 route configuration, 2 clusters, 0 endpoint sets)") {
		t.Errorf("validate:\n%s", out)
	}
	out = mustRun(t, "route", redisDemoFile, "--attr", "key=b:cart:1")
	if !strings.Contains(out, `route "prefix-b"`) || !regexp.MustCompile(`(?m)^redis-b +100%`).MatchString(out) {
		t.Errorf("route:\n%s", out)
	}
}

// TestDemoRedisConfigFlag: the Redis part runs another config, with servers
// named after its clusters; it refuses a config whose listener is not Redis.
func TestDemoRedisConfigFlag(t *testing.T) {
	cfg := strings.NewReplacer("redis-a", "main", "redis-b", "carts").Replace(readFile(t, redisDemoFile))
	out := redisPart(t, mustRun(t, "demo", "--redis-config", writeFile(t, cfg), "--calls", "5", "--concurrency", "2"))
	if r := row(t, out, "b:cart:1"); len(r) != 5 || r[2] != "carts" || r[4] != "yes" || !strings.Contains(out, "main on 127.0.0.1:") {
		t.Errorf("custom config: %q\n%s", r, out)
	}
	if _, err := run(t, "demo", "--redis-config", demoFile, "--calls", "5"); err == nil || !strings.Contains(err.Error(), `uses codec "dubbo"`) {
		t.Errorf("a Dubbo config as the Redis part: got %v", err)
	}
}
