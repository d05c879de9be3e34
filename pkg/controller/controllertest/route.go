package controllertest

import (
	"regexp"
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
	var rcName string
	for _, l := range res.Listeners {
		if l.GetAddress().GetSocketAddress().GetPortValue() == port {
			rcName = ListenerFilter(t, l.GetFilterChains()[0]).GetRouteConfigName()
		}
	}
	for _, rc := range res.Routes {
		if rc.GetName() != rcName {
			continue
		}
		for _, r := range rc.GetRoutes() {
			if Matches(r.GetMatch(), attrs) {
				return r
			}
		}
	}
	return nil
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
