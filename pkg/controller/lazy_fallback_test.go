package controller

import (
	"testing"
)

// An edit of the fallback's Service, EndpointSlice or Pods reaches the
// lazy proxies whose fallback clusters are made of them (their Deps hold
// the fallback's host), and changes their clusters.
func TestLazyFallbackEditsReachLazyProxies(t *testing.T) {
	const fallback = "rosetta-fallback.rosetta-system.svc.cluster.local"
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: rosetta-fallback, namespace: rosetta-system}\nspec: {clusterIP: None}\n"
	slice := func(addr string) string {
		return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: fb, namespace: rosetta-system, labels: {kubernetes.io/service-name: rosetta-fallback}}\naddressType: IPv4\n" +
			"endpoints: [{addresses: [" + addr + "], targetRef: {kind: Pod, name: fb-pod}}]\n"
	}
	pod := func(sa string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata: {name: fb-pod, namespace: rosetta-system, labels: {security.istio.io/tlsMode: istio}}\nspec: {serviceAccountName: " + sa + ", containers: [{name: p, image: p}]}\n"
	}
	files := map[string]string{
		"greeter": changesService("demo", "greeter", 20880, "10.0.0.1"),
		"fb-svc":  svc, "fb-slice": slice("10.1.0.1"), "fb-pod": pod("rosetta-fallback"),
	}
	lazy := &Proxy{ID: "lazy", Namespace: "demo", Lazy: true, Identity: "spiffe://cluster.local/ns/demo/sa/app"}
	b := &Builder{Options: Options{Resolve: fakeResolver, LazyFallback: fallback}}
	parsed := map[string]*Inputs{}
	in := changesInputs(t, files, parsed)
	ix := b.Build(in)
	var pushed pushedSet
	pushed.diff(b, in)
	res, deps := ix.GenerateDeps(lazy)
	for _, st := range []struct{ name, file, content string }{
		{"the fallback's endpoints", "fb-slice", slice("10.1.0.2")},
		{"a fallback pod's service account", "fb-pod", pod("other")},
		{"the fallback's Service gone", "fb-svc", ""},
	} {
		files[st.file] = st.content
		next := changesInputs(t, files, parsed)
		nix := b.build(next, pushed.diff(b, next), ix.seq)
		if !nix.Affects(lazy, deps) {
			t.Errorf("%s: the edit does not reach the lazy proxy", st.name)
		}
		nres, ndeps := nix.GenerateDeps(lazy)
		if sameResources(res, nres) {
			t.Errorf("%s: the lazy proxy's resources did not change", st.name)
		}
		if fresh := (&Builder{Options: b.Options}).Build(next).Generate(lazy); !sameResources(nres, fresh) {
			t.Errorf("%s: the lazy proxy gets other resources than from a Builder of its own", st.name)
		}
		ix, res, deps = nix, nres, ndeps
	}
}
