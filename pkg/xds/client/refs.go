package client

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// checkRefs names the first reference the set cannot resolve: a route
// configuration or a secret a listener names, a cluster a route names, the
// endpoints of an EDS cluster. "" when the set is complete.
func checkRefs(r *config.Resources) string {
	secrets := map[string]bool{}
	for _, s := range r.Secrets {
		secrets[s.GetName()] = true
	}
	routes := map[string]*configv1alpha1.RouteConfiguration{}
	for _, rc := range r.Routes {
		routes[rc.GetName()] = rc
	}
	clusters := map[string]bool{}
	for _, c := range r.Clusters {
		clusters[c.GetName()] = true
	}
	eds := map[string]bool{}
	for _, e := range r.Endpoints {
		eds[e.GetClusterName()] = true
	}
	for _, c := range r.Clusters {
		if name, ok := edsName(c); ok && !eds[name] {
			return "endpoints " + name
		}
	}
	for _, l := range r.Listeners {
		lr := refsOf(l)
		for _, name := range lr.secrets {
			if !secrets[name] {
				return "secret " + name
			}
		}
		for _, name := range lr.routes {
			rc := routes[name]
			if rc == nil {
				return "route configuration " + name
			}
			if m := missingCluster(rc, clusters); m != "" {
				return m
			}
		}
		for _, rc := range lr.inline {
			if m := missingCluster(rc, clusters); m != "" {
				return m
			}
		}
		if lr.malformed {
			return "" // the proxy's validation reports it
		}
	}
	return ""
}

// edsName is the name of the endpoints an EDS cluster takes; ok is false
// for a cluster of another type.
func edsName(c *clusterv3.Cluster) (name string, ok bool) {
	if c.GetType() != clusterv3.Cluster_EDS {
		return "", false
	}
	if name = c.GetEdsClusterConfig().GetServiceName(); name == "" {
		name = c.GetName()
	}
	return name, true
}

// listenerRefs is what one listener names, in its filter chains' order.
type listenerRefs struct {
	// secrets are those its chains' TLS and its MetaProtocol filters'
	// codec options name.
	secrets []string
	// routes are the route configurations its filters name, and inline
	// those they carry.
	routes []string
	inline []*configv1alpha1.RouteConfiguration
	// malformed says a MetaProtocol filter did not decode; what follows
	// it is not listed.
	malformed bool
}

func refsOf(l *listenerv3.Listener) listenerRefs {
	var lr listenerRefs
	for _, fc := range l.GetFilterChains() {
		lr.secrets = append(lr.secrets, tlsSecretNames(fc)...)
		for _, f := range fc.GetFilters() {
			if f.GetName() != config.FilterName {
				continue
			}
			var mpp configv1alpha1.MetaProtocolProxy
			if err := f.GetTypedConfig().UnmarshalTo(&mpp); err != nil {
				lr.malformed = true
				return lr
			}
			for _, name := range config.SecretNames(mpp.GetCodecOptions()) {
				lr.secrets = append(lr.secrets, name)
			}
			if name := mpp.GetRouteConfigName(); name != "" {
				lr.routes = append(lr.routes, name)
			} else if rc := mpp.GetRouteConfig(); rc != nil {
				lr.inline = append(lr.inline, rc)
			}
		}
	}
	return lr
}

// tlsSecretNames are the SDS secrets a filter chain's TLS names, other
// than the workload certificate and mesh roots the proxy serves itself
// (a Gateway's own certificate and CA).
func tlsSecretNames(fc *listenerv3.FilterChain) []string {
	if fc.GetTransportSocket() == nil {
		return nil
	}
	ctx, err := config.DownstreamTLS(fc.GetTransportSocket())
	if err != nil || config.UsesWorkloadCertificate(ctx) {
		return nil // malformed, or Istio mTLS: nothing to wait for
	}
	var out []string
	for _, c := range ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
		out = append(out, c.GetName())
	}
	if v := ctx.GetCommonTlsContext().GetValidationContextSdsSecretConfig(); v != nil {
		out = append(out, v.GetName())
	}
	return out
}

func missingCluster(rc *configv1alpha1.RouteConfiguration, clusters map[string]bool) string {
	for _, n := range routeClusters(rc) {
		if !clusters[n] {
			return "cluster " + n
		}
	}
	return ""
}

// routeClusters are the clusters a route configuration's routes send to
// or mirror to.
func routeClusters(rc *configv1alpha1.RouteConfiguration) []string {
	var names []string
	for _, r := range rc.GetRoutes() {
		if c := r.GetRoute().GetCluster(); c != "" {
			names = append(names, c)
		}
		for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
			names = append(names, w.GetName())
		}
		for _, m := range r.GetRoute().GetMirror() {
			names = append(names, m.GetCluster())
		}
	}
	return names
}
