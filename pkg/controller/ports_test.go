package controller

import (
	"strings"
	"testing"
)

// TestPortsOutsideTheRangeAreLeftOut: a port number above 65535 in a
// Service, an EndpointSlice, a ServiceEntry or a WorkloadEntry (the folder
// source has no API server to refuse them) is left out of the proxies'
// config, and the build refuses it naming the object and field; the rest
// of the object is kept.
func TestPortsOutsideTheRangeAreLeftOut(t *testing.T) {
	in := &Inputs{}
	err := in.AddYAML([]byte(`apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  ports: [{name: tcp-dubbo, port: 20880}, {name: tcp-dubbo-big, port: 70000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: greeter-1, namespace: demo, labels: {kubernetes.io/service-name: greeter}}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 70002}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: demo}
spec:
  hosts: [orders.example]
  ports: [{name: tcp-dubbo, number: 20881}, {name: tcp-dubbo-big, number: 70001}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.2, ports: {tcp-dubbo: 70003}}
  - {address: 10.0.0.3}
`))
	if err != nil {
		t.Fatal(err)
	}
	ix := (&Builder{Options: Options{Resolve: fakeResolver}}).Build(in)
	res := ix.Generate(&Proxy{ID: "p", Namespace: "demo"})
	var listeners []string
	for _, l := range res.Listeners {
		listeners = append(listeners, l.GetName())
		if p := l.GetAddress().GetSocketAddress().GetPortValue(); p > 65535 {
			t.Errorf("listener %s on port %d", l.GetName(), p)
		}
	}
	if got := strings.Join(listeners, " "); got != "greeter.demo.svc.cluster.local_20880 orders.example_20881" {
		t.Errorf("listeners %q, want the two valid ports'", got)
	}
	for _, cla := range res.Endpoints {
		for _, lle := range cla.GetEndpoints() {
			for _, e := range lle.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				if sa.GetPortValue() > 65535 || sa.GetAddress() == "10.0.0.2" {
					t.Errorf("%s has endpoint %s:%d", cla.GetClusterName(), sa.GetAddress(), sa.GetPortValue())
				}
			}
		}
	}
	want := []string{
		"EndpointSlice demo/greeter-1: ports[0].port: 70002 is not a port (1-65535); the port is left out",
		"Service demo/greeter: spec.ports[1].port: 70000 is not a port (1-65535); the port is left out",
		"ServiceEntry demo/orders: spec.endpoints[0].ports[tcp-dubbo]: 70003 is not a port (1-65535); the endpoint is left out",
		"ServiceEntry demo/orders: spec.ports[1].number: 70001 is not a port (1-65535); the port is left out",
	}
	if got := ix.Refused(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("refused:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
