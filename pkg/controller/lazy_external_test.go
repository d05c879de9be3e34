package controller_test

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
	"github.com/rosetta-mesh/rosetta/pkg/proxy"
)

// Three Dubbo services: greeter and echo each on a port of their own,
// late sharing greeter's 20880 (it loses the port number to the older
// greeter).
const lazyMesh = `
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  clusterIPs: [10.0.0.1]
  ports: [{name: tcp-dubbo, port: 20880}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: demo, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  clusterIPs: [10.0.0.2]
  ports: [{name: tcp-dubbo, port: 20990}]
---
apiVersion: v1
kind: Service
metadata: {name: late, namespace: demo, creationTimestamp: "2026-01-03T00:00:00Z"}
spec:
  clusterIPs: [10.0.0.3]
  ports: [{name: tcp-dubbo, port: 20880}]
`

const (
	greeterHost = "greeter.demo.svc.cluster.local"
	echoHost    = "echo.demo.svc.cluster.local"
	lateHost    = "late.demo.svc.cluster.local"
	fallback    = "rosetta-fallback.rosetta-system.svc.cluster.local"
)

func lazyIndex(t *testing.T, fallbackAddr string) *controller.Index {
	t.Helper()
	in := &controller.Inputs{}
	if err := in.AddYAML([]byte(lazyMesh)); err != nil {
		t.Fatal(err)
	}
	opts := goldenOptions
	opts.LazyFallback = fallbackAddr
	return (&controller.Builder{Options: opts}).Build(in)
}

func lazyProxy(hbone bool, learned ...string) *controller.Proxy {
	p := &controller.Proxy{ID: "app-1", Namespace: "demo", Mode: controller.ModeSidecar, Lazy: true, HBONE: hbone, Learned: map[string]bool{}}
	for _, d := range learned {
		p.Learned[d] = true
	}
	return p
}

// clusterNames lists a generation's clusters, sorted.
func clusterNames(res *config.Resources) []string {
	var out []string
	for _, c := range res.Clusters {
		out = append(out, c.GetName())
	}
	slices.Sort(out)
	return out
}

// routeClusters maps each route configuration to the clusters its routes
// name.
func routeClusters(res *config.Resources) map[string][]string {
	out := map[string][]string{}
	for _, rc := range res.Routes {
		for _, r := range rc.GetRoutes() {
			out[rc.GetName()] = append(out[rc.GetName()], r.GetRoute().GetCluster())
		}
	}
	return out
}

// A lazy proxy that has learned nothing gets a listener per service port,
// each naming its destination and routing to the fallback at its port,
// and no cluster of any service; one that learned greeter gets greeter's
// route and cluster, and echo stays behind the fallback. The fallback's
// clusters stay: a call on its way through one survives the learning.
func TestLazyNarrowsToLearnedDestinations(t *testing.T) {
	ix := lazyIndex(t, fallback)
	fb20880, fb20990 := controller.ClusterName(fallback, 20880, ""), controller.ClusterName(fallback, 20990, "")
	greeter, echo := controller.ClusterName(greeterHost, 20880, ""), controller.ClusterName(echoHost, 20990, "")

	cold := ix.Generate(lazyProxy(false))
	checkLazy(t, cold)
	if got, want := clusterNames(cold), []string{fb20880, fb20990}; !slices.Equal(got, want) {
		t.Errorf("clusters before any call = %v, want only the fallback's %v", got, want)
	}
	want := map[string][]string{
		controller.ListenerName(greeterHost, 20880): {fb20880},
		controller.ListenerName(echoHost, 20990):    {fb20990},
	}
	if got := routeClusters(cold); !mapsEqual(got, want) {
		t.Errorf("routes before any call = %v, want %v", got, want)
	}
	for _, l := range cold.Listeners {
		for _, fc := range l.GetFilterChains() {
			d := controllertest.ListenerFilter(t, fc).GetLazy().GetDestination()
			if wantD := map[string]string{
				controller.ListenerName(greeterHost, 20880): greeterHost + ":20880",
				controller.ListenerName(echoHost, 20990):    echoHost + ":20990",
			}[l.GetName()]; d != wantD {
				t.Errorf("listener %s: lazy destination %q, want %q", l.GetName(), d, wantD)
			}
		}
	}
	if len(cold.Endpoints) != 2 || cold.Endpoints[0].GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress() != fallback {
		t.Errorf("fallback endpoints = %v, want the fallback's address", cold.Endpoints)
	}

	warm := ix.Generate(lazyProxy(false, controller.LazyDestination(greeterHost, 20880)))
	checkLazy(t, warm)
	if got, want := clusterNames(warm), []string{greeter, fb20880, fb20990}; !slices.Equal(got, want) {
		t.Errorf("clusters after greeter was learned = %v, want %v", got, want)
	}
	want[controller.ListenerName(greeterHost, 20880)] = []string{greeter}
	if got := routeClusters(warm); !mapsEqual(got, want) {
		t.Errorf("routes after greeter was learned = %v, want %v", got, want)
	}
	for _, c := range clusterNames(warm) {
		if c == echo {
			t.Errorf("echo, never called, has a cluster")
		}
	}
	// Learning changes routes and clusters only: callers' connections
	// stay on the same listeners.
	if len(cold.Listeners) != len(warm.Listeners) {
		t.Fatalf("listeners: %d before, %d after learning", len(cold.Listeners), len(warm.Listeners))
	}
	for i := range cold.Listeners {
		if !proto.Equal(cold.Listeners[i], warm.Listeners[i]) {
			t.Errorf("listener %s changed when a destination was learned", cold.Listeners[i].GetName())
		}
	}
}

