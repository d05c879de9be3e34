package xds_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
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

// lazyIndex is lazyMesh, and extra, with a fallback.
func lazyIndex(t *testing.T, extra string) *controller.Index {
	t.Helper()
	in := &controller.Inputs{}
	if err := in.AddYAML([]byte(lazyMesh + extra)); err != nil {
		t.Fatal(err)
	}
	return (&controller.Builder{Options: controller.Options{LazyFallback: lazyFallback}}).Build(in)
}

// startLazyServer serves lazyMesh with a fallback, in process.
func startLazyServer(t *testing.T, reg prometheus.Registerer) (string, *xds.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := xds.NewServer(ctx, xds.Options{Logger: quiet, Registerer: reg})
	srv.Update(lazyIndex(t, ""), time.Now())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return lis.Addr().String(), srv
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
	addr, _ := startLazyServer(t, reg)
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

// A lazy proxy that reconnects with destinations it learned sends them as
// its stream's first request: its first generation on the new stream
// already has them, and it is the only one; no set without them is made
// or pushed. The scope it left is gone by then (a push since dropped it),
// so the reconnection has to generate.
func TestLazyProxyReconnectsWithWhatItLearned(t *testing.T) {
	reg := prometheus.NewRegistry()
	addr, srv := startLazyServer(t, reg)
	widened := []string{"outbound|20880||" + lazyFallback, greeterCluster, "outbound|20990||" + lazyFallback}
	generations := func() float64 { return metricValue(t, reg, "rosetta_xds_scope_generations_total", nil) }
	clusterPushes := func() float64 {
		return metricValue(t, reg, "rosetta_xds_pushes_total", map[string]string{"type": "Cluster"})
	}
	dests := client.NewDestinations(time.Hour)
	dests.Opened(greeterDest)

	for i, what := range []string{"connection", "reconnection"} {
		gens, pushes := generations(), clusterPushes()
		rec := &recorder{}
		stop := runLazyClient(t, client.Options{Address: addr, NodeID: "a", Namespace: "demo", Delta: true, Lazy: dests}, rec)
		waitFor(t, "a's config", func() bool { res, _ := rec.last(); return slices.Equal(clustersOf(res), widened) })
		rec.mu.Lock()
		first := rec.sets[0]
		rec.mu.Unlock()
		if !slices.Equal(clustersOf(first), widened) {
			t.Errorf("%s: first clusters = %v, want %v", what, clustersOf(first), widened)
		}
		if got := generations() - gens; got != 1 {
			t.Errorf("%s: %v scope generations, want 1 (with the learned destination)", what, got)
		}
		if got := clusterPushes() - pushes; got != 1 {
			t.Errorf("%s: clusters pushed %v times, want once", what, got)
		}
		stop()
		waitFor(t, "a to leave", func() bool { return len(srv.Nodes()) == 0 })
		if i == 0 {
			// A push with no proxy of the scope left drops it.
			srv.Update(lazyIndex(t, "---\napiVersion: v1\nkind: Service\nmetadata: {name: more, namespace: demo}\nspec:\n  ports: [{name: tcp-dubbo, port: 21000}]\n"), time.Now())
			widened = append(widened, "outbound|21000||"+lazyFallback)
			slices.Sort(widened)
		}
	}
}

// runLazyClient runs client.Run with opts (as startClientWith) until the
// returned stop is called.
func runLazyClient(t *testing.T, opts client.Options, rec *recorder) (stop func()) {
	t.Helper()
	opts.ListenAddress, opts.Mode, opts.Logger = "127.0.0.1", "waypoint", quiet
	opts.InitialBackoff, opts.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx, opts, rec.apply) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("client.Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// A lazy proxy that learns a destination changing none of its resources
// (one the mesh does not have) moves to another scope, generated with
// resources equal to those it holds: it is sent nothing, and the snapshot
// cache holds the new scope's snapshot, not the one before, which would
// otherwise outlive the scope it left. A push then sends it one set, so
// none was sent in between.
func TestLazyProxyLearningNothingNewHoldsOneSnapshot(t *testing.T) {
	reg := prometheus.NewRegistry()
	addr, srv := startLazyServer(t, reg)
	widened := []string{"outbound|20880||" + lazyFallback, greeterCluster, "outbound|20990||" + lazyFallback}
	dests := client.NewDestinations(time.Hour)
	dests.Opened(greeterDest)
	rec := &recorder{}
	startClientWith(t, client.Options{Address: addr, NodeID: "a", Namespace: "demo", Delta: true, Lazy: dests}, rec)
	waitFor(t, "a's config", func() bool { res, _ := rec.last(); return slices.Equal(clustersOf(res), widened) })
	before, _ := heldOnce(t, srv, "a")
	_, sets := rec.last()
	typesPushed := func() float64 { return metricValue(t, reg, "rosetta_xds_pushes_total", nil) }
	typed := typesPushed()

	dests.Opened("nowhere.demo.svc.cluster.local:1")
	waitFor(t, "a's new scope to be set", func() bool {
		cached, node, scope, _ := srv.Held("a")
		return node != before && cached == node && node == scope
	})
	if got := typesPushed() - typed; got != 0 {
		t.Errorf("%v types pushed for a scope with equal resources, want none", got)
	}

	srv.Update(lazyIndex(t, "---\napiVersion: v1\nkind: Service\nmetadata: {name: more, namespace: demo}\nspec:\n  ports: [{name: tcp-dubbo, port: 21000}]\n"), time.Now())
	waitFor(t, "the new service's fallback cluster", func() bool {
		res, _ := rec.last()
		return slices.Contains(clustersOf(res), "outbound|21000||"+lazyFallback)
	})
	if _, n := rec.last(); n != sets+1 {
		t.Errorf("a got %d sets for one push since it learned, want 1", n-sets)
	}
	heldOnce(t, srv, "a")
}
