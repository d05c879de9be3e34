package dubbo

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

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// rateLimitVersion is the github.com/envoyproxy/ratelimit build that
// hack/build-ratelimit.sh makes.
const rateLimitVersion = "v1.4.1-0.20260122083618-3fb702589d36"

// rateLimitBinary finds Envoy's rate limit service: in $ROSETTA_RATELIMIT
// (the Makefile sets it), else where hack/build-ratelimit.sh builds by
// default. Missing, the test fails under CI=true.
func rateLimitBinary(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ROSETTA_RATELIMIT")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "rosetta", "ratelimit-"+rateLimitVersion)
	}
	bin := filepath.Join(dir, "ratelimit")
	if _, err := os.Stat(bin); err != nil {
		testutil.Unavailable(t, "Envoy's rate limit service", fmt.Errorf("%w: run hack/build-ratelimit.sh", err))
	}
	return bin
}

// rateLimitService is a running envoyproxy/ratelimit with a real
// redis-server as its store.
type rateLimitService struct {
	proc *testutil.Process
	// grpc is the address of its RateLimitService; metrics the URL of its
	// own counters (its Prometheus sink).
	grpc, metrics string
}

// startRateLimitService runs the service with config (its YAML rule file)
// and waits until it has loaded it.
func startRateLimitService(t *testing.T, config string) *rateLimitService {
	t.Helper()
	bin := rateLimitBinary(t)
	redis := testutil.RedisServer(t)
	root := t.TempDir()
	cfgDir := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "rules.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return testutil.OnFreePorts(t, 4, func(ports []int) (*rateLimitService, error) {
		at := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
		s := &rateLimitService{grpc: at(1), metrics: "http://" + at(3) + "/metrics"}
		s.proc = testutil.StartT(t, testutil.Command{Name: "ratelimit", Path: bin, Env: []string{
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
		return s, s.proc.Ready(30*time.Second, "to load its config", testutil.HTTPOK("http://"+at(0)+"/healthcheck"))
	})
}

// counter reads one of the service's own counters, 0 while it has none.
func (s *rateLimitService) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return scrape(t, s.metrics, name, labels...)
}

// scrape returns the value of the series of name whose labels include
// every one given (`key="value"`), 0 when there is none.
func scrape(t *testing.T, url, name string, labels ...string) float64 {
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
	for _, l := range strings.Split(string(b), "\n") {
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
