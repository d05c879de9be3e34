package controller_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
	"github.com/rosetta-mesh/rosetta/pkg/controller/controllertest"
)

// TestRoutingSimulation states routing behaviour as a table: a call with
// these attributes, on this port, from this proxy, ends in this cluster
// and these endpoints.
func TestRoutingSimulation(t *testing.T) {
	cases := []struct {
		file, proxy string
		port        uint32
		attrs       map[string]string
		cluster     string
		endpoints   []string
	}{
		{"dubbo-subsets", "waypoint", 20880, map[string]string{"interface": "org.example.Greeter", "method": "sayHello"},
			"outbound|20880|v2|greeter.demo.svc.cluster.local", []string{"127.0.0.2:20882"}},
		{"dubbo-subsets", "waypoint", 20880, map[string]string{"interface": "org.other.Greeter", "method": "sayHello"},
			"outbound|20880|v1|greeter.demo.svc.cluster.local", []string{"127.0.0.1:20881"}},
		{"dubbo-subsets", "waypoint", 20880, map[string]string{"interface": "org.example.Greeter", "method": "sayBye"},
			"outbound|20880|v1|greeter.demo.svc.cluster.local", []string{"127.0.0.1:20881"}},
		{"dubbo-subsets", "waypoint", 8080, nil, "no listener", nil},
		{"aeraki", "waypoint", 20880, map[string]string{"interface": "org.apache.dubbo.samples.basic.api.DemoService", "method": "sayHello", "x-canary": ""},
			"outbound|20880|v1|dubbo-sample-provider.meta-dubbo.svc.cluster.local:20,outbound|20880|v2|dubbo-sample-provider.meta-dubbo.svc.cluster.local:80", nil},
		{"aeraki", "waypoint", 20880, map[string]string{"interface": "org.apache.dubbo.samples.basic.api.DemoService", "method": "sayHello"},
			"no route", nil},
		{"serviceentry", "gw", 20880, map[string]string{"user": "vip-42"}, "outbound|20880|v2|legacy.example.internal", []string{"192.0.2.11:21000"}},
		{"serviceentry", "gw", 20880, map[string]string{"user": "vip-42x"}, "outbound|20880|v1|legacy.example.internal", []string{"192.0.2.10:20990"}},
		{"serviceentry", "gw", 9000, nil, "outbound|9000||video.example.internal", []string{"192.0.2.20:9000"}},
		{"serviceentry", "gw", 9090, nil, "outbound|9090||thrift.example.com", []string{"198.51.100.7:9090", "198.51.100.8:9090"}},
		{"serviceentry", "gw", 5432, nil, "no listener", nil},
		{"sidecar-scope", "proxy-a", 20880, nil, "outbound|20880||alpha.team-a.svc.cluster.local", nil},
		{"sidecar-scope", "proxy-a", 20881, nil, "no listener", nil},
		{"sidecar-scope", "proxy-b", 20880, nil, "no listener", nil},
		{"sidecar-scope", "proxy-b", 20881, nil, "outbound|20881||beta.team-b.svc.cluster.local", nil},
		{"extensions", "waypoint", 8000, map[string]string{"callee": "trpc.shop.cart.Cart"}, "outbound|8000||cart.shop.svc.cluster.local", []string{"10.1.0.1:8000", "10.1.0.2:8000"}},
		{"extensions", "waypoint", 9090, map[string]string{"callee": "x"}, "outbound|9090||orders.shop.svc.cluster.local", nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s/%d/%v", c.file, c.proxy, c.port, c.attrs), func(t *testing.T) {
			ix, proxies := controllertest.BuildFile(t, "testdata/golden/"+c.file+".yaml", goldenOptions)
			var p *controller.Proxy
			for _, q := range proxies {
				if q.ID == c.proxy {
					p = q
				}
			}
			cluster, eps := controllertest.Simulate(t, ix.Generate(p), c.port, c.attrs)
			if cluster != c.cluster {
				t.Fatalf("cluster = %s, want %s", cluster, c.cluster)
			}
			if c.endpoints != nil && strings.Join(eps, " ") != strings.Join(c.endpoints, " ") {
				t.Fatalf("endpoints = %v, want %v", eps, c.endpoints)
			}
		})
	}
}

