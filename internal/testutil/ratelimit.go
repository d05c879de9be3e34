package testutil

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RateLimitVersion is the github.com/envoyproxy/ratelimit build that
// hack/build-ratelimit.sh makes.
const RateLimitVersion = "v1.4.1-0.20260122083618-3fb702589d36"

// rateLimitBinary finds Envoy's rate limit service: in $ROSETTA_RATELIMIT
// (the Makefile sets it), else where hack/build-ratelimit.sh builds by
// default. Missing, the test fails under CI=true.
func rateLimitBinary(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("ROSETTA_RATELIMIT")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "rosetta", "ratelimit-"+RateLimitVersion)
	}
	bin := filepath.Join(dir, "ratelimit")
	if _, err := os.Stat(bin); err != nil {
		Unavailable(t, "Envoy's rate limit service", fmt.Errorf("%w: run hack/build-ratelimit.sh", err))
	}
	return bin
}

// RateLimitService is a running envoyproxy/ratelimit with a real
// redis-server as its store.
type RateLimitService struct {
	Proc *Process
	// GRPC is the address of its RateLimitService; Metrics the URL of its
	// own counters (its Prometheus sink).
	GRPC, Metrics string
}

// StartRateLimitService runs the service with rules (its YAML config)
// until the test ends, and waits until it has loaded them.
func StartRateLimitService(t testing.TB, rules string) *RateLimitService {
	t.Helper()
	bin := rateLimitBinary(t)
	redis := RedisServer(t)
	root := t.TempDir()
	cfgDir := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "rules.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	return OnFreePorts(t, 4, func(ports []int) (*RateLimitService, error) {
		at := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
		s := &RateLimitService{GRPC: at(1), Metrics: "http://" + at(3) + "/metrics"}
		s.Proc = StartT(t, Command{Name: "ratelimit", Path: bin, Env: []string{
			"HOST=127.0.0.1", "PORT=" + strconv.Itoa(ports[0]),
			"GRPC_HOST=127.0.0.1", "GRPC_PORT=" + strconv.Itoa(ports[1]),
			"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + strconv.Itoa(ports[2]),
			"USE_STATSD=false", "USE_PROMETHEUS=true", "PROMETHEUS_ADDR=" + at(3),
			"STATS_FLUSH_INTERVAL=200ms",
			"REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + redis,
			"RUNTIME_ROOT=" + root, "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_WATCH_ROOT=false",
			"LOG_LEVEL=info",
		}})
		// healthcheck answers 200 once a config is loaded.
		return s, s.Proc.Ready(30*time.Second, "to load its config", HTTPOK("http://"+at(0)+"/healthcheck"))
	})
}

// Counter reads one of the service's own counters, 0 while it has none.
func (s *RateLimitService) Counter(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return Scrape(t, s.Metrics, name, labels...)
}

// Scrape returns the value of the Prometheus series of name at url whose
// labels include every one given (`key="value"`), 0 when there is none.
func Scrape(t testing.TB, url, name string, labels ...string) float64 {
	t.Helper()
	for _, l := range strings.Split(Get(t, url), "\n") {
		series, value, ok := strings.Cut(l, " ")
		if !ok || !strings.HasPrefix(series, name+"{") {
			continue
		}
		all := true
		for _, lb := range labels {
			all = all && strings.Contains(series, lb)
		}
		if all {
			f, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	return 0
}

// Get is the body of a GET of url (an admin or metrics endpoint); any
// error fails t.
func Get(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
