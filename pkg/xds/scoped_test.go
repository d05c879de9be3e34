package xds_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/xds"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

// scopedNamespace is one namespace of the scoped mesh: a Sidecar that
// keeps its proxies to it, and a Dubbo service with two subsets.
func scopedNamespace(ns string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: %[1]s}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: %[1]s}
spec:
  ports: [{name: tcp-dubbo, port: 20880}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-v1
  namespace: %[1]s
  labels: {kubernetes.io/service-name: greeter, version: v1}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20881}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-v2
  namespace: %[1]s
  labels: {kubernetes.io/service-name: greeter, version: v2}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20882}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: %[1]s}
spec:
  host: greeter
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, ns)
}

func scopedRouter(ns, subset string) string {
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: %s}
spec:
  hosts: [greeter]
  routes:
  - name: all
    route: [{destination: {host: greeter, subset: %s}}]
`, ns, subset)
}

// metricValue sums a metric's samples whose labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue samples
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 5*time.Second, what, cond)
}

// waitWithin polls cond for up to d.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEditCostsWhatItChanges: proxies of three namespaces, each scoped to
// its own by a Sidecar, make three scopes; a second proxy of a scope
// takes its generation. An edit in one namespace generates that
// namespace's scope only; a change to what no proxy reads (an unrelated
// ConfigMap, a file rewritten as it was) generates nothing and makes no
// push; a mesh-wide policy generates every scope.
func TestEditCostsWhatItChanges(t *testing.T) {
	dir := t.TempDir()
	for _, ns := range []string{"a", "b", "c"} {
		writeFile(t, filepath.Join(dir, ns+".yaml"), scopedNamespace(ns))
		writeFile(t, filepath.Join(dir, ns+"-router.yaml"), scopedRouter(ns, "v1"))
	}
	reg := prometheus.NewRegistry()
	c := startControllerWith(t, dir, "", xds.Options{Registerer: reg})
	recs := map[string]*recorder{}
	for _, id := range []string{"a1", "a2", "b1", "c1"} {
		recs[id] = &recorder{}
		startClient(t, c.addr, id, id[:1], recs[id])
	}
	cluster := func(id string) string {
		res, _ := recs[id].last()
		return sayHelloCluster(res)
	}
	subset := func(ns, s string) string { return fmt.Sprintf("outbound|20880|%s|greeter.%s.svc.cluster.local", s, ns) }
	waitFor(t, "every proxy's config", func() bool {
		for id, r := range recs {
			if _, n := r.last(); n == 0 || cluster(id) != subset(id[:1], "v1") {
				return false
			}
		}
		return true
	})
	generations := func() float64 { return metricValue(t, reg, "rosetta_xds_scope_generations_total", nil) }
	if got := generations(); got != 3 {
		t.Fatalf("%v scope generations for 4 proxies in 3 scopes, want 3", got)
	}
	sets := func(id string) int { _, n := recs[id].last(); return n }
	bSets, cSets := sets("b1"), sets("c1")

	// An edit in namespace a: scope a only.
	writeFile(t, filepath.Join(dir, "a-router.yaml"), scopedRouter("a", "v2"))
	waitFor(t, "a's proxies to get v2", func() bool {
		return cluster("a1") == subset("a", "v2") && cluster("a2") == subset("a", "v2")
	})
	if got := generations(); got != 4 {
		t.Errorf("%v scope generations after an edit in one of 3 scoped namespaces, want 4 (3 + 1)", got)
	}
	if sets("b1") != bSets || sets("c1") != cSets {
		t.Errorf("proxies of b and c got %d and %d sets after an edit in a, want none", sets("b1")-bSets, sets("c1")-cSets)
	}

	// Nothing a proxy reads: no build, no push, no generation.
	pushes := metricValue(t, reg, "rosetta_xds_push_duration_seconds", nil)
	unchanged := metricValue(t, reg, "rosetta_controller_unchanged_reads_total", nil)
	writeFile(t, filepath.Join(dir, "settings.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: a}\ndata: {k: v}\n")
	waitFor(t, "the ConfigMap's read", func() bool {
		return metricValue(t, reg, "rosetta_controller_unchanged_reads_total", nil) > unchanged
	})
	unchanged = metricValue(t, reg, "rosetta_controller_unchanged_reads_total", nil)
	writeFile(t, filepath.Join(dir, "b-router.yaml"), scopedRouter("b", "v1"))
	waitFor(t, "the rewritten MetaRouter's read", func() bool {
		return metricValue(t, reg, "rosetta_controller_unchanged_reads_total", nil) > unchanged
	})
	if got := metricValue(t, reg, "rosetta_xds_push_duration_seconds", nil); got != pushes {
		t.Errorf("%v pushes for changes no proxy reads, want none", got-pushes)
	}
	if got := generations(); got != 4 {
		t.Errorf("%v scope generations for changes no proxy reads, want none", got-4)
	}

	// A mesh-wide policy: every scope.
	writeFile(t, filepath.Join(dir, "peer.yaml"), "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: PERMISSIVE}}\n")
	waitFor(t, "every scope generated again", func() bool { return generations() == 7 })

	// A new proxy of an existing scope takes its generation.
	recs["b2"] = &recorder{}
	startClient(t, c.addr, "b2", "b", recs["b2"])
	waitFor(t, "b2's config", func() bool { return sets("b2") > 0 })
	if got := generations(); got != 7 {
		t.Errorf("a new proxy of an existing scope made %v generations, want none", got-7)
	}
}

// moreServices are n Dubbo services of a namespace, each on a port of
// its own with one endpoint.
func moreServices(ns string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: svc-%[2]d, namespace: %[1]s}
spec:
  ports: [{name: tcp-dubbo, port: %[3]d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-%[2]d
  namespace: %[1]s
  labels: {kubernetes.io/service-name: svc-%[2]d}
addressType: IPv4
ports: [{name: tcp-dubbo, port: %[3]d}]
endpoints: [{addresses: [127.0.0.1]}]
`, ns, i, 30000+i)
	}
	return b.String()
}

