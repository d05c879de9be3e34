package proxy_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/rosetta-mesh/rosetta/examples/toy"
	"github.com/rosetta-mesh/rosetta/pkg/identity/identitytest"
)

// withWorkloads gives each endpoint of cluster c, in order, the workload
// metadata the controller writes ("NAME;NAMESPACE;APP;VERSION;CLUSTER")
// and principal, given as pairs.
func withWorkloads(c obj, pairs ...string) obj {
	lbs := c["load_assignment"].(obj)["endpoints"].([]obj)[0]["lb_endpoints"].([]obj)
	for i := 0; i+1 < len(pairs); i += 2 {
		md := obj{"workload": pairs[i]}
		if pairs[i+1] != "" {
			md["principal"] = pairs[i+1]
		}
		lbs[i/2]["metadata"] = obj{"filter_metadata": obj{"istio": md}}
	}
	return c
}

// dialFrom is dial from the local address ip (any 127/8 address is
// loopback's).
func dialFrom(t testing.TB, ip, addr string) *toy.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := toy.NewClient(nc)
	t.Cleanup(func() { c.Close() })
	return c
}

// sourceLabels is the source labels of a series, as /metrics shows them.
func sourceLabels(app, version, principal, workload, namespace string) string {
	return `source_app="` + app + `",source_canonical_revision="` + version + `",source_canonical_service="` + app +
		`",source_principal="` + principal + `",source_version="` + version + `",source_workload="` + workload +
		`",source_workload_namespace="` + namespace + `"`
}

// Istio's metrics carry the destination service from the cluster's name
// and the workload from the endpoint's metadata, the codec's response
// code (the Status name for the toy codec, which has no ResponseCoder),
// and Envoy's response flags for failures the proxy saw.
func TestIstioMetricsLabels(t *testing.T) {
	a, _ := named(t, "a")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	const svc = "outbound|20880||greeter.shop.svc.cluster.local"
	withWorkload := withWorkloads(cluster(svc, "", a.Addr()), "greeter-v1;shop;greeter;v1;Kubernetes", "spiffe://cluster.local/ns/shop/sa/greeter")
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r",
			route("ok", match("method", "ok"), obj{"cluster": svc}),
			route("down", match("method", "down"), obj{"cluster": "down"}))},
		[]obj{withWorkload, cluster("down", "", deadAddr)})
	// From an address no endpoint has: the server's, 127.0.0.1, would
	// make the caller greeter-v1.
	c := dialFrom(t, "127.0.0.3", p.Addr(t, "in"))
	for range 3 {
		answeredBy(t, c, map[string]string{"method": "ok"})
	}
	call(t, c, map[string]string{"method": "nope"})
	call(t, c, map[string]string{"method": "down"})
	m := p.Get(t, "/metrics")
	dest := `destination_app="greeter",destination_canonical_revision="v1",destination_canonical_service="greeter",destination_principal="spiffe://cluster.local/ns/shop/sa/greeter",destination_service="greeter.shop.svc.cluster.local",destination_service_name="greeter",destination_service_namespace="shop",destination_version="v1",destination_workload="greeter-v1",destination_workload_namespace="shop"`
	none := `destination_app="unknown",destination_canonical_revision="unknown",destination_canonical_service="unknown",destination_principal="unknown"`
	src := `source_app="unknown",source_canonical_revision="unknown",source_canonical_service="unknown",source_principal="unknown",source_version="unknown",source_workload="unknown",source_workload_namespace="unknown"`
	for _, want := range []string{
		`istio_requests_total{connection_security_policy="none",` + dest + `,reporter="waypoint",request_protocol="toy",response_code="ok",response_flags="-",` + src + `} 3`,
		`istio_requests_total{connection_security_policy="none",` + none + `,destination_service="unknown",destination_service_name="unknown",destination_service_namespace="unknown",destination_version="unknown",destination_workload="unknown",destination_workload_namespace="unknown",reporter="waypoint",request_protocol="toy",response_code="no_route",response_flags="NR",` + src + `} 1`,
		`destination_service="down",destination_service_name="down",destination_service_namespace="unknown",destination_version="unknown",destination_workload="unknown",destination_workload_namespace="unknown",reporter="waypoint",request_protocol="toy",response_code="no_upstream",response_flags="UF",` + src + `} 1`,
		`istio_request_duration_milliseconds_count{connection_security_policy="none",` + dest,
		`istio_request_bytes_count{connection_security_policy="none",` + dest,
		`istio_response_bytes_count{connection_security_policy="none",` + dest,
		`istio_tcp_connections_opened_total{connection_security_policy="none",` + none + `,destination_service="unknown",destination_service_name="unknown",destination_service_namespace="unknown",destination_version="unknown",destination_workload="unknown",destination_workload_namespace="unknown",reporter="waypoint",request_protocol="tcp",response_flags="-",` + src + `} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, "istio_requests_total") || strings.HasPrefix(l, "istio_tcp") {
				t.Log(l)
			}
		}
	}
}

// A plaintext caller whose address is an endpoint's is labelled with that
// endpoint's workload, its principal unknown; an address two workloads
// share names neither, and one no endpoint has stays unknown.
func TestIstioSourceWorkloadFromTheCallersAddress(t *testing.T) {
	srv, _ := named(t, "greeter")
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r", route("all", nil, obj{"cluster": "greeter"}))},
		[]obj{
			cluster("greeter", "", srv.Addr()),
			withWorkloads(cluster("frontend", "", "127.0.0.3:8080", "127.0.0.4:8080"),
				"frontend-v2;shop;frontend;v2;Kubernetes", "spiffe://cluster.local/ns/shop/sa/frontend",
				"batch-7;jobs;batch;v1;Kubernetes", ""),
			withWorkloads(cluster("host-network", "", "127.0.0.4:9090"), "agent;kube-system;agent;v1;Kubernetes", ""),
		})
	for _, ip := range []string{"127.0.0.3", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		answeredBy(t, dialFrom(t, ip, p.Addr(t, "in")), map[string]string{"method": "hi"})
	}
	m := p.Get(t, "/metrics")
	for _, want := range []string{
		`response_flags="-",` + sourceLabels("frontend", "v2", "unknown", "frontend-v2", "shop") + `} 2`,
		`response_flags="-",` + sourceLabels("unknown", "unknown", "unknown", "unknown", "unknown") + `} 2`,
		`istio_tcp_connections_opened_total{connection_security_policy="none",destination_app="unknown",destination_canonical_revision="unknown",destination_canonical_service="unknown",destination_principal="unknown",destination_service="unknown",destination_service_name="unknown",destination_service_namespace="unknown",destination_version="unknown",destination_workload="unknown",destination_workload_namespace="unknown",reporter="waypoint",request_protocol="tcp",response_flags="-",` + sourceLabels("frontend", "v2", "unknown", "frontend-v2", "shop") + `} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(m, "istio_requests_total"))
		}
	}
	if strings.Contains(m, `source_workload="batch-7"`) || strings.Contains(m, `source_workload="agent"`) {
		t.Errorf("an address two workloads share named one:\n%s", grepLines(m, "istio_requests_total"))
	}
}

