package controller

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// changesMesh is the mesh TestAffectsIsSound edits, as files: namespaces a
// and b scoped to themselves by Sidecars (b also sees c), c unscoped (it
// sees every namespace); a's MetaRouter sends some calls to b's service.
// Each service's endpoint is a Pod's.
func changesMesh() map[string]string {
	files := map[string]string{
		"sidecars": `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: a}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: b}
spec: {egress: [{hosts: ["./*", "c/*"]}]}
`,
		"router-a": `apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: a}
spec:
  hosts: [greeter]
  routes:
  - {name: to-b, match: {attributes: {method: {exact: toB}}}, route: [{destination: {host: greeter.b.svc.cluster.local}}]}
  - {name: rest, route: [{destination: {host: greeter, subset: v1}}]}
`,
	}
	for _, ns := range []string{"a", "b", "c"} {
		files["svc-"+ns] = changesService(ns, "greeter", 20880, "10.0.0.1")
		files["rule-"+ns] = changesRule(ns, "v1")
		files["pod-"+ns] = changesPod(ns, "greeter", "v1")
	}
	return files
}

// changesVIPs are the services' cluster IPs, so that a proxy that
// terminates HBONE has a listener for each.
var changesVIPs = map[string]string{"a/greeter": "10.96.0.1", "b/greeter": "10.96.0.2", "c/greeter": "10.96.0.3", "a/other": "10.96.0.4", "b/other": "10.96.0.5"}

// changesRouterTo is a MetaRouter of ns's greeter that sends every call
// to a subset of a's greeter.
func changesRouterTo(ns, subset string) string {
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: %s}
spec:
  hosts: [greeter]
  routes: [{name: all, route: [{destination: {host: greeter.a.svc.cluster.local, subset: %q}}]}]
`, ns, subset)
}

func changesService(ns, name string, port int, addr string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s}
spec: {clusterIPs: [%[5]s], ports: [{name: tcp-dubbo, port: %[3]d}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[2]s-1, namespace: %[1]s, labels: {kubernetes.io/service-name: %[2]s}}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20881}]
endpoints: [{addresses: [%[4]s], targetRef: {kind: Pod, name: %[2]s-pod}}]
`, ns, name, port, addr, changesVIPs[ns+"/"+name])
}

func changesPod(ns, name, version string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s-pod, namespace: %s, labels: {version: %s}}
spec: {containers: [{name: app, image: app}]}
`, name, ns, version)
}

func changesRule(ns, subset string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: %s}
spec:
  host: greeter
  subsets: [{name: %s, labels: {version: v1}}]
`, ns, subset)
}

