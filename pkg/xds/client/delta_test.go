package client

import (
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

func TestDecodeDeltaRefusesBadResponses(t *testing.T) {
	c, _ := anypb.New(&clusterv3.Cluster{Name: "c"})
	l, _ := anypb.New(&configv1alpha1.RouteConfiguration{Name: "r"})
	cases := []struct {
		resp *discoveryv3.DeltaDiscoveryResponse
		want string
	}{
		{&discoveryv3.DeltaDiscoveryResponse{TypeUrl: config.ClusterType, Resources: []*discoveryv3.Resource{{Name: "r", Resource: l}}}, "is a type.googleapis.com/rosetta.config.v1alpha1.RouteConfiguration in a"},
		{&discoveryv3.DeltaDiscoveryResponse{TypeUrl: "type.googleapis.com/other"}, "unexpected type"},
		{&discoveryv3.DeltaDiscoveryResponse{TypeUrl: config.ClusterType, Resources: []*discoveryv3.Resource{{Name: "c", Resource: &anypb.Any{TypeUrl: config.ClusterType, Value: []byte{0xff, 0xff}}}}}, "resource 0"},
		{&discoveryv3.DeltaDiscoveryResponse{TypeUrl: config.ClusterType, Resources: []*discoveryv3.Resource{{Resource: c}}}, "has no name"},
		{&discoveryv3.DeltaDiscoveryResponse{TypeUrl: config.ClusterType, Resources: []*discoveryv3.Resource{{Name: "d", Resource: c}}}, `named "d", and "c" inside`},
		{&discoveryv3.DeltaDiscoveryResponse{TypeUrl: config.ClusterType, Resources: []*discoveryv3.Resource{{Name: "c", Resource: c}, {Name: "c", Resource: c}}}, `"c" is sent twice`},
	}
	for _, tc := range cases {
		_, err := decodeDelta(tc.resp)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decodeDelta: %v, want %q", err, tc.want)
		}
	}
	u, err := decodeDelta(&discoveryv3.DeltaDiscoveryResponse{TypeUrl: config.ClusterType, Nonce: "n", RemovedResources: []string{"old"},
		Resources: []*discoveryv3.Resource{{Name: "c", Version: "7", Resource: c}, {Name: "ttl", Version: "1"}}})
	if err != nil || len(u.resources) != 1 || u.resources["c"].version != "7" || !slices.Equal(u.removed, []string{"old"}) || u.nonce != "n" {
		t.Fatalf("decodeDelta: %v %+v", err, u)
	}
}

// TestDeltaSubscribesByName: over delta the proxy learns only the route
// configurations, endpoints and secrets its listeners and clusters name,
// subscribing to a name when a resource names it; a new cluster is handed
// over with its endpoints, not before.
func TestDeltaSubscribesByName(t *testing.T) {
	cp := startControlPlane(t)
	served := mesh(t, 2)
	served.Routes = append(served.Routes, &configv1alpha1.RouteConfiguration{Name: "orphan"})
	served.Endpoints = append(served.Endpoints, &endpointv3.ClusterLoadAssignment{ClusterName: "orphan"})
	served.Secrets = append(served.Secrets, &tlsv3.Secret{Name: "orphan"})
	cp.set(t, served)
	rec := &recorder{}
	w := &wire{}
	startClient(t, cp.addr, true, rec, w)
	got := waitFor(t, rec, "the first set", func(r config.Resources) bool { return len(r.Clusters) == 2 })
	for typ, list := range names(got) {
		if slices.Contains(list, "orphan") {
			t.Errorf("the proxy was given the %s no resource names", typ)
		}
	}
	for _, r := range w.since(0) {
		if slices.Contains(r.names, "orphan") {
			t.Errorf("the proxy received the %s no resource names", r.typeURL)
		}
	}
	subscribed := map[string][]string{}
	w.mu.Lock()
	for _, req := range w.requests {
		subscribed[req.GetTypeUrl()] = append(subscribed[req.GetTypeUrl()], req.GetResourceNamesSubscribe()...)
	}
	w.mu.Unlock()
	for typ, want := range map[string][]string{
		config.ListenerType: {wildcard}, config.ClusterType: {wildcard},
		config.RouteType: {"svc-0", "svc-1"}, config.EndpointType: {"svc-0", "svc-1"}, config.SecretType: {"cert"},
	} {
		if !slices.Equal(subscribed[typ], want) {
			t.Errorf("%s: subscribed to %v, want %v", typ, subscribed[typ], want)
		}
	}

	// A cluster no route names yet, whose endpoints are served after it:
	// the proxy is given it with them, never before.
	next := clone(served)
	next.Clusters = append(next.Clusters, edsCluster("extra"))
	cp.set(t, next)
	testutil.Eventually(t, 3*time.Second, "the subscription to the new endpoints", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return slices.ContainsFunc(w.requests, func(r *discoveryv3.DeltaDiscoveryRequest) bool {
			return slices.Equal(r.GetResourceNamesSubscribe(), []string{"extra"})
		})
	})
	next.Endpoints = append(next.Endpoints, &endpointv3.ClusterLoadAssignment{ClusterName: "extra"})
	cp.set(t, next)
	waitFor(t, rec, "the new cluster", func(r config.Resources) bool { return find(r.Clusters, "extra") != nil })
	for i, set := range rec.all() {
		if m := checkRefs(&set); m != "" {
			t.Errorf("set %d was handed over without %s", i, m)
		}
	}
}