// TestProxiesConnectingAtOnceShareOneGeneration: proxies of two scopes
// connecting together, after the first push, are generated for outside
// the server's locks, but each scope once: those that come while their
// scope is being generated wait for it. The scopes have services enough
// that their generation takes a while.
func TestProxiesConnectingAtOnceShareOneGeneration(t *testing.T) {
	dir := t.TempDir()
	for _, ns := range []string{"a", "b"} {
		writeFile(t, filepath.Join(dir, ns+".yaml"), scopedNamespace(ns))
		writeFile(t, filepath.Join(dir, ns+"-router.yaml"), scopedRouter(ns, "v2"))
		writeFile(t, filepath.Join(dir, ns+"-more.yaml"), moreServices(ns, 300))
	}
	reg := prometheus.NewRegistry()
	c := startControllerWith(t, dir, "", xds.Options{Registerer: reg})
	waitWithin(t, time.Minute, "the first push", func() bool {
		return metricValue(t, reg, "rosetta_xds_push_duration_seconds", nil) > 0
	})
	recs := map[string]*recorder{}
	for i := range 16 {
		id := fmt.Sprintf("%s%d", []string{"a", "b"}[i%2], i)
		recs[id] = &recorder{}
		startClient(t, c.addr, id, id[:1], recs[id])
	}
	waitWithin(t, time.Minute, "every proxy's config", func() bool {
		for id, r := range recs {
			res, _ := r.last()
			host := "greeter." + id[:1] + ".svc.cluster.local"
			if len(res.Routes) != 301 || greeter20880Cluster(res, host) != "outbound|20880|v2|"+host {
				return false
			}
		}
		return true
	})
	if got := metricValue(t, reg, "rosetta_xds_scope_generations_total", nil); got != 2 {
		t.Errorf("%v scope generations for 16 proxies of 2 scopes connecting at once, want 2", got)
	}
}

// greeter20880Cluster is where the route configuration of host's port 20880
// sends its calls.
func greeter20880Cluster(res config.Resources, host string) string {
	for _, rc := range res.Routes {
		if rc.GetName() == host+"_20880" && len(rc.GetRoutes()) > 0 {
			return rc.GetRoutes()[0].GetRoute().GetCluster()
		}
	}
	return ""
}

// lazyScopedService writes a Dubbo service of namespace a as four files
// (Service, EndpointSlice, DestinationRule, MetaRouter), so that an edit
// rewrites one object.
func lazyScopedService(t *testing.T, dir, name string, port int) {
	t.Helper()
	writeFile(t, filepath.Join(dir, name+"-svc.yaml"), fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %s, namespace: a}
spec:
  ports: [{name: tcp-dubbo, port: %d}]
`, name, port))
	writeFile(t, filepath.Join(dir, name+"-slice.yaml"), lazyScopedSlice(name, "127.0.0.1"))
	writeFile(t, filepath.Join(dir, name+"-rule.yaml"), lazyScopedRule(name, ""))
	writeFile(t, filepath.Join(dir, name+"-router.yaml"), lazyScopedRouter(name, "v1"))
}

func lazyScopedSlice(name, addr string) string {
	return fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s
  namespace: a
  labels: {kubernetes.io/service-name: %[1]s, version: v1}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20881}]
endpoints: [{addresses: [%[2]s]}]
`, name, addr)
}

