package controller

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkEdit measures what one MetaRouter edit costs the pipeline in
// a mesh shaped as bench/scale's (a Dubbo Service with two EndpointSlices,
// a DestinationRule with two subsets and a MetaRouter per service; a
// Sidecar per namespace): reading the inputs, finding what changed,
// building the Index and generating the one scope the edit reaches.
func BenchmarkEdit(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchmarkEdit(b, n, n/100) })
	}
}

func benchmarkEdit(b *testing.B, services, namespaces int) {
	parts := make([]*Inputs, 0, 2*services+namespaces)
	routerAt := make([]int, services)
	parse := func(yaml string) *Inputs {
		in := &Inputs{}
		if err := in.AddYAML([]byte(yaml)); err != nil {
			b.Fatal(err)
		}
		return in
	}
	for i := 0; i < services; i++ {
		parts = append(parts, parse(benchService(i, namespaces)))
		routerAt[i] = len(parts)
		parts = append(parts, parse(benchRouterYAML(i, namespaces, "init")))
	}
	for n := 0; n < namespaces; n++ {
		parts = append(parts, parse(fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: ns-%d}\nspec: {egress: [{hosts: [\"./*\"]}]}\n", n)))
	}
	edited := 0
	p := &Pipeline{
		Builder: &Builder{Options: Options{Resolve: fakeResolver}},
		Inputs: func() (*Inputs, error) {
			in := &Inputs{}
			for _, part := range parts {
				in.append(part)
			}
			return in, nil
		},
		Push: func(ix *Index, _ time.Time) {
			ix.GenerateDeps(&Proxy{ID: "p", Namespace: fmt.Sprintf("ns-%d", edited%namespaces)})
		},
	}
	p.PushNow(time.Now())
	b.ReportAllocs()
	b.ResetTimer()
	for k := 0; k < b.N; k++ {
		edited = (k * 7919) % services
		parts[routerAt[edited]] = parse(benchRouterYAML(edited, namespaces, fmt.Sprintf("e%d", k)))
		p.PushNow(time.Now())
	}
}

func benchService(i, namespaces int) string {
	ns, name := fmt.Sprintf("ns-%d", i%namespaces), fmt.Sprintf("svc-%d", i)
	ip := func(e int) string { return fmt.Sprintf("10.%d.%d.%d", i/256, i%256, e) }
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s}
spec: {ports: [{name: tcp-dubbo, port: %[3]d, targetPort: 20880}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s-v1, namespace: %[2]s, labels: {kubernetes.io/service-name: %[1]s, version: v1}}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20880}]
endpoints: [{addresses: [%[4]s]}, {addresses: [%[5]s]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s-v2, namespace: %[2]s, labels: {kubernetes.io/service-name: %[1]s, version: v2}}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20880}]
endpoints: [{addresses: [%[6]s]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  host: %[1]s.%[2]s.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
`, name, ns, 20000+i, ip(1), ip(2), ip(3))
}

func benchRouterYAML(i, namespaces int, method string) string {
	ns := fmt.Sprintf("ns-%d", i%namespaces)
	host := fmt.Sprintf("svc-%d.%s.svc.cluster.local", i, ns)
	return fmt.Sprintf(`apiVersion: metaprotocol.rosetta.dev/v1alpha1
kind: MetaRouter
metadata: {name: svc-%[1]d, namespace: %[2]s}
spec:
  hosts: [%[3]s]
  routes:
  - {name: one-method, match: {attributes: {method: {exact: %[4]s}}}, route: [{destination: {host: %[3]s, subset: v1}}]}
  - {name: everything-else, route: [{destination: {host: %[3]s, subset: v2}}]}
`, i, ns, host, method)
}
