package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"slices"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
)

// Lazy mode (docs/mesh-integration.md, "Lazy mode"): a proxy that says
// lazy in its node metadata gets a listener for every service port its
// scope sees, as any proxy does, but only the destinations its callers
// have used (Proxy.Learned, reported over xDS) get their routes,
// clusters and endpoints. Every other listener routes each request to
// the shared fallback proxy (Options.LazyFallback) at the same port,
// which holds the whole mesh's config and serves the call; the lazy
// proxy reports the destination, and the next generation serves it
// directly.

// LazyDestination names the destination a service port's listener
// stands for, as a lazy proxy reports it.
func LazyDestination(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// lazyKey is the part of ScopeKey that lazy mode adds: the learned set,
// hashed, so proxies that learned the same destinations share a scope.
func (p *Proxy) lazyKey() string {
	if !p.Lazy {
		return ""
	}
	names := make([]string, 0, len(p.Learned))
	for d := range p.Learned {
		names = append(names, d)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, d := range names {
		h.Write([]byte(d))
		h.Write([]byte{0})
	}
	return "|lazy=" + hex.EncodeToString(h.Sum(nil))
}

// lazyListener is what a lazy proxy's listener of a service port says it
// stands for; nil for other proxies.
func (g *Generation) lazyListener(host string, port uint32) *configv1alpha1.LazyListener {
	if !g.proxy.Lazy {
		return nil
	}
	return &configv1alpha1.LazyListener{Destination: LazyDestination(host, port)}
}

// addLazyRoutes adds, for a listener of a lazy proxy whose destination
// it has not learned, the route configuration that sends every request to
// the fallback proxy at the service port's number, and reports whether it
// did. A lazy proxy keeps the fallback's cluster of every port that may
// route to it, learned or not: the proxy closes the connections of an
// endpoint no cluster holds, and the call that taught it a destination
// may still be on its way through the fallback when the new routes come.
//
// Only a listener bound to the service port's own number goes through
// the fallback. Any other keeps the service's routes: one reached only
// through HBONE, or on a steering port, serves a service that lost its
// port number to another (generate.go), and the fallback, reached at
// that number, would serve the other.
func (g *Generation) addLazyRoutes(svc *Service, port Port, number uint32, name string) bool {
	p, fallback := g.proxy, g.ix.opts.LazyFallback
	if !p.Lazy || fallback == "" || number != port.Number {
		return false
	}
	cluster := g.cluster(fallback, port.Number, "")
	if p.Learned[LazyDestination(svc.Host, port.Number)] {
		return false
	}
	g.res.Routes = append(g.res.Routes, &configv1alpha1.RouteConfiguration{
		Name: name,
		Routes: []*configv1alpha1.Route{{
			Name:  "lazy-fallback",
			Match: &configv1alpha1.RouteMatch{},
			Route: &configv1alpha1.RouteAction{ClusterSpecifier: &configv1alpha1.RouteAction_Cluster{Cluster: cluster}},
		}},
	})
	return true
}

// lazyFallbackCluster is the cluster of the fallback proxy at a port:
// one endpoint, the fallback's address (a name the proxy resolves when it
// dials, such as a Service's DNS name), as a static load assignment.
func (ix *Index) lazyFallbackCluster(port uint32) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	name := ClusterName(ix.opts.LazyFallback, port, "")
	c := edsCluster(name)
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddress(ix.opts.LazyFallback, port),
		}}}},
	}}}
	return c, cla
}
