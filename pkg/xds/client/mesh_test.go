package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// mesh is n services, each a listener on its own port naming its route
// configuration, which sends every request to the service's EDS cluster,
// with three endpoints; and a Gateway listener whose TLS names the SDS
// secret "cert", and that secret.
func mesh(tb testing.TB, n int) config.Resources {
	tb.Helper()
	var res config.Resources
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		res.Listeners = append(res.Listeners, serviceListener(tb, name, 20000+i))
		res.Routes = append(res.Routes, &configv1alpha1.RouteConfiguration{Name: name, Routes: []*configv1alpha1.Route{{
			Name:  "all",
			Route: &configv1alpha1.RouteAction{ClusterSpecifier: &configv1alpha1.RouteAction_Cluster{Cluster: name}},
		}}})
		res.Clusters = append(res.Clusters, edsCluster(name))
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
		for e := range 3 {
			cla.Endpoints[0].LbEndpoints = append(cla.Endpoints[0].LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socket(fmt.Sprintf("10.%d.%d.%d", i/250, i%250, e+1), 20880)}},
			})
		}
		res.Endpoints = append(res.Endpoints, cla)
	}
	gw := tlsListener(tb, "cert")
	gw.Name = "gateway"
	res.Listeners = append(res.Listeners, gw)
	res.Secrets = append(res.Secrets, &tlsv3.Secret{Name: "cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{}}})
	return res
}

// serviceListener is a Dubbo listener on port naming the route
// configuration name.
func serviceListener(tb testing.TB, name string, port int) *listenerv3.Listener {
	tb.Helper()
	a, err := anypb.New(&configv1alpha1.MetaProtocolProxy{Codec: "dubbo", RouteConfigName: name})
	if err != nil {
		tb.Fatal(err)
	}
	return &listenerv3.Listener{Name: name, Address: socket("127.0.0.1", uint32(port)), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: config.FilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a},
	}}}}}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{}}},
		ConnectTimeout:       durationpb.New(time.Second),
	}
}

func socket(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// clone copies res deeply, so a test can edit the copy it serves next.
func clone(res config.Resources) config.Resources {
	var out config.Resources
	for _, r := range res.Listeners {
		out.Listeners = append(out.Listeners, proto.Clone(r).(*listenerv3.Listener))
	}
	for _, r := range res.Clusters {
		out.Clusters = append(out.Clusters, proto.Clone(r).(*clusterv3.Cluster))
	}
	for _, r := range res.Endpoints {
		out.Endpoints = append(out.Endpoints, proto.Clone(r).(*endpointv3.ClusterLoadAssignment))
	}
	for _, r := range res.Routes {
		out.Routes = append(out.Routes, proto.Clone(r).(*configv1alpha1.RouteConfiguration))
	}
	for _, r := range res.Secrets {
		out.Secrets = append(out.Secrets, proto.Clone(r).(*tlsv3.Secret))
	}
	return out
}

// without is res less every resource of service name (its listener,
// route configuration, cluster and endpoints).
func without(res config.Resources, name string) config.Resources {
	out := clone(res)
	out.Listeners = drop(out.Listeners, name)
	out.Routes = drop(out.Routes, name)
	out.Clusters = drop(out.Clusters, name)
	out.Endpoints = drop(out.Endpoints, name)
	return out
}

func drop[T proto.Message](list []T, name string) []T {
	var out []T
	for _, r := range list {
		if nameOf(r) != name {
			out = append(out, r)
		}
	}
	return out
}

// find is the resource named name in list, or the zero T.
func find[T proto.Message](list []T, name string) T {
	var zero T
	for _, r := range list {
		if nameOf(r) == name {
			return r
		}
	}
	return zero
}

// names lists res's resource names by type, each sorted as the set
// lists them.
func names(res config.Resources) map[string][]string {
	out := map[string][]string{}
	for typ, list := range byType(res) {
		for _, m := range list {
			out[typ] = append(out[typ], nameOf(m))
		}
	}
	return out
}

// recorder is the proxy's side: it keeps every set the client hands over
// that reject (when set) does not refuse.
type recorder struct {
	mu      sync.Mutex
	sets    []config.Resources
	refused int
	reject  func(config.Resources) error
}

func (r *recorder) apply(res config.Resources) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reject != nil {
		if err := r.reject(res); err != nil {
			r.refused++
			return err
		}
	}
	r.sets = append(r.sets, res)
	return nil
}

// last is the set last accepted and how many were.
func (r *recorder) last() (config.Resources, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return config.Resources{}, 0
	}
	return r.sets[len(r.sets)-1], len(r.sets)
}

// all is every set accepted so far.
func (r *recorder) all() []config.Resources {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]config.Resources(nil), r.sets...)
}

// refusedCount is how many sets reject refused.
func (r *recorder) refusedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// variants are the two ways the client subscribes; tests that hold for
// both run for each.
var variants = []variant{{"sotw", false}, {"delta", true}}

type variant struct {
	name  string
	delta bool
}

// startClient runs Run against addr with the variant delta, recording
// what goes over the wire into w when it is not nil, until the test ends.
func startClient(t testing.TB, addr string, delta bool, rec *recorder, w *wire) {
	t.Helper()
	opts := Options{Address: addr, Delta: delta}
	if w != nil {
		opts.DialOptions = append(opts.DialOptions, w.DialOption())
	}
	runClient(t, opts, rec)
}

// runClient runs Run with opts as testNode, with a quiet logger and short
// backoffs, until the test ends.
func runClient(t testing.TB, opts Options, rec *recorder) {
	t.Helper()
	opts.NodeID, opts.Namespace, opts.Logger = testNode, "demo", quiet
	opts.InitialBackoff, opts.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, rec.apply) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	})
}
