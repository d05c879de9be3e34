package xds_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

const lazyMesh = `apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  ports: [{name: tcp-dubbo, port: 20880}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter
  namespace: demo
  labels: {kubernetes.io/service-name: greeter}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20881}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: demo}
spec:
  ports: [{name: tcp-dubbo, port: 20990}]
`

const (
	lazyFallback   = "127.0.0.9"
	greeterDest    = "greeter.demo.svc.cluster.local:20880"
	greeterCluster = "outbound|20880||greeter.demo.svc.cluster.local"
)

// startLazyServer serves lazyMesh with a fallback, in process.
func startLazyServer(t *testing.T, reg prometheus.Registerer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := xds.NewServer(ctx, xds.Options{Logger: quiet, Registerer: reg})
	in := &controller.Inputs{}
	if err := in.AddYAML([]byte(lazyMesh)); err != nil {
		t.Fatal(err)
	}
	srv.Update((&controller.Builder{Options: controller.Options{LazyFallback: lazyFallback}}).Build(in), time.Now())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return lis.Addr().String()
}

func clustersOf(res config.Resources) []string {
	var out []string
	for _, c := range res.Clusters {
		out = append(out, c.GetName())
	}
	slices.Sort(out)
	return out
}

// A lazy proxy's report of a destination, a delta subscription over its
// ADS stream, widens its config to that destination; a second proxy that
// reports the same one before it connects gets the widened config as its
// first, from the same generation; a destination unused for the idle time
// is withdrawn and the config narrows again.
func TestLazyProxyLearnsOverXDS(t *testing.T) {
	reg := prometheus.NewRegistry()
	addr := startLazyServer(t, reg)
	fallbackOnly := []string{"outbound|20880||" + lazyFallback, "outbound|20990||" + lazyFallback}
	widened := []string{"outbound|20880||" + lazyFallback, greeterCluster, "outbound|20990||" + lazyFallback}

	destsA := client.NewDestinations(time.Hour)
	a := &recorder{}
	startClientWith(t, client.Options{Address: addr, NodeID: "a", Namespace: "demo", Delta: true, Lazy: destsA}, a)
	waitFor(t, "a's first set", func() bool { _, n := a.last(); return n > 0 })
	if res, _ := a.last(); !slices.Equal(clustersOf(res), fallbackOnly) {
		t.Fatalf("clusters before any call = %v, want %v", clustersOf(res), fallbackOnly)
	}

	destsA.Opened(greeterDest)
	waitFor(t, "greeter in a's config", func() bool { res, _ := a.last(); return slices.Equal(clustersOf(res), widened) })
	generations := metricValue(t, reg, "rosetta_xds_scope_generations_total", nil)

	destsB := client.NewDestinations(time.Hour)
	destsB.Opened(greeterDest)
	b := &recorder{}
	startClientWith(t, client.Options{Address: addr, NodeID: "b", Namespace: "demo", Delta: true, Lazy: destsB}, b)
	waitFor(t, "b's first set", func() bool { _, n := b.last(); return n > 0 })
	b.mu.Lock()
	first := b.sets[0]
	b.mu.Unlock()
	if !slices.Equal(clustersOf(first), widened) {
		t.Errorf("b's first clusters = %v, want %v: the report goes before the config", clustersOf(first), widened)
	}
	if got := metricValue(t, reg, "rosetta_xds_scope_generations_total", nil); got != generations {
		t.Errorf("b, with a's scope and learned set, cost %v generations, want none", got-generations)
	}

	// An unused destination stays for the idle time; a's is withdrawn
	// once its last connection has been closed that long.
	destsA.Closed(greeterDest)
	destsA.Expire()
	if names := destsA.Names(); !names[greeterDest] {
		t.Fatalf("a withdrew %s at once; want it kept for the idle time", greeterDest)
	}
	narrow := client.NewDestinations(time.Nanosecond)
	narrow.Opened(greeterDest)
	c := &recorder{}
	startClientWith(t, client.Options{Address: addr, NodeID: "c", Namespace: "demo", Delta: true, Lazy: narrow}, c)
	waitFor(t, "greeter in c's config", func() bool { res, _ := c.last(); return slices.Equal(clustersOf(res), widened) })
	narrow.Closed(greeterDest)
	time.Sleep(time.Millisecond)
	narrow.Expire()
	waitFor(t, "c's config narrowed again", func() bool { res, _ := c.last(); return slices.Equal(clustersOf(res), fallbackOnly) })
}

// Lazy mode reports over delta subscriptions: a state-of-the-world client
// is refused it.
func TestLazyNeedsDelta(t *testing.T) {
	err := client.Run(context.Background(), client.Options{Address: "127.0.0.1:1", NodeID: "x", Lazy: client.NewDestinations(time.Hour)}, func(config.Resources) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "Delta") {
		t.Errorf("Run = %v, want an error saying lazy mode needs delta", err)
	}
}
