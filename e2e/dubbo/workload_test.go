package dubbo

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/e2e/dubbo/dubbokit"
)

// withWorkload gives every endpoint of cluster c the workload metadata the
// controller writes: "NAME;NAMESPACE;APP;VERSION;CLUSTER".
func withWorkload(c obj, workload string) obj {
	for _, lb := range c["load_assignment"].(obj)["endpoints"].([]obj)[0]["lb_endpoints"].([]obj) {
		lb["metadata"] = obj{"filter_metadata": obj{"istio": obj{"workload": workload}}}
	}
	return c
}

// A real dubbo-go consumer calls through the proxy from 127.0.0.1, which
// the config has as the endpoint of the frontend workload's service:
// Istio's source labels on the proxy's /metrics name that workload, as a
// waypoint's do from the caller's address. The provider listens on
// 127.0.0.2, so its own endpoint's workload is not the caller's.
func TestSourceWorkloadFromTheCallersAddress(t *testing.T) {
	p := dubbokit.StartProvider(t, dubbokit.ProviderConfig{Name: "a", Version: version, Addr: "127.0.0.2:0"})
	greeter := withWorkload(cluster(t, greeterCluster, p.Addr()), "greeter-v1;shop;greeter;v1;Kubernetes")
	frontend := withWorkload(cluster(t, "outbound|8080||frontend.shop.svc.cluster.local", "127.0.0.1:8080"), "frontend-v2;shop;frontend;v2;Kubernetes")
	px, addr := startProxyWithFilter(t, nil, []obj{route("all", nil, greeterCluster, routeTimeout)}, greeter, frontend)

	c := dubbokit.NewConsumer(t, addr, consumerConfig())
	const n = 5
	for i := range n {
		if _, err := c.SayHello(context.Background(), strconv.Itoa(i)); err != nil {
			t.Fatalf("sayHello %d: %v", i, err)
		}
	}
	m := px.Get(t, "/metrics")
	want := []string{
		`destination_workload="greeter-v1"`,
		`source_app="frontend",source_canonical_revision="v2",source_canonical_service="frontend",source_principal="unknown",source_version="v2",source_workload="frontend-v2",source_workload_namespace="shop"} ` + strconv.Itoa(n),
	}
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, want[0]) && strings.HasSuffix(line, want[1]) {
			return
		}
	}
	t.Errorf("no istio_requests_total series from frontend-v2 to greeter-v1 with %d calls:\n%s", n, grepIstio(m))
}

// grepIstio is the request series of a /metrics page.
func grepIstio(m string) string {
	var out []string
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "istio_requests_total{") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