// Without a fallback the controller sends a lazy proxy every
// destination's config, as to any proxy; a proxy not in lazy mode gets
// no lazy destination on its listeners.
func TestLazyWithoutFallbackGetsEverything(t *testing.T) {
	ix := lazyIndex(t, "")
	res := ix.Generate(lazyProxy(false))
	if got, want := clusterNames(res), []string{controller.ClusterName(greeterHost, 20880, ""), controller.ClusterName(echoHost, 20990, "")}; !slices.Equal(got, want) {
		t.Errorf("clusters = %v, want every service's %v", got, want)
	}
	eager := &controller.Proxy{ID: "gw", Namespace: "demo"}
	for _, l := range lazyIndex(t, fallback).Generate(eager).Listeners {
		if d := controllertest.ListenerFilter(t, l.GetFilterChains()[0]).GetLazy(); d != nil {
			t.Errorf("listener %s of a proxy not in lazy mode has lazy %v", l.GetName(), d)
		}
	}
}

// A service reached only through HBONE (it lost its port number) keeps
// its routes on a lazy proxy: the fallback, dialled at that number, would
// serve the port's owner.
func TestLazyKeepsListenersReachedOnlyThroughHBONE(t *testing.T) {
	res := lazyIndex(t, fallback).Generate(lazyProxy(true))
	checkLazy(t, res)
	got := routeClusters(res)[controller.ListenerName(lateHost, 20880)]
	if want := []string{controller.ClusterName(lateHost, 20880, "")}; !slices.Equal(got, want) {
		t.Errorf("late's routes = %v, want %v", got, want)
	}
	if got := routeClusters(res)[controller.ListenerName(greeterHost, 20880)]; !slices.Equal(got, []string{controller.ClusterName(fallback, 20880, "")}) {
		t.Errorf("greeter's routes = %v, want the fallback", got)
	}
}

// Proxies of one scope that learned the same destinations share a scope
// key (and so one generation); another learned set, or none, is another
// scope; lazy mode leaves other proxies' keys as they were.
func TestLazyScopeKey(t *testing.T) {
	a, b := lazyProxy(false, "x:1", "y:2"), lazyProxy(false, "y:2", "x:1")
	b.ID = "app-2"
	if a.ScopeKey() != b.ScopeKey() {
		t.Error("proxies with the same learned set have different scope keys")
	}
	for _, other := range []*controller.Proxy{lazyProxy(false, "x:1"), lazyProxy(false), lazyProxy(false, "x:1", "y:2", "z:3")} {
		if other.ScopeKey() == a.ScopeKey() {
			t.Errorf("learned %v shares the scope key of learned %v", other.Learned, a.Learned)
		}
	}
	eager := &controller.Proxy{Namespace: "demo", Mode: controller.ModeSidecar}
	if eager.ScopeKey() == lazyProxy(false).ScopeKey() {
		t.Error("a lazy proxy shares the scope key of a proxy not in lazy mode")
	}
	if got, want := eager.ScopeKey(), `"demo"|"sidecar"|""|""|false`; got != want {
		t.Errorf("scope key of a proxy not in lazy mode = %s, want %s", got, want)
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// checkLazy fails t when the proxy would refuse a lazy proxy's resources.
func checkLazy(t *testing.T, res *config.Resources) {
	t.Helper()
	controllertest.Check(t, lazyProxy(false), res)
	if err := proxy.Validate(*res); err != nil {
		t.Fatal(err)
	}
}

// The fallback (a proxy of rosetta-system without a Sidecar) sees
// neither a service exported to its own namespace only nor, for the
// fallback, the same owner of a port number as a lazy proxy that a
// Sidecar narrows: there an older service of another namespace holds
// 20990. A lazy proxy keeps the routes of both (private and echo), and
// sends through the fallback only what the fallback serves (greeter).
func TestLazyKeepsWhatTheFallbackDoesNotServe(t *testing.T) {
	in := &controller.Inputs{}
	if err := in.AddYAML([]byte(lazyMesh + `
---
apiVersion: v1
kind: Service
metadata:
  name: private
  namespace: demo
  creationTimestamp: "2026-01-04T00:00:00Z"
  annotations: {networking.istio.io/exportTo: "."}
spec:
  clusterIPs: [10.0.0.4]
  ports: [{name: tcp-dubbo, port: 20991}]
---
apiVersion: v1
kind: Service
metadata: {name: old, namespace: other, creationTimestamp: "2025-12-01T00:00:00Z"}
spec:
  clusterIPs: [10.0.1.1]
  ports: [{name: tcp-dubbo, port: 20990}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: demo}
spec:
  egress: [{hosts: ["./*"]}]
`)); err != nil {
		t.Fatal(err)
	}
	opts := goldenOptions
	opts.LazyFallback = fallback
	res := (&controller.Builder{Options: opts}).Build(in).Generate(lazyProxy(false))
	checkLazy(t, res)
	privateHost := "private.demo.svc.cluster.local"
	want := map[string][]string{
		controller.ListenerName(greeterHost, 20880): {controller.ClusterName(fallback, 20880, "")},
		controller.ListenerName(echoHost, 20990):    {controller.ClusterName(echoHost, 20990, "")},
		controller.ListenerName(privateHost, 20991): {controller.ClusterName(privateHost, 20991, "")},
	}
	if got := routeClusters(res); !mapsEqual(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
	// Only greeter's listener reports its destination: learning the
	// others would change nothing but the proxy's scope.
	for _, l := range res.Listeners {
		d := controllertest.ListenerFilter(t, l.GetFilterChains()[0]).GetLazy().GetDestination()
		if want := map[string]string{controller.ListenerName(greeterHost, 20880): greeterHost + ":20880"}[l.GetName()]; d != want {
			t.Errorf("listener %s: lazy destination %q, want %q", l.GetName(), d, want)
		}
	}
}
