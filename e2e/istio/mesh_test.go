package istio

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
	"github.com/rosetta-mesh/rosetta/e2e/k8s/kubeenv"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// The mesh as istiod and Rosetta's controller see it, built by hand: there
// is no kubelet, scheduler or controller-manager.

// workload is a mesh workload as istiod sees it: a ServiceAccount, a Pod
// reported Ready with an IP, a Service selecting it and an EndpointSlice
// naming the Pod. Nothing listens on the IP.
type workload struct {
	Namespace, Name, ServiceAccount string
	// IP is the pod IP: the API server refuses loopback addresses in
	// EndpointSlices, so a documentation or private address.
	IP     string
	Labels map[string]string
	Ports  []kubeenv.Port
}

// spiffeID is the identity istiod's CA gives the workload's certificates.
func (w workload) spiffeID() string {
	return fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", w.Namespace, w.ServiceAccount)
}

// createWorkload creates the objects of w.
func createWorkload(t *testing.T, c *kubeenv.Cluster, w workload) {
	t.Helper()
	labels := map[string]string{"app": w.Name}
	for k, v := range w.Labels {
		labels[k] = v
	}
	var ports []int
	for _, p := range w.Ports {
		ports = append(ports, p.TargetPort)
	}
	c.ServiceAccount(t, w.Namespace, w.ServiceAccount)
	c.CreatePod(t, kubeenv.Pod{Namespace: w.Namespace, Name: w.Name, ServiceAccount: w.ServiceAccount,
		IP: w.IP, Labels: labels, Ports: ports})
	c.CreateService(t, kubeenv.Service{Namespace: w.Namespace, Name: w.Name, Selector: map[string]string{"app": w.Name}, Ports: w.Ports})
	var slicePorts []kubeenv.Port
	for _, p := range w.Ports {
		slicePorts = append(slicePorts, kubeenv.Port{Name: p.Name, Port: p.TargetPort, AppProtocol: p.AppProtocol})
	}
	c.CreateEndpointSlice(t, kubeenv.EndpointSlice{Namespace: w.Namespace, Name: w.Name, Service: w.Name,
		Ports: slicePorts, Endpoints: []kubeenv.Endpoint{{Address: w.IP, Pod: w.Name}}})
}

// provider is a dubbo-go provider published as a Service on this machine.
type provider struct {
	*dubbokit.Provider
	// Service is its Service's name; Port the Service's port, free on
	// this machine, so a proxy's listener for it can bind it.
	Service string
	Port    int
}

// startProvider starts a dubbo-go provider of dubbokit.Greeter named name
// (answers start with it) and publishes it as Service svc in ns, port
// tcp-dubbo, with an FQDN EndpointSlice of providers.localhost (loopback by
// RFC 6761; the API server refuses loopback IPv4 endpoints) labelled
// version=name. Rosetta's controller resolves FQDN slices; istiod does not
// read them.
func startProvider(t *testing.T, c *kubeenv.Cluster, ns, svc, name string) *provider {
	t.Helper()
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: name, Version: "1.0.0"})
	port := testutil.FreePort(t)
	c.CreateService(t, kubeenv.Service{Namespace: ns, Name: svc, Ports: []kubeenv.Port{{Name: "tcp-dubbo", Port: port, TargetPort: p.Port()}}})
	c.CreateEndpointSlice(t, kubeenv.EndpointSlice{Namespace: ns, Name: svc + "-" + name, Service: svc, AddressType: "FQDN",
		Labels: map[string]string{"version": name}, Ports: []kubeenv.Port{{Name: "tcp-dubbo", Port: p.Port()}},
		Endpoints: []kubeenv.Endpoint{{Address: "providers.localhost"}}})
	return &provider{Provider: p, Service: svc, Port: port}
}