func lazyScopedRule(name, policy string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s, namespace: a}
spec:
  host: %[1]s
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
%[2]s`, name, policy)
}

func lazyScopedRouter(name, subset string) string {
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: %[1]s, namespace: a}
spec:
  hosts: [%[1]s]
  routes: [{name: all, route: [{destination: {host: %[1]s, subset: %[2]s}}]}]
`, name, subset)
}

// TestLazyScopeIgnoresEditsOfWhatItHasNotLearned: a lazy proxy that has
// learned greeter, not echo, reads echo only for its listener (its routes
// go to the fallback), so an edit of echo's MetaRouter, DestinationRule
// or endpoints, pushed, generates nothing; the same edits of greeter
// generate its scope again, as does a change of echo's Service, which
// its listener is made of.
func TestLazyScopeIgnoresEditsOfWhatItHasNotLearned(t *testing.T) {
	dir := t.TempDir()
	lazyScopedService(t, dir, "greeter", 20880)
	lazyScopedService(t, dir, "echo", 20990)
	reg := prometheus.NewRegistry()
	c := startControllerBuilding(t, dir, "", xds.Options{Registerer: reg}, controller.Options{LazyFallback: "127.0.0.9"})
	dests := client.NewDestinations(time.Hour)
	dests.Opened("greeter.a.svc.cluster.local:20880")
	rec := &recorder{}
	startClientWith(t, client.Options{Address: c.addr, NodeID: "l1", Namespace: "a", Delta: true, Lazy: dests}, rec)
	greeter := func(subset string) string { return "outbound|20880|" + subset + "|greeter.a.svc.cluster.local" }
	waitFor(t, "the lazy proxy's config", func() bool {
		res, _ := rec.last()
		return greeter20880Cluster(res, "greeter.a.svc.cluster.local") == greeter("v1")
	})
	generations := func() float64 { return metricValue(t, reg, "rosetta_xds_scope_generations_total", nil) }
	pushes := func() float64 { return metricValue(t, reg, "rosetta_xds_push_duration_seconds", nil) }
	steps := []struct {
		name, file, content string
		generates           bool
	}{
		{"echo's MetaRouter", "echo-router", lazyScopedRouter("echo", "v2"), false},
		{"echo's DestinationRule", "echo-rule", lazyScopedRule("echo", "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"), false},
		{"echo's EndpointSlice", "echo-slice", lazyScopedSlice("echo", "127.0.0.2"), false},
		{"greeter's MetaRouter", "greeter-router", lazyScopedRouter("greeter", "v2"), true},
		{"greeter's DestinationRule", "greeter-rule", lazyScopedRule("greeter", "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"), true},
		{"greeter's EndpointSlice", "greeter-slice", lazyScopedSlice("greeter", "127.0.0.2"), true},
		{"echo's Service port", "echo-svc", "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: a}\nspec:\n  ports: [{name: tcp-dubbo, port: 20991}]\n", true},
	}
	for _, st := range steps {
		gens, pushed := generations(), pushes()
		writeFile(t, filepath.Join(dir, st.file+".yaml"), st.content)
		waitFor(t, st.name+" pushed", func() bool { return pushes() > pushed })
		want := 0.0
		if st.generates {
			want = 1
		}
		if got := generations() - gens; got != want {
			t.Errorf("%s: %v scope generations, want %v", st.name, got, want)
		}
	}
	waitFor(t, "echo's listener on its new port", func() bool {
		res, _ := rec.last()
		for _, l := range res.Listeners {
			if l.GetName() == "echo.a.svc.cluster.local_20991" {
				return true
			}
		}
		return false
	})
	if res, _ := rec.last(); greeter20880Cluster(res, "greeter.a.svc.cluster.local") != greeter("v2") {
		t.Errorf("greeter routes to %s, want %s", greeter20880Cluster(res, "greeter.a.svc.cluster.local"), greeter("v2"))
	}
}

// shadowService is a Dubbo service of namespace b on greeter's port
// number: a proxy of a that sees it reads it, but greeter, older by name,
// keeps the port's listener, so it adds no resource.
func shadowService(portName string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: shadow, namespace: b}
spec:
  ports: [{name: %s, port: 20880}]
