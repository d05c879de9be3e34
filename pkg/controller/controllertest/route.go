package controllertest

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// Route follows a request with attrs through a proxy's resources the way
// the proxy's router does: the listener bound to port, its route
// configuration, the first route whose every condition holds. nil when no
// route matches.
func Route(t *testing.T, res *config.Resources, port uint32, attrs map[string]string) *configv1alpha1.Route {
	t.Helper()
	return firstMatch(routeConfiguration(res, routeConfigName(t, res, port)), attrs)
}

// Simulate follows a request like Route and says where it ends: the
// cluster (or "c1:w1,c2:w2" for a weighted split) and that cluster's
// endpoints ("address:port", sorted); "no listener" when no listener is
// bound to port, "no route" when no route matches. A listener whose route
// configuration is missing fails t.
func Simulate(t *testing.T, res *config.Resources, port uint32, attrs map[string]string) (string, []string) {
	t.Helper()
	name := routeConfigName(t, res, port)
	if name == "" {
		return "no listener", nil
	}
	rc := routeConfiguration(res, name)
	if rc == nil {
		t.Fatalf("route configuration %s missing", name)
	}
	r := firstMatch(rc, attrs)
	if r == nil {
		return "no route", nil
	}
	if c := r.GetRoute().GetCluster(); c != "" {
		return c, endpointsOf(res, c)
	}
	var parts []string
	for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
		parts = append(parts, fmt.Sprintf("%s:%d", w.GetName(), w.GetWeight()))
	}
	return strings.Join(parts, ","), nil
}

// routeConfigName is the route configuration of the listener bound to
// port; "" when there is none.
func routeConfigName(t *testing.T, res *config.Resources, port uint32) string {
	t.Helper()
	var name string
	for _, l := range res.Listeners {
		if l.GetAddress().GetSocketAddress().GetPortValue() == port {
			name = ListenerFilter(t, l.GetFilterChains()[0]).GetRouteConfigName()
		}
	}
	return name
}

// routeConfiguration is the route configuration named name; nil when
// there is none.
func routeConfiguration(res *config.Resources, name string) *configv1alpha1.RouteConfiguration {
	for _, rc := range res.Routes {
		if rc.GetName() == name {
			return rc
		}
	}
	return nil
}

// firstMatch is the first route of rc whose every condition holds.
func firstMatch(rc *configv1alpha1.RouteConfiguration, attrs map[string]string) *configv1alpha1.Route {
	for _, r := range rc.GetRoutes() {
		if Matches(r.GetMatch(), attrs) {
			return r
		}
	}
	return nil
}

// endpointsOf are the endpoints of cluster, "address:port", sorted.
func endpointsOf(res *config.Resources, cluster string) []string {
	var out []string
	for _, cla := range res.Endpoints {
		if cla.GetClusterName() != cluster {
			continue
		}
		for _, le := range cla.GetEndpoints() {
			for _, e := range le.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
			}
		}
	}
	sort.Strings(out)
	return out
}

// Matches reports whether a request with attrs meets every condition of m.
func Matches(m *configv1alpha1.RouteMatch, attrs map[string]string) bool {
	for _, a := range m.GetAttributes() {
		v, ok := attrs[a.GetName()]
		var hit bool
		switch x := a.GetMatch().(type) {
		case *configv1alpha1.AttributeMatch_Exact:
			hit = ok && v == x.Exact
		case *configv1alpha1.AttributeMatch_Prefix:
			hit = ok && strings.HasPrefix(v, x.Prefix)
		case *configv1alpha1.AttributeMatch_Regex:
			hit = ok && regexp.MustCompile("^(?:"+x.Regex+")$").MatchString(v)
		case *configv1alpha1.AttributeMatch_Present:
			hit = ok
		}
		if hit == a.GetInvert() {
			return false
		}
	}
	return true
}

// ListenerOptions are the codec options of the first listener of res.
func ListenerOptions(t *testing.T, res *config.Resources) map[string]string {
	t.Helper()
	return ListenerFilter(t, res.Listeners[0].GetFilterChains()[0]).GetCodecOptions()
}

// ListenerFilter is the MetaProtocolProxy of a filter chain.
func ListenerFilter(t *testing.T, fc *listenerv3.FilterChain) *configv1alpha1.MetaProtocolProxy {
	t.Helper()
	var mpp configv1alpha1.MetaProtocolProxy
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&mpp); err != nil {
		t.Fatal(err)
	}
	return &mpp
}