// scopeToNamespace keeps the proxies of ns to the services of ns, so that
// proxies of several tests on one machine do not bind the same ports.
func scopeToNamespace(t *testing.T, c *kubeenv.Cluster, ns string) {
	t.Helper()
	c.Apply(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: %s}
spec:
  egress: [{hosts: ["./*"]}]
`, ns))
}

// TestHarness checks the pieces later scenarios stand on.
func TestHarness(t *testing.T) {
	c, m := needMesh(t)

	t.Run("istiod indexes a Ready pod behind a Service with its identity", func(t *testing.T) {
		const ns = "harness"
		c.MustNamespace(t, ns)
		w := workload{Namespace: ns, Name: "greeter", ServiceAccount: "greeter", IP: "10.244.0.10",
			Ports: []kubeenv.Port{{Name: "tcp-dubbo", Port: 20880, TargetPort: 20880}}}
		createWorkload(t, c, w)
		var shards string
		err := testutil.Poll(10*time.Second, "the endpoint in istiod", func() (bool, error) {
			shards = m.debug(t, "endpointShardz")
			return strings.Contains(shards, w.IP) && strings.Contains(shards, w.spiffeID()), nil
		})
		if err != nil {
			t.Fatalf("%v; /debug/endpointShardz:\n%s", err, testutil.Tail([]byte(shards), 3000))
		}
	})

	t.Run("Rosetta's controller and proxy carry dubbo-go calls", func(t *testing.T) {
		const ns = "plain"
		c.MustNamespace(t, ns)
		scopeToNamespace(t, c, ns)
		p := startProvider(t, c, ns, "greeter", "v1")
		ctrlBin, proxyBin := rosettaBinaries(t, c)
		ctrl := c.StartController(t, ctrlBin, "", "")
		c.StartProxy(t, proxyBin, ctrl.XDSAddr, "plain-proxy", ns, "--listen-address=127.0.0.1")
		addr := fmt.Sprintf("127.0.0.1:%d", p.Port)
		testutil.WaitDialable(t, addr)
		consumer := dubbokit.NewConsumer(t, addr, dubbokit.ConsumerConfig{Version: "1.0.0", Timeout: 10 * time.Second})
		if got, err := consumer.SayHello(context.Background(), "x"); err != nil || got != "v1: hello x" {
			t.Fatalf("sayHello through the proxy = %q, %v", got, err)
		}
	})

	t.Run("a stand-in sidecar follows istiod's outbound TCP routing", func(t *testing.T) {
		const ns, port = "standin", 20880
		c.MustNamespace(t, ns)
		ports := []kubeenv.Port{{Name: "tcp-dubbo", Port: port, TargetPort: port}}
		for _, name := range []string{"greeter", "other"} {
			createWorkload(t, c, workload{Namespace: ns, Name: name, ServiceAccount: name, IP: nextPodIP(), Ports: ports})
		}
		vip := strings.TrimSpace(c.MustKubectl(t, "", "get", "svc", "greeter", "-n", ns, "-o", "jsonpath={.spec.clusterIP}"))
		caller := sidecarNode{Namespace: ns, Pod: "caller", IP: nextPodIP(), ServiceAccount: "caller",
			Labels: map[string]string{"app": "caller"}}
		// istiod serves the sidecar without its Pod (the node id and
		// metadata are enough); the Pod is there as a real caller's is.
		c.ServiceAccount(t, ns, caller.ServiceAccount)
		c.CreatePod(t, kubeenv.Pod{Namespace: ns, Name: caller.Pod, ServiceAccount: caller.ServiceAccount,
			IP: caller.IP, Labels: caller.Labels})
		s := startStandInSidecar(t, m, caller)

		greeter := fmt.Sprintf("outbound|%d||greeter.%s.svc.cluster.local", port, ns)
		s.waitOutboundCluster(t, vip, port, greeter)
		c.Apply(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter-to-other, namespace: %[1]s}
spec:
  hosts: [greeter.%[1]s.svc.cluster.local]
  tcp:
  - match: [{port: %[2]d}]
    route: [{destination: {host: other.%[1]s.svc.cluster.local, port: {number: %[2]d}}}]
`, ns, port))
		s.waitOutboundCluster(t, vip, port, fmt.Sprintf("outbound|%d||other.%s.svc.cluster.local", port, ns))
		c.MustKubectl(t, "", "delete", "virtualservice", "greeter-to-other", "-n", ns)
		s.waitOutboundCluster(t, vip, port, greeter)
	})
}