`, portName)
}

// heldOnce checks that the snapshot cache, the proxy and its scope hold
// one snapshot, and returns it and the scope's Deps.
func heldOnce(t *testing.T, srv *xds.Server, id string) (snap, deps string) {
	t.Helper()
	cached, node, scope, deps := srv.Held(id)
	if cached == "" || cached != node || node != scope {
		t.Errorf("%s: the snapshot cache holds %s, the proxy %s, its scope %s: want one snapshot", id, cached, node, scope)
	}
	return scope, deps
}

// TestEqualRegenerationKeepsTheSnapshot: a change that reaches a scope
// but none of its resources (its Sidecar no longer shows it a service
// that had no listener) generates the scope again, sends its proxies
// nothing, and keeps the snapshot in force: the snapshot cache, the
// proxies and the scope hold that one, not it and an equal copy. The
// scope takes the new generation's Deps: an edit of the service it no
// longer sees generates nothing. A real edit then sends each proxy one
// set, so none was sent in between.
func TestEqualRegenerationKeepsTheSnapshot(t *testing.T) {
	dir := t.TempDir()
	sidecarAB := strings.Replace(scopedNamespace("a"), `hosts: ["./*"]`, `hosts: ["./*", "b/*"]`, 1)
	writeFile(t, filepath.Join(dir, "a.yaml"), sidecarAB)
	writeFile(t, filepath.Join(dir, "a-router.yaml"), scopedRouter("a", "v1"))
	writeFile(t, filepath.Join(dir, "b.yaml"), shadowService("tcp-dubbo"))
	reg := prometheus.NewRegistry()
	c := startControllerWith(t, dir, "", xds.Options{Registerer: reg})
	recs := map[string]*recorder{"sotw": {}, "delta": {}}
	startClient(t, c.addr, "sotw", "a", recs["sotw"])
	startClientWith(t, client.Options{Address: c.addr, NodeID: "delta", Namespace: "a", Delta: true}, recs["delta"])
	subset := func(s string) string { return "outbound|20880|" + s + "|greeter.a.svc.cluster.local" }
	gotSubset := func(s string) func() bool {
		return func() bool {
			for _, r := range recs {
				if res, _ := r.last(); sayHelloCluster(res) != subset(s) {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "both proxies' config", gotSubset("v1"))
	if res, _ := recs["sotw"].last(); len(res.Listeners) != 1 {
		t.Fatalf("%d listeners, want greeter's only", len(res.Listeners))
	}
	generations := func() float64 { return metricValue(t, reg, "rosetta_xds_scope_generations_total", nil) }
	pushes := func() float64 { return metricValue(t, reg, "rosetta_xds_push_duration_seconds", nil) }
	typesPushed := func() float64 { return metricValue(t, reg, "rosetta_xds_pushes_total", nil) }
	sets := map[string]int{}
	for id, r := range recs {
		_, sets[id] = r.last()
	}
	before, oldDeps := heldOnce(t, c.srv, "sotw")
	heldOnce(t, c.srv, "delta")

	gens, pushed, typed := generations(), pushes(), typesPushed()
	writeFile(t, filepath.Join(dir, "a.yaml"), scopedNamespace("a"))
	waitFor(t, "the Sidecar's push", func() bool { return pushes() > pushed })
	if got := generations() - gens; got != 1 {
		t.Fatalf("%v scope generations for a change of the scope's Sidecar, want 1", got)
	}
	if got := typesPushed() - typed; got != 0 {
		t.Errorf("%v types pushed for a generation with equal resources, want none", got)
	}
	for id := range recs {
		if snap, deps := heldOnce(t, c.srv, id); snap != before || deps == oldDeps {
			t.Errorf("%s: snapshot %s, Deps %s after a generation with equal resources; want the snapshot before (%s) and the new Deps (not %s)",
				id, snap, deps, before, oldDeps)
		}
	}

	gens, pushed = generations(), pushes()
	writeFile(t, filepath.Join(dir, "b.yaml"), shadowService("dubbo"))
	waitFor(t, "shadow's push", func() bool { return pushes() > pushed })
	if got := generations() - gens; got != 0 {
		t.Errorf("%v scope generations for an edit of a service the scope no longer sees, want none", got)
	}

	writeFile(t, filepath.Join(dir, "a-router.yaml"), scopedRouter("a", "v2"))
	waitFor(t, "both proxies to get v2", gotSubset("v2"))
	for id, r := range recs {
		if _, n := r.last(); n != sets[id]+1 {
			t.Errorf("%s got %d sets for one edit since the equal generation, want 1", id, n-sets[id])
		}
		if snap, _ := heldOnce(t, c.srv, id); snap == before {
			t.Errorf("%s holds the snapshot from before an edit of its route", id)
		}
	}
}