// TestInvalidUpdateKeepsLastValid proves that an update the controller
// refuses leaves the previous version of the MetaRouter in force, and that
// its status names the field.
func TestInvalidUpdateKeepsLastValid(t *testing.T) {
	in, proxies := controllertest.ReadFile(t, "testdata/golden/dubbo-subsets.yaml")
	b := &controller.Builder{}
	b.Build(in)
	bad := in.MetaRouters[0].DeepCopy()
	bad.Generation = 4
	bad.Spec.Routes[0].Route[0].Weight = 50
	bad.Spec.Routes[0].Route = append(bad.Spec.Routes[0].Route, v1alpha1.MetaRouteDestination{Destination: v1alpha1.Destination{Host: "greeter", Subset: "v1"}, Weight: 40})
	in.MetaRouters[0] = bad
	ix := b.Build(in)
	st := ix.Statuses["demo/greeter"]
	if len(st.Conditions) != 1 || st.Conditions[0].Status != "False" || !strings.Contains(st.Conditions[0].Message, "spec.routes[0].route") ||
		!strings.Contains(st.Conditions[0].Message, "generation 3 stays in force") || st.Generation != 4 {
		t.Fatalf("status = %+v", st)
	}
	got, _ := controllertest.Simulate(t, ix.Generate(proxies[0]), 20880, map[string]string{"interface": "org.example.A", "method": "sayHello"})
	if got != "outbound|20880|v2|greeter.demo.svc.cluster.local" {
		t.Fatalf("the previous route is not in force: %s", got)
	}
	// A controller that never saw a valid version applies nothing of it.
	fresh := (&controller.Builder{}).Build(in)
	got, _ = controllertest.Simulate(t, fresh.Generate(proxies[0]), 20880, map[string]string{"method": "sayHello"})
	if got != "outbound|20880||greeter.demo.svc.cluster.local" {
		t.Fatalf("an invalid MetaRouter reached the proxy: %s", got)
	}
}

// TestControlPlaneExample checks the ready folder config,
// examples/controlplane/config: a proxy in namespace demo listening on
// 127.0.0.1 serves the greeter on 20880, sayHello to 20881, the rest to
// 20882.
func TestControlPlaneExample(t *testing.T) {
	in, err := controller.LoadDir("../../examples/controlplane/config")
	if err != nil {
		t.Fatal(err)
	}
	ix := (&controller.Builder{}).Build(in)
	res := ix.Generate(&controller.Proxy{ID: "p", Namespace: "demo", ListenAddress: "127.0.0.1"})
	if len(res.Listeners) != 1 || res.Listeners[0].GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" {
		t.Fatalf("listeners: %v", res.Listeners)
	}
	for method, want := range map[string]string{"sayHello": "127.0.0.1:20881", "sayBye": "127.0.0.1:20882"} {
		_, eps := controllertest.Simulate(t, res, 20880, map[string]string{"method": method})
		if len(eps) != 1 || eps[0] != want {
			t.Errorf("%s goes to %v, want %s", method, eps, want)
		}
	}
	if st := ix.Statuses["demo/greeter"]; st.Conditions[0].Status != "True" || st.Conditions[1].Status != "True" {
		t.Fatalf("status %+v", st)
	}
}

// TestFQDNEndpointSlice: the names of an FQDN EndpointSlice are resolved
// by the controller (the API server refuses loopback addresses in IPv4
// slices, so local providers are reachable only this way).
func TestFQDNEndpointSlice(t *testing.T) {
	in := &controller.Inputs{}
	err := in.AddYAML([]byte(`apiVersion: v1
kind: Service
metadata: {name: g, namespace: n}
spec:
  ports: [{name: dubbo, port: 20880}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: g-v1, namespace: n, labels: {kubernetes.io/service-name: g, version: v1}}
addressType: FQDN
ports: [{name: dubbo, port: 20881}]
endpoints: [{addresses: [providers.localhost]}, {addresses: [nowhere.invalid]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	ix := (&controller.Builder{}).Build(in)
	_, eps := controllertest.Simulate(t, ix.Generate(&controller.Proxy{Namespace: "n"}), 20880, nil)
	if len(eps) != 1 || eps[0] != "127.0.0.1:20881" {
		t.Fatalf("endpoints %v, want [127.0.0.1:20881]", eps)
	}
}
