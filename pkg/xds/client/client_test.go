package client

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

func listener(t *testing.T, route string) *listenerv3.Listener {
	t.Helper()
	a, err := anypb.New(&configv1alpha1.MetaProtocolProxy{Codec: "dubbo", RouteConfigName: route})
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: config.FilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a},
	}}}}}
}

// tlsListener is a listener without a MetaProtocol filter whose chain's TLS
// presents the SDS certificate cert.
func tlsListener(t testing.TB, cert string) *listenerv3.Listener {
	t.Helper()
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: cert}},
	}}
	if cert == config.SecretDefault {
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: config.SecretRootCA}}
	}
	a, err := anypb.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{Name: "tls", FilterChains: []*listenerv3.FilterChain{{TransportSocket: &corev3.TransportSocket{
		Name: config.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}}}}
}

func TestCheckRefs(t *testing.T) {
	eds := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
	static := &clusterv3.Cluster{Name: "s", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
	route := &configv1alpha1.RouteConfiguration{Name: "r", Routes: []*configv1alpha1.Route{{
		Route: &configv1alpha1.RouteAction{
			ClusterSpecifier: &configv1alpha1.RouteAction_WeightedClusters{WeightedClusters: &configv1alpha1.WeightedClusters{
				Clusters: []*configv1alpha1.ClusterWeight{{Name: "c", Weight: 50}, {Name: "s", Weight: 50}},
			}},
			Mirror: []*configv1alpha1.MirrorPolicy{{Cluster: "m"}},
		},
	}}}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "c"}
	cases := []struct {
		name string
		res  config.Resources
		want string
	}{
		{"complete", config.Resources{Listeners: []*listenerv3.Listener{listener(t, "r")}, Clusters: []*clusterv3.Cluster{eds, static, {Name: "m"}},
			Endpoints: []*endpointv3.ClusterLoadAssignment{cla}, Routes: []*configv1alpha1.RouteConfiguration{route}}, ""},
		{"no route", config.Resources{Listeners: []*listenerv3.Listener{listener(t, "r")}}, "route configuration r"},
		{"no cluster", config.Resources{Listeners: []*listenerv3.Listener{listener(t, "r")}, Clusters: []*clusterv3.Cluster{eds, static},
			Endpoints: []*endpointv3.ClusterLoadAssignment{cla}, Routes: []*configv1alpha1.RouteConfiguration{route}}, "cluster m"},
		{"no endpoints", config.Resources{Clusters: []*clusterv3.Cluster{eds}}, "endpoints c"},
		{"empty", config.Resources{}, ""},
		{"no gateway certificate", config.Resources{Listeners: []*listenerv3.Listener{tlsListener(t, "kubernetes://edge/cert")}}, "secret kubernetes://edge/cert"},
		{"gateway certificate", config.Resources{Listeners: []*listenerv3.Listener{tlsListener(t, "kubernetes://edge/cert")},
			Secrets: []*tlsv3.Secret{{Name: "kubernetes://edge/cert"}}}, ""},
		{"workload certificate", config.Resources{Listeners: []*listenerv3.Listener{tlsListener(t, config.SecretDefault)}}, ""},
	}
	for _, c := range cases {
		if got := checkRefs(&c.res); got != c.want {
			t.Errorf("%s: checkRefs = %q, want %q", c.name, got, c.want)
		}
		// The graph the delta client keeps finds the same gap, added
		// resource by resource, and none once the set is taken apart.
		held := map[ref]bool{}
		g := newRefGraph(func(r ref) bool { return held[r] })
		for typ, list := range byType(c.res) {
			for _, m := range list {
				held[ref{typ, nameOf(m)}] = true
				g.set(ref{typ, nameOf(m)}, m, func(ref) {})
			}
		}
		if got := g.firstMissing(); lastWord(got) != lastWord(c.want) {
			t.Errorf("%s: the graph misses %q, checkRefs %q", c.name, got, c.want)
		}
		for typ, list := range byType(c.res) {
			for _, m := range list {
				delete(held, ref{typ, nameOf(m)})
				g.set(ref{typ, nameOf(m)}, nil, func(ref) {})
			}
		}
		if len(g.missing) != 0 || len(g.count) != 0 || len(g.names) != 0 {
			t.Errorf("%s: the emptied graph still has %v missing, %v counted", c.name, g.missing, g.count)
		}
	}
}

func lastWord(s string) string { return s[strings.LastIndexByte(s, ' ')+1:] }

func TestDecodeRefusesBadResponses(t *testing.T) {
	l, _ := anypb.New(&listenerv3.Listener{Name: "x"})
	cases := []struct {
		resp *discoveryv3.DiscoveryResponse
		want string
	}{
		{&discoveryv3.DiscoveryResponse{TypeUrl: config.ClusterType, Resources: []*anypb.Any{l}}, "is a type.googleapis.com/envoy.config.listener.v3.Listener in a"},
		{&discoveryv3.DiscoveryResponse{TypeUrl: "type.googleapis.com/other", Resources: []*anypb.Any{{TypeUrl: "type.googleapis.com/other"}}}, "unexpected type"},
		{&discoveryv3.DiscoveryResponse{TypeUrl: config.ListenerType, Resources: []*anypb.Any{{TypeUrl: config.ListenerType, Value: []byte{0xff, 0xff}}}}, "resource 0"},
	}
	for _, c := range cases {
		_, err := decode(c.resp)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("decode: %v, want %q", err, c.want)
		}
	}
	p, err := decode(&discoveryv3.DiscoveryResponse{TypeUrl: config.ListenerType, VersionInfo: "7", Nonce: "n", Resources: []*anypb.Any{l}})
	if err != nil || len(p.resources) != 1 || p.version != "7" {
		t.Fatalf("decode: %v %+v", err, p)
	}
}

func TestRunNeedsAddressAndID(t *testing.T) {
	if err := Run(t.Context(), Options{}, nil); err == nil {
		t.Fatal("Run without an address returned nil")
	}
}
