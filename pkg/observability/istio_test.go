package observability

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWorkloadOfPrincipal(t *testing.T) {
	for _, c := range []struct {
		principal, namespace, want string
	}{
		{"spiffe://cluster.local/ns/shop/sa/frontend", "shop", "spiffe://cluster.local/ns/shop/sa/frontend"},
		// The form the proxy's connections and authorization name it.
		{"cluster.local/ns/shop/sa/frontend", "shop", "spiffe://cluster.local/ns/shop/sa/frontend"},
		{"spiffe://td/ns//sa/x", Unknown, "spiffe://td/ns//sa/x"},
		{"spiffe://td/other/path", Unknown, "spiffe://td/other/path"},
		{"td/other/path", Unknown, "spiffe://td/other/path"},
		{"", Unknown, Unknown},
	} {
		w := WorkloadOfPrincipal(c.principal)
		if w.Namespace != c.namespace || w.Principal != c.want || w.Name != Unknown || w.App != Unknown {
			t.Errorf("WorkloadOfPrincipal(%q) = %+v, want namespace %q, principal %q, the rest unknown", c.principal, *w, c.namespace, c.want)
		}
	}
}

func TestServiceOf(t *testing.T) {
	for _, c := range []struct{ host, name, ns string }{
		{"greeter.shop.svc.cluster.local", "greeter", "shop"},
		{"greeter.shop.svc", "greeter", "shop"},
		{"api.example.com", "api.example.com", Unknown},
		{"", Unknown, Unknown},
	} {
		s := ServiceOf(c.host)
		if s.Name != c.name || s.Namespace != c.ns {
			t.Errorf("ServiceOf(%q) = %+v, want name %q namespace %q", c.host, *s, c.name, c.ns)
		}
	}
}

func TestIstioSeriesLabelsAndReuse(t *testing.T) {
	m := New()
	src := WorkloadOfPrincipal("spiffe://cluster.local/ns/shop/sa/frontend")
	dst := &Workload{Name: "greeter-v1", Namespace: "shop", Principal: "spiffe://cluster.local/ns/shop/sa/greeter", App: "greeter", Version: "v1"}
	l := IstioLabels{Reporter: ReporterWaypoint, Protocol: "dubbo", Source: src, Service: ServiceOf("greeter.shop.svc.cluster.local"), Destination: dst, Code: "20", Flags: "-"}
	s := m.IstioSeries(&l)
	s.Observe(3*time.Millisecond, 120, 80)
	other := l // the same values in new Workload structs: the same series by value
	other.Destination = &Workload{Name: "greeter-v1", Namespace: "shop", Principal: dst.Principal, App: "greeter", Version: "v1"}
	if s2 := m.IstioSeries(&other); s2 != s {
		t.Errorf("the same label values gave a second series")
	}
	if s.Is(&other) {
		t.Errorf("Is compares the shared values' identity, so a connection's cache cannot mistake another endpoint's workload for its own")
	}
	const want = `
# HELP istio_requests_total Requests handled, as Istio's standard metric (MetaProtocol requests: request_protocol is the codec).
# TYPE istio_requests_total counter
istio_requests_total{connection_security_policy="mutual_tls",destination_app="greeter",destination_canonical_revision="v1",destination_canonical_service="greeter",destination_principal="spiffe://cluster.local/ns/shop/sa/greeter",destination_service="greeter.shop.svc.cluster.local",destination_service_name="greeter",destination_service_namespace="shop",destination_version="v1",destination_workload="greeter-v1",destination_workload_namespace="shop",reporter="waypoint",request_protocol="dubbo",response_code="20",response_flags="-",source_app="unknown",source_canonical_revision="unknown",source_canonical_service="unknown",source_principal="spiffe://cluster.local/ns/shop/sa/frontend",source_version="unknown",source_workload="unknown",source_workload_namespace="shop"} 1
`
	if err := testutil.CollectAndCompare(m.istio.requests, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(m.istio.duration); got != 1 {
		t.Errorf("duration series = %d, want 1", got)
	}
}

func TestIstioSeriesCapAndDisable(t *testing.T) {
	m := New()
	m.istio.maxSeries = 2
	for _, code := range []string{"20", "60", "70"} {
		l := IstioLabels{Reporter: ReporterWaypoint, Protocol: "dubbo", Source: UnknownWorkload, Service: UnknownService, Destination: UnknownWorkload, Code: code, Flags: "-"}
		if s := m.IstioSeries(&l); s != nil {
			s.Observe(time.Millisecond, 1, 1)
		}
	}
	if got := testutil.CollectAndCount(m.istio.requests); got != 2 {
		t.Errorf("series = %d, want the cap, 2", got)
	}
	if got := testutil.ToFloat64(m.istio.overflowed); got != 1 {
		t.Errorf("overflowed = %v, want 1", got)
	}
	m.DisableIstio()
	if m.IstioEnabled() || m.IstioSeries(&IstioLabels{}) != nil {
		t.Error("Istio metrics still on after DisableIstio")
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "istio_") {
			t.Errorf("%s is still exported", f.GetName())
		}
	}
}
