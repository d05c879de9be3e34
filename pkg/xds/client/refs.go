package client

import (
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

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
		if name, ok := config.EndpointsName(c); ok && !eds[name] {
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

// RouteNames are the route configurations l's MetaProtocol filters name,
// as the client subscribes to them; an error when a filter does not decode.
func RouteNames(l *listenerv3.Listener) ([]string, error) {
	lr := refsOf(l)
	if lr.malformed {
		return lr.routes, fmt.Errorf("listener %q: a MetaProtocol filter does not decode", l.GetName())
	}
	return lr.routes, nil
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

// ref names one resource: its type and name.
type ref struct{ typeURL, name string }

// namesOf lists the resources one resource names: a listener its route
// configurations, secrets and the clusters of its inline routes; a route
// configuration its clusters; an EDS cluster its endpoints. They are what
// checkRefs checks, resource by resource.
func namesOf(typeURL string, m proto.Message) []ref {
	var out []ref
	switch m := m.(type) {
	case *listenerv3.Listener:
		lr := refsOf(m)
		for _, name := range lr.routes {
			out = append(out, ref{config.RouteType, name})
		}
		for _, name := range lr.secrets {
			out = append(out, ref{config.SecretType, name})
		}
		for _, rc := range lr.inline {
			for _, name := range routeClusters(rc) {
				out = append(out, ref{config.ClusterType, name})
			}
		}
	case *configv1alpha1.RouteConfiguration:
		for _, name := range routeClusters(m) {
			out = append(out, ref{config.ClusterType, name})
		}
	case *clusterv3.Cluster:
		if name, ok := config.EndpointsName(m); ok {
			out = append(out, ref{config.EndpointType, name})
		}
	}
	return out
}

// refGraph follows what the resources of a set name as they come and go,
// so that the names a delta client subscribes to, and whether the set is
// complete, follow each change without a walk over the whole set.
type refGraph struct {
	// names is what each resource held names, and count how many
	// resources held name each target.
	names map[ref][]ref
	count map[ref]int
	// held says a resource is in the set; missing are the targets named
	// and not held.
	held    func(ref) bool
	missing map[ref]bool
}

func newRefGraph(held func(ref) bool) *refGraph {
	return &refGraph{names: map[ref][]ref{}, count: map[ref]int{}, held: held, missing: map[ref]bool{}}
}

// set notes that from is now m (nil: from left the set), and calls
// changed with each target that became named or is named no more.
func (g *refGraph) set(from ref, m proto.Message, changed func(to ref)) {
	var now []ref
	if m != nil {
		now = slices.Compact(slices.SortedFunc(slices.Values(namesOf(from.typeURL, m)), compareRefs))
	}
	for _, to := range g.names[from] {
		if g.count[to]--; g.count[to] == 0 {
			delete(g.count, to)
			changed(to)
		}
		g.check(to)
	}
	for _, to := range now {
		if g.count[to]++; g.count[to] == 1 {
			changed(to)
		}
		g.check(to)
	}
	if len(now) > 0 {
		g.names[from] = now
	} else {
		delete(g.names, from)
	}
	g.check(from)
}

// named says a resource held names r.
func (g *refGraph) named(r ref) bool { return g.count[r] > 0 }

// check notes whether r is a target named and not held.
func (g *refGraph) check(r ref) {
	if g.count[r] > 0 && !g.held(r) {
		g.missing[r] = true
	} else {
		delete(g.missing, r)
	}
}

// firstMissing names a target named and not held, "" when there is none.
func (g *refGraph) firstMissing() string {
	for r := range g.missing {
		return r.typeURL + " " + r.name
	}
	return ""
}

func compareRefs(a, b ref) int {
	if c := strings.Compare(a.typeURL, b.typeURL); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}
