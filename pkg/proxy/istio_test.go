package proxy_test

import (
	"net"
	"strings"
	"testing"
)

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
	withWorkload := cluster(svc, "", a.Addr())
	lbs := withWorkload["load_assignment"].(obj)["endpoints"].([]obj)[0]["lb_endpoints"].([]obj)
	lbs[0]["metadata"] = obj{"filter_metadata": obj{"istio": obj{
		"workload":  "greeter-v1;shop;greeter;v1;Kubernetes",
		"principal": "spiffe://cluster.local/ns/shop/sa/greeter",
	}}}
	p := start(t, []obj{listener("in", "r", nil)},
		[]obj{routeConfig("r",
			route("ok", match("method", "ok"), obj{"cluster": svc}),
			route("down", match("method", "down"), obj{"cluster": "down"}))},
		[]obj{withWorkload, cluster("down", "", deadAddr)})
	c := dial(t, p.Addr(t, "in"))
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
