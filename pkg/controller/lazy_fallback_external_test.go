package controller_test

import (
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
)

// fallbackMesh is the fallback's Service, as the chart renders it
// (headless, no ports), with two pods with Istio identities.
const fallbackMesh = `
apiVersion: v1
kind: Service
metadata: {name: rosetta-fallback, namespace: rosetta-system}
spec: {clusterIP: None, selector: {app: rosetta-fallback}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: rosetta-fallback-1, namespace: rosetta-system, labels: {kubernetes.io/service-name: rosetta-fallback}}
addressType: IPv4
endpoints:
- {addresses: [10.1.0.1], targetRef: {kind: Pod, name: fallback-a}}
- {addresses: [10.1.0.2], targetRef: {kind: Pod, name: fallback-b}}
---
apiVersion: v1
kind: Pod
metadata: {name: fallback-a, namespace: rosetta-system, labels: {security.istio.io/tlsMode: istio}}
spec: {serviceAccountName: rosetta-fallback, containers: [{name: proxy, image: proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: fallback-b, namespace: rosetta-system, labels: {security.istio.io/tlsMode: istio}}
spec: {serviceAccountName: rosetta-fallback, containers: [{name: proxy, image: proxy}]}
`

const fallbackID = "spiffe://cluster.local/ns/rosetta-system/sa/rosetta-fallback"

// fallbackCluster generates for p with the fallback address addr over
// lazyMesh and extra objects, and returns the fallback's cluster and
// endpoints at greeter's port.
func fallbackCluster(t *testing.T, addr, extra string, p *controller.Proxy) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	t.Helper()
	in := &controller.Inputs{}
	if err := in.AddYAML([]byte(lazyMesh + "---\n" + extra)); err != nil {
		t.Fatal(err)
	}
	opts := goldenOptions
	opts.LazyFallback = addr
	res := (&controller.Builder{Options: opts}).Build(in).Generate(p)
	controllertest.Check(t, p, res)
	name := controller.ClusterName(addr, 20880, "")
	i := slices.IndexFunc(res.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == name })
	j := slices.IndexFunc(res.Endpoints, func(c *endpointv3.ClusterLoadAssignment) bool { return c.GetClusterName() == name })
	if i < 0 || j < 0 {
		t.Fatalf("no cluster %s with endpoints in %v", name, clusterNames(res))
	}
	return res.Clusters[i], res.Endpoints[j]
}

// fallbackEndpoints lists a load assignment's endpoints as address:port,
// with "+tls" for those whose metadata selects Istio mTLS.
func fallbackEndpoints(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, le := range cla.GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			s := controller.LazyDestination(sa.GetAddress(), sa.GetPortValue())
			if _, tls := e.GetMetadata().GetFilterMetadata()[config.TransportSocketMatchKey]; tls {
				s += "+tls"
			}
			out = append(out, s)
		}
	}
	return out
}

// clusterTLS says how a cluster secures its connections: "auto" (Istio's
// auto mTLS matches), "istio" (mTLS on every endpoint) or "" (none),
// with the SNI and the identities verified.
func clusterTLS(t *testing.T, c *clusterv3.Cluster) (mode, sni string, sans []string) {
	t.Helper()
	socket := c.GetTransportSocket()
	mode = "istio"
	if ms := c.GetTransportSocketMatches(); len(ms) > 0 {
		socket, mode = ms[0].GetTransportSocket(), "auto"
	}
	if socket == nil {
		return "", "", nil
	}
	ctx, err := config.UpstreamTLS(socket)
	if err != nil || ctx == nil {
		t.Fatalf("%s: transport socket %v: %v", c.GetName(), socket, err)
	}
	for _, m := range ctx.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		sans = append(sans, m.GetMatcher().GetExact())
	}
	return mode, ctx.GetSni(), sans
}

// The fallback cluster of a lazy proxy, by the fallback address and the
// proxy's identity: a Service the controller knows gets Istio's rules
// for that Service (auto mTLS from its pods' tlsMode label, the pods'
// service accounts as the identities to verify, its DestinationRule),
// its pods dialled at the destination's port; an IP or an unknown name,
// or a proxy without an identity, keeps the plain endpoint.
func TestLazyFallbackCluster(t *testing.T) {
	withID := lazyProxy(false)
	withID.Identity = "spiffe://cluster.local/ns/demo/sa/app"
	sni := "outbound_.20880_._." + fallback
	rule := func(tls string) string {
		return "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: fallback, namespace: rosetta-system}\nspec:\n  host: rosetta-fallback\n  trafficPolicy: {tls: " + tls + "}\n"
	}
	cases := []struct {
		name, addr, extra string
		proxy             *controller.Proxy
		mode, sni         string
		sans, endpoints   []string
	}{
		{"a Service, auto mTLS", fallback, fallbackMesh, withID, "auto", sni, []string{fallbackID},
			[]string{"10.1.0.1:20880+tls", "10.1.0.2:20880+tls"}},
		{"a pod without a sidecar is sent plaintext", fallback, strings.Replace(fallbackMesh,
			"{name: fallback-b, namespace: rosetta-system, labels: {security.istio.io/tlsMode: istio}}\nspec: {serviceAccountName: rosetta-fallback,",
			"{name: fallback-b, namespace: rosetta-system}\nspec: {serviceAccountName: legacy,", 1),
			withID, "auto", sni, []string{"spiffe://cluster.local/ns/rosetta-system/sa/legacy", fallbackID},
			[]string{"10.1.0.1:20880+tls", "10.1.0.2:20880"}},
		{"a DestinationRule's ISTIO_MUTUAL", fallback, fallbackMesh + rule("{mode: ISTIO_MUTUAL, sni: fallback.example}"), withID, "istio", "fallback.example", []string{fallbackID},
			[]string{"10.1.0.1:20880+tls", "10.1.0.2:20880+tls"}},
		{"a DestinationRule's DISABLE", fallback, fallbackMesh + rule("{mode: DISABLE}"), withID, "", "", nil,
			[]string{"10.1.0.1:20880+tls", "10.1.0.2:20880+tls"}},
		{"a Service with ports is still dialled at the destination's port", fallback,
			strings.NewReplacer("{clusterIP: None, selector: {app: rosetta-fallback}}", "{ports: [{name: http-metrics, port: 15090}]}",
				"addressType: IPv4", "addressType: IPv4\nports: [{name: http-metrics, port: 15090}]").Replace(fallbackMesh),
			withID, "auto", sni, []string{fallbackID}, []string{"10.1.0.1:20880+tls", "10.1.0.2:20880+tls"}},
		{"a proxy without an identity", fallback, fallbackMesh, lazyProxy(false), "", "", nil, []string{fallback + ":20880"}},
		{"an IP", "10.9.9.9", fallbackMesh, withID, "", "", nil, []string{"10.9.9.9:20880"}},
		{"a name that is no Service", "fallback.example.com", fallbackMesh, withID, "", "", nil, []string{"fallback.example.com:20880"}},
		{"a Service not there", fallback, "", withID, "", "", nil, []string{fallback + ":20880"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, cla := fallbackCluster(t, c.addr, c.extra, c.proxy)
			mode, sni, sans := clusterTLS(t, cl)
			if mode != c.mode || sni != c.sni || !slices.Equal(sans, c.sans) {
				t.Errorf("TLS %q, SNI %q, SANs %v; want %q, %q, %v", mode, sni, sans, c.mode, c.sni, c.sans)
			}
			if got := fallbackEndpoints(cla); !slices.Equal(got, c.endpoints) {
				t.Errorf("endpoints %v, want %v", got, c.endpoints)
			}
		})
	}
}
