package main

import (
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// Lazy mode (-lazy): the controller runs with --lazy-fallback, and each
// proxy says lazy in its node metadata and reports, as the first request
// of its stream, the destinations of lazyCalls services of its namespace
// (as rosetta-proxy --lazy reports what its callers called). Proxy i
// takes the services from offset (i / namespaces) * lazyCalls of its
// namespace's, so proxies of a namespace call different services (and
// those with one offset share a scope). A proxy then holds the routes of
// those services and a fallback route for each of the others; an edit
// reaches only the proxies that called its service, and the edits of
// services nobody called reach none (their latency is not counted).

// lazyFallback is the address the controller names as the fallback: the
// harness's proxies never dial it.
const lazyFallback = "127.0.0.1"

// lazyLearn gives a proxy its destinations, in lazy mode.
func (o options) lazyLearn(p *proxy, m mesh) {
	if !o.lazy {
		return
	}
	p.learned = map[int]bool{}
	in := m.servicesIn(p.ns)
	from := (p.id / o.namespaces) * o.lazyCalls
	for j := 0; j < o.lazyCalls && j < in; j++ {
		// The service number of the k-th service of namespace ns.
		svc := p.ns + ((from+j)%in)*o.namespaces
		p.learned[svc] = true
		p.reports = append(p.reports, fmt.Sprintf("%s:%d", m.host(svc), firstPort+svc))
	}
}

// receives says whether an edit of svc's MetaRouter concerns p.
func (o options) receives(p *proxy, svc int) bool {
	if o.lazy {
		return p.learned[svc]
	}
	return p.ns == svc%o.namespaces
}

// anyReceives says whether an edit of svc's MetaRouter concerns any proxy.
func (o options) anyReceives(proxies []*proxy, svc int) bool {
	for _, p := range proxies {
		if o.receives(p, svc) {
			return true
		}
	}
	return false
}

// isSynced says whether p holds its whole config: in lazy mode, a route
// configuration per service of its namespace, the called ones with their
// MetaRouter's routes, the others with the fallback route (no match).
func (o options) isSynced(p *proxy, m mesh) (bool, error) {
	if !o.lazy {
		return p.synced(m.servicesIn(p.ns), initialMethod)
	}
	want := map[string]string{}
	for svc := range p.learned {
		want[m.routeName(svc)] = initialMethod
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil || !p.acked[typeIndex(config.ListenerType)] || !p.acked[typeIndex(config.ClusterType)] || p.missing {
		return false, p.err
	}
	if len(p.methods) != m.servicesIn(p.ns) {
		return false, nil
	}
	for name, method := range p.methods {
		if method != want[name] {
			return false, nil
		}
	}
	return true, nil
}

// lazyRequest is the first request of a lazy proxy's stream: its
// destinations, with the node; nil for a proxy not in lazy mode.
func (p *proxy) lazyRequest() *discoveryv3.DeltaDiscoveryRequest {
	if len(p.reports) == 0 {
		return nil
	}
	return &discoveryv3.DeltaDiscoveryRequest{TypeUrl: config.LazyDestinationType, ResourceNamesSubscribe: p.reports}
}
