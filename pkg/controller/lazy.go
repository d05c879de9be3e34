package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

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
// A destination the fallback does not serve (fallbackServes) keeps its
// routes, so reporting it would only split the proxy's scope.
func (g *Generation) lazyListener(host string, port uint32) *configv1alpha1.LazyListener {
	if !g.proxy.Lazy || g.ix.opts.LazyFallback == "" {
		return nil
	}
	g.deps.readFallback(port)
	if !g.ix.fallbackServes(host, port) {
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
//
// Nor does a destination the fallback itself would not serve at that
// number (fallbackServes): the fallback applies the same rule with its
// own view, and a service another namespace hides from it, or a port
// number an older service it sees holds, would fail or reach that other
// service there.
func (g *Generation) addLazyRoutes(svc *Service, port Port, number uint32, name string) bool {
	p, fallback := g.proxy, g.ix.opts.LazyFallback
	if !p.Lazy || fallback == "" || number != port.Number {
		return false
	}
	g.deps.readFallback(number)
	if !g.ix.fallbackServes(svc.Host, number) {
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

// The fallback's identity. A lazy proxy with an identity reaches the
// fallback over Istio mTLS when the fallback address names a Kubernetes
// Service (NAME.NS.svc.<domain>): the fallback cluster is then built as
// any service's, by Istio's rules for that Service (its DestinationRule,
// auto mTLS from its endpoints' tlsMode label, the SPIFFE IDs of its
// endpoints' service accounts as the identities to verify), except that
// every endpoint is dialled at the destination's port number, which the
// fallback serves, not at the Service's ports (a headless Service has
// none). Any other address (an IP, a name the controller does not know)
// keeps the plain endpoint below, as does a proxy without an identity.

// lazyFallbackService is the Kubernetes Service the fallback address
// names, with every ready endpoint of its EndpointSlices whatever ports
// they list; nil when the address names none.
func lazyFallbackService(in *Inputs, opts Options, resolve Resolver) *Service {
	name, ns, ok := kubeServiceName(opts.LazyFallback, opts.DomainSuffix)
	if !ok {
		return nil
	}
	i := slices.IndexFunc(in.Services, func(s *corev1.Service) bool { return s.Name == name && s.Namespace == ns })
	if i < 0 {
		return nil
	}
	ks := in.Services[i]
	svc := &Service{Host: opts.LazyFallback, Namespace: ns, Kind: "Service", Name: name, created: ks.CreationTimestamp, uid: ks.UID}
	var ss []*discoveryv1.EndpointSlice
	for _, s := range in.EndpointSlices {
		if s.Namespace == ns && s.Labels[discoveryv1.LabelServiceName] == name {
			ss = append(ss, s)
		}
	}
	slices.SortFunc(ss, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	pods := podsNamed(in.Pods, ss)
	for _, s := range ss {
		svc.Endpoints = append(svc.Endpoints, sliceInstances(s, nil, pods, resolve)...)
	}
	return svc
}

// kubeServiceName splits a Kubernetes Service's host, NAME.NS.svc.<domain>.
func kubeServiceName(host, domain string) (name, ns string, ok bool) {
	rest, ok := strings.CutSuffix(host, ".svc."+domain)
	if !ok {
		return "", "", false
	}
	name, ns, ok = strings.Cut(rest, ".")
	return name, ns, ok && name != "" && ns != "" && !strings.Contains(ns, ".")
}

// podsNamed are the Pods the endpoints of ss name, by namespace and name.
func podsNamed(all []*corev1.Pod, ss []*discoveryv1.EndpointSlice) map[nsName]*corev1.Pod {
	want := map[nsName]bool{}
	for _, s := range ss {
		for _, e := range s.Endpoints {
			if k, ok := podOf(s, e); ok {
				want[k] = true
			}
		}
	}
	out := map[nsName]*corev1.Pod{}
	if len(want) == 0 {
		return out
	}
	for _, p := range all {
		if k := (nsName{p.Namespace, p.Name}); want[k] {
			out[k] = p
		}
	}
	return out
}

// serviceOf is the service of a host: a MetaProtocol service, or the
// fallback's Service.
func (ix *Index) serviceOf(host string) *Service {
	if svc := ix.services[host]; svc != nil {
		return svc
	}
	if ix.fallback != nil && host == ix.opts.LazyFallback {
		return ix.fallback
	}
	return nil
}

// lazyFallbackAt is the fallback's Service as its cluster at port sees
// it: every endpoint serves port at that number. Nil for a proxy without
// an identity, or when the fallback address names no Service.
func (ix *Index) lazyFallbackAt(port uint32, p *Proxy) *Service {
	if ix.fallback == nil || p.Identity == "" {
		return nil
	}
	svc := *ix.fallback
	svc.Endpoints = make([]Endpoint, len(ix.fallback.Endpoints))
	at := map[uint32]uint32{port: port}
	for i, e := range ix.fallback.Endpoints {
		e.Ports = at
		svc.Endpoints[i] = e
	}
	return &svc
}

// lazyFallbackCluster is the plain cluster of the fallback proxy at a
// port: one endpoint, the fallback's address (a name the proxy resolves
// when it dials, such as a Service's DNS name), as a static load
// assignment.
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

// fallbackServes reports whether the fallback proxy serves host on port
// number: whether, generating for the fallback, the listener bound to
// that number would be host's (generate.go's rule, oldest service first
// among those it sees). The fallback is taken to be a proxy of its
// Service's namespace without labels, scoped by that namespace's
// Sidecar or the root one; a fallback address that names no Service
// sees only what is exported to every namespace.
func (ix *Index) fallbackServes(host string, number uint32) bool {
	ix.fallbackOnce.Do(func() { ix.fallbackPorts = ix.fallbackOwners() })
	return ix.fallbackPorts[number] == host
}

// fallbackOwners maps each port number to the host the fallback serves
// on it.
func (ix *Index) fallbackOwners() map[uint32]string {
	fb := &Proxy{Mode: ModeGateway, Namespace: ix.fallbackNamespace()}
	sc := ix.sidecarFor(fb)
	owners := map[uint32]string{}
	for _, h := range ix.byAge {
		svc := ix.services[h]
		if !ix.sees(fb, sc, svc) {
			continue
		}
		for _, port := range svc.Ports {
			if _, taken := owners[port.Number]; !taken {
				owners[port.Number] = h
			}
		}
	}
	return owners
}

// fallbackNamespace is the namespace of the fallback's Service; "" when
// the fallback address names none.
func (ix *Index) fallbackNamespace() string {
	_, ns, _ := kubeServiceName(ix.opts.LazyFallback, ix.opts.DomainSuffix)
	return ns
}

// readFallback notes that the generation asked which service the
// fallback serves at a port number (Index.fallbackMoved).
func (d *Deps) readFallback(number uint32) {
	if d.fallbackPorts == nil {
		d.fallbackPorts = map[uint32]bool{}
	}
	d.fallbackPorts[number] = true
}