// Over HBONE the caller's address is the client ztunnel names in the
// CONNECT's Forwarded header, and its certificate decides the principal
// and namespace: an address whose endpoint is another principal's, or
// another namespace's, adds nothing.
func TestIstioSourceWorkloadOverHBONE(t *testing.T) {
	ca := identitytest.NewCA("mesh")
	srv, _ := named(t, "greeter")
	cfg := configJSON(t,
		[]obj{withAuthorities(addressless(listener("greeter", "greeter", nil)), greeterVIP)},
		[]obj{routeConfig("greeter", route("all", nil, obj{"cluster": "greeter"}))},
		[]obj{
			cluster("greeter", "", srv.Addr()),
			withWorkloads(cluster("frontend", "", "10.244.1.7:8080", "10.244.2.9:8080", "10.244.3.3:8080"),
				"frontend-v2;shop;frontend;v2;Kubernetes", callerID,
				"admin-1;shop;admin;v1;Kubernetes", "spiffe://cluster.local/ns/shop/sa/admin",
				"legacy-1;other;legacy;v1;Kubernetes", ""),
		})
	p, addr := hboneProxy(t, ca, cfg)
	cc, err := dialHBONE(t, addr, hboneTLS(workload(t, ca, callerID)))
	if err != nil {
		t.Fatal(err)
	}
	for _, client := range []string{"10.244.1.7", "10.244.2.9", "10.244.3.3", ""} {
		var ip netip.Addr
		if client != "" {
			ip = netip.MustParseAddr(client)
		}
		tn, status, err := cc.ConnectFor(greeterVIP, ip)
		if err != nil || status != 200 {
			t.Fatalf("CONNECT for %s: %d, %v", client, status, err)
		}
		t.Cleanup(func() { tn.Close() })
		answeredBy(t, toy.NewClient(tn), map[string]string{"method": "hi"})
	}
	m := p.Get(t, "/metrics")
	for _, want := range []string{
		`response_flags="-",` + sourceLabels("frontend", "v2", callerID, "frontend-v2", "shop") + `} 1`,
		// The address of another principal, one of another namespace
		// without a principal, and no Forwarded header (the HTTP/2
		// connection's end, loopback, is no endpoint's).
		`response_flags="-",` + sourceLabels("unknown", "unknown", callerID, "unknown", "shop") + `} 3`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(m, "istio_requests_total"))
		}
	}
}