// changesInputs reads files as the folder source does: a file that did
// not change since the last read gives the same objects (parsed holds
// them by content).
func changesInputs(t *testing.T, files map[string]string, parsed map[string]*Inputs) *Inputs {
	t.Helper()
	in := &Inputs{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		key := name + "\x00" + files[name]
		if parsed[key] == nil {
			parsed[key] = &Inputs{}
			if err := parsed[key].AddYAML([]byte(files[name])); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		in.append(parsed[key])
	}
	return in
}

func sameResources(a, b *config.Resources) bool {
	return protosEqual(a.Listeners, b.Listeners) && protosEqual(a.Clusters, b.Clusters) &&
		protosEqual(a.Endpoints, b.Endpoints) && protosEqual(a.Routes, b.Routes) && protosEqual(a.Secrets, b.Secrets)
}

func protosEqual[T proto.Message](a, b []T) bool {
	return slices.EqualFunc(a, b, func(x, y T) bool { return proto.Equal(x, y) })
}

// TestAffectsIsSound edits the mesh one object at a time and checks, for
// proxies of every namespace, that a proxy Affects says the edit does not
// reach gets the same resources from the new Index as from the old (so
// keeping its last generation is right), and that the edit reaches the
// proxies it should and no others. The three greeters share port 20880:
// a proxy that sees more than one has a listener for the oldest only (or,
// terminating HBONE, one reached through HBONE for each other). Lazy
// proxies: la in a has learned nothing, la-l in a has learned a's greeter,
// lc-h in c terminates HBONE and has learned nothing, so its listeners of
// b's and c's greeters, which lost the port number, keep their routes.
func TestAffectsIsSound(t *testing.T) {
	lazy := func(id, ns string, hbone bool, learned ...string) *Proxy {
		p := &Proxy{ID: id, Namespace: ns, Lazy: true, HBONE: hbone, Learned: map[string]bool{}}
		for _, d := range learned {
			p.Learned[d] = true
		}
		return p
	}
	proxies := []*Proxy{
		{ID: "a", Namespace: "a"}, {ID: "b", Namespace: "b"}, {ID: "c", Namespace: "c"},
		{ID: "a-id", Namespace: "a", Identity: "spiffe://cluster.local/ns/a/sa/default"},
		lazy("la", "a", false), lazy("la-l", "a", false, "greeter.a.svc.cluster.local:20880"), lazy("lc-h", "c", true),
	}
	all := "a b c a-id la la-l lc-h"
	steps := []struct {
		name    string
		file    string
		content string
		reaches string // the proxies the edit reaches, space-separated
	}{
		{"a's Pod", "pod-a", changesPod("a", "greeter", "v2"), "a c a-id la-l"},
		{"a's router", "router-a", strings.Replace(changesMesh()["router-a"], "subset: v1", "subset: v2", 1), "a c a-id la-l"},
		// a's router sends calls to b's greeter.
		{"b's endpoints", "svc-b", changesService("b", "greeter", 20880, "10.0.0.2"), "a b c a-id la-l lc-h"},
		// Only lc-h has a listener for c's greeter, and its routes.
		{"c's endpoints", "svc-c", changesService("c", "greeter", 20880, "10.0.0.3"), "lc-h"},
		{"c's rule", "rule-c", changesRule("c", "v3"), "lc-h"},
		{"a's load balancer", "rule-a", changesRule("a", "v1") + "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n", "a c a-id la-l"},
		{"a new service in b", "svc-b2", changesService("b", "other", 20890, "10.0.0.4"), "b c lc-h"},
		{"a new service in a", "svc-a2", changesService("a", "other", 20890, "10.0.0.5"), "a c a-id la la-l lc-h"},
		{"a's Sidecar", "sidecars", strings.Replace(changesMesh()["sidecars"], `["./*"]`, `["./*", "c/*"]`, 1), "a a-id la la-l"},
		{"a mesh-wide policy", "peer", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n", all},
		{"a's Telemetry", "telemetry-a", "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: logs, namespace: a}\nspec: {accessLogging: [{providers: [{name: envoy}]}]}\n", "a a-id la la-l"},
		{"a mesh-wide Telemetry", "telemetry-root", "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: logs, namespace: istio-system}\nspec: {accessLogging: [{providers: [{name: envoy}]}]}\n", all},
		{"nothing a proxy reads", "cm", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: a}\n", ""},
		// Only lc-h has c's greeter's routes: the router sends its calls to
		// a's greeter, so that only its routes say lc-h reads it.
		{"c's router", "router-c", changesRouterTo("c", ""), "lc-h"},
		{"c's router edited", "router-c", changesRouterTo("c", "v1"), "lc-h"},
		// a's proxies see c since the Sidecar's edit.
		{"c's service gone", "svc-c", "", all},
		// a's router names subset v1 of a's service, and b's service.
		{"a's rule", "rule-a", changesRule("a", "v3"), "a c a-id la-l"},
		{"a's other service's port", "svc-a2", changesService("a", "other", 20891, "10.0.0.5"), "a c a-id la la-l lc-h"},
		// la routes to the fallback, and a service gone may have held a
		// port number in the fallback's view: its ports are not known.
		{"b's service gone", "svc-b", "", "a b c a-id la la-l lc-h"},
	}
	b := &Builder{Options: Options{Resolve: fakeResolver, LazyFallback: "10.1.1.1"}}
	files := changesMesh()
	parsed := map[string]*Inputs{}
	in := changesInputs(t, files, parsed)
	ix := b.Build(in)
	var pushed pushedSet
	pushed.diff(b, in)
	type generated struct {
		res  *config.Resources
		deps *Deps
	}
	last := map[string]generated{}
	for _, p := range proxies {
		res, deps := ix.GenerateDeps(p)
		last[p.ID] = generated{res, deps}
	}
	for _, st := range steps {
		files[st.file] = st.content
		next := changesInputs(t, files, parsed)
		c := pushed.diff(b, next)
		nix := b.build(next, c, ix.seq)
		fresh := (&Builder{Options: b.Options}).Build(next)
		if !reflect.DeepEqual(nix.Statuses, fresh.Statuses) {
			t.Errorf("%s: MetaRouter statuses %v, want those of a Builder of its own, %v", st.name, nix.Statuses, fresh.Statuses)
		}
		var reached []string
		for _, p := range proxies {
			res, deps := nix.GenerateDeps(p)
			if !sameResources(res, fresh.Generate(p)) {
				t.Errorf("%s: proxy %s gets other resources than from a Builder of its own (the services it kept are stale)", st.name, p.ID)
			}
			if nix.Affects(p, last[p.ID].deps) {
				reached = append(reached, p.ID)
			} else if !sameResources(res, last[p.ID].res) {
				t.Errorf("%s: proxy %s not reached, but its resources changed", st.name, p.ID)
			}
			last[p.ID] = generated{res, deps}
		}
		want := strings.Fields(st.reaches)
		sort.Strings(want)
		sort.Strings(reached)
		if !slices.Equal(reached, want) {
			t.Errorf("%s reaches %v, want %v", st.name, reached, want)
		}
		if c.None() != (st.name == "nothing a proxy reads") {
			t.Errorf("%s: Changes.None() = %v", st.name, c.None())
		}
		// A service none of whose objects changed is the one built before.
		for h, svc := range nix.services {
			if old := ix.services[h]; old != nil && !c.Hosts[h] && !c.All && old != svc {
				t.Errorf("%s: service %s built again", st.name, h)
			}
		}
		ix = nix
	}
}

// TestNoChangeNoPush: a read that finds what the last push had (the same
// file's objects parsed again, a status changed) builds nothing and
// calls Unchanged instead of Push; a changed object pushes.
func TestNoChangeNoPush(t *testing.T) {
	files := changesMesh()
	var pushes, unchanged int
	p := &Pipeline{
		Builder: &Builder{Options: Options{Resolve: fakeResolver}},
		// Every read parses the files again: new objects, equal ones.
		Inputs:    func() (*Inputs, error) { return changesInputs(t, files, map[string]*Inputs{}), nil },
		Push:      func(*Index, time.Time) { pushes++ },
		Unchanged: func() { unchanged++ },
	}
	p.PushNow(time.Now())
	p.PushNow(time.Now())
	if pushes != 1 || unchanged != 1 {
		t.Fatalf("two reads of the same files: %d pushes and %d unchanged, want 1 and 1", pushes, unchanged)
	}
	files["router-a"] = strings.Replace(files["router-a"], "subset: v1", "subset: v2", 1)
	p.PushNow(time.Now())
	if pushes != 2 || unchanged != 1 {
		t.Fatalf("an edited MetaRouter: %d pushes and %d unchanged, want 2 and 1", pushes, unchanged)
	}
}
