package controller

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// Proxy modes, as a proxy states them in its node metadata. They change
// nothing in the generated resources yet; they are there so that one
// controller can serve proxies of every kind (docs/mesh-integration.md).
const (
	ModeWaypoint = "waypoint"
	ModeSidecar  = "sidecar"
	ModeGateway  = "gateway"
)

// Proxy is who asks for config: its identity and where it runs. Proxies
// with the same ScopeKey get the same resources.
type Proxy struct {
	ID        string
	Namespace string
	Labels    map[string]string
	Mode      string
	// ListenAddress is the IP the proxy's listeners bind; "0.0.0.0" when empty.
	ListenAddress string
	// HBONE says the proxy terminates HBONE (Istio ambient's tunnel to a
	// waypoint): its listeners list the destinations they serve, and the
	// service ports it cannot bind get listeners without an address.
	HBONE bool
	// Identity is the proxy's SPIFFE workload identity
	// ("spiffe://cluster.local/ns/NS/sa/SA") when it has one, so it can
	// terminate and originate Istio mTLS; empty for a proxy without one,
	// which gets plaintext listeners and clusters only.
	Identity string
	// Lazy says the proxy runs in lazy mode (lazy.go): only the
	// destinations in Learned, which it reported, get their routes; the
	// others go through the fallback proxy.
	Lazy    bool
	Learned map[string]bool
}

// ScopeKey identifies what Generate depends on: two proxies with equal
// keys get equal resources, so the server generates once per key.
func (p *Proxy) ScopeKey() string {
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%q|%q|%q|%q|%t", p.Namespace, p.Mode, p.ListenAddress, p.Identity, p.HBONE)
	for _, k := range keys {
		fmt.Fprintf(&b, "|%q=%q", k, p.Labels[k])
	}
	b.WriteString(p.lazyKey())
	return b.String()
}

// ListenerName names the listener (and its route configuration) of a
// host's port.
func ListenerName(host string, port uint32) string {
	return fmt.Sprintf("%s_%d", host, port)
}

// SteeringListenerName names a waypoint's listener on the steering port of
// a host's port; it serves the route configuration ListenerName names.
func SteeringListenerName(host string, port uint32) string {
	return ListenerName(host, port) + "_steering"
}

type clusterKey struct {
	host   string
	port   uint32
	subset string
}

// Generate makes the resources of one proxy: a listener and a route
// configuration for each port of each MetaProtocol service the proxy sees
// (Sidecar egress hosts and exportTo decide), and the clusters and
// endpoints those routes use. A proxy with an identity gets Istio mTLS on
// its listeners and clusters (mtls.go); every listener carries the
// authorization policies that cover it (authorization.go). Resources are
// sorted by name, so equal inputs give equal output.
func (ix *Index) Generate(p *Proxy) *config.Resources {
	res, _ := ix.GenerateDeps(p)
	return res
}

// GenerateDeps is Generate, and what the generation read of the Index
// (see Affects).
func (ix *Index) GenerateDeps(p *Proxy) (*config.Resources, *Deps) {
	deps := newDeps()
	g := &Generation{ix: ix, proxy: p, clusters: map[clusterKey]bool{}, ports: map[uint32]string{}, routes: map[string]bool{}, dests: map[string]bool{}, deps: deps}
	deps.always = len(ix.gatewayServers(p)) > 0
	g.addGatewayListeners()
	sc := ix.sidecarFor(p)
	for _, h := range ix.byAge {
		svc := ix.services[h]
		if !ix.sees(p, sc, svc) {
			continue
		}
		// Every host it sees, whether it gets a listener or not: which
		// service holds a port number depends on them all.
		deps.readListener(h)
		for _, port := range svc.Ports {
			// One listener per port number: the oldest service keeps it
			// (reportPortConflicts says so in the others' status); a
			// steered service is also served on its own steering port.
			if _, taken := g.ports[port.Number]; taken {
				if p.HBONE {
					g.addListener(svc, port, 0, ListenerName(h, port.Number))
				}
				continue
			}
			g.ports[port.Number] = h
			g.addListener(svc, port, port.Number, ListenerName(h, port.Number))
		}
	}
	for _, sp := range ix.waypointPorts(p) {
		deps.always = true
		svc := ix.services[sp.Host]
		port, ok := svc.Port(sp.Port)
		if _, taken := g.ports[sp.Steering]; taken || !ok || !ix.sees(p, sc, svc) {
			continue
		}
		g.ports[sp.Steering] = sp.Host
		g.addListener(svc, port, sp.Steering, SteeringListenerName(sp.Host, sp.Port))
	}
	sort.Slice(g.res.Listeners, func(i, j int) bool { return g.res.Listeners[i].Name < g.res.Listeners[j].Name })
	sort.Slice(g.res.Routes, func(i, j int) bool { return g.res.Routes[i].Name < g.res.Routes[j].Name })
	type named struct {
		name string
		key  clusterKey
	}
	keys := make([]named, 0, len(g.clusters))
	for k := range g.clusters {
		keys = append(keys, named{ClusterName(k.host, k.port, k.subset), k})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].name < keys[j].name })
	for _, nk := range keys {
		k := nk.key
		deps.read(k.host)
		c, cla := ix.buildCluster(k.host, k.port, k.subset, p)
		g.res.Clusters = append(g.res.Clusters, c)
		g.res.Endpoints = append(g.res.Endpoints, cla)
	}
	g.addRateLimitClusters()
	for h := range g.rateLimitHosts {
		deps.read(h) // a DestinationRule for it sets the cluster's TLS
	}
	return &g.res, deps
}

// addListener adds the listener of a service port, bound to number (none
// when 0: served through HBONE only), and the port's route configuration
// if no listener had it yet. A proxy that terminates HBONE finds the
// service port's own listener (not a steering one) by its authorities.
func (g *Generation) addListener(svc *Service, port Port, number uint32, name string) {
	routes := ListenerName(svc.Host, port.Number)
	if number == 0 && !g.newDestination(svc, port) {
		return // nothing would reach it: the proxy refuses such a listener
	}
	// A proxy without an identity cannot terminate Istio mTLS: it keeps
	// one plaintext chain, whatever PeerAuthentication says.
	mode := mtlsDisable
	if g.proxy.Identity != "" {
		mode = g.ix.inboundMode(g.proxy, number)
	}
	g.addBoundListener(svc, port, number, name, routes, mode)
	if !g.routes[routes] {
		g.routes[routes] = true
		if !g.addLazyRoutes(svc, port, number, routes) {
			g.deps.read(svc.Host)
			g.addRoutes(svc, port, routes)
		}
	}
}

// addBoundListener adds a listener serving the route configuration routes
// with a service port's codec and policies, bound to number (none when 0),
// with the filter chains of an mTLS mode.
func (g *Generation) addBoundListener(svc *Service, port Port, number uint32, name, routes string, mode mtlsMode) {
	g.appendListener(name, number, filterChains(mode, g.listenerFilters(svc, port, name, routes)))
}

// listenerFilters are the filters of a listener serving the route
// configuration routes with a service port's codec and policies.
func (g *Generation) listenerFilters(svc *Service, port Port, name, routes string) []*listenerv3.Filter {
	mpp := &configv1alpha1.MetaProtocolProxy{
		StatPrefix:      name,
		Codec:           port.Protocol.Codec,
		CodecOptions:    g.codecOptions(svc, port),
		RouteConfigName: routes,
		Authorization:   g.authorization(svc, port),
		Lazy:            g.lazyListener(svc.Host, port.Number),
	}
	mpp.Tracing, mpp.AccessLog = g.observability()
	if g.proxy.HBONE && name == ListenerName(svc.Host, port.Number) {
		mpp.Authorities = g.authorities(svc, port)
	}
	anyCfg, err := anypb.New(mpp)
	if err != nil {
		panic(fmt.Sprintf("controller: marshal MetaProtocolProxy: %v", err)) // cannot fail for a valid message
	}
	return []*listenerv3.Filter{{
		Name:       config.FilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyCfg},
	}}
}

// authorities are the destinations ("ip:port") of a service port that no
// listener of the proxy serves yet: two services may claim one address
// (ServiceEntries), and the proxy refuses a destination listed twice; the
// older service, generated first, keeps it.
func (g *Generation) authorities(svc *Service, port Port) []string {
	var out []string
	for _, a := range svc.Addresses {
		d := net.JoinHostPort(a, strconv.Itoa(int(port.Number)))
		if !g.dests[d] {
			g.dests[d] = true
			out = append(out, d)
		}
	}
	return out
}

// newDestination reports whether a service port has an HBONE destination
// no listener lists yet.
func (g *Generation) newDestination(svc *Service, port Port) bool {
	for _, a := range svc.Addresses {
		if !g.dests[net.JoinHostPort(a, strconv.Itoa(int(port.Number)))] {
			return true
		}
	}
	return false
}

// appendListener adds a listener with its filter chains, bound to the
// proxy's listen address and number (no address when 0).
func (g *Generation) appendListener(name string, number uint32, chains []*listenerv3.FilterChain) {
	l := &listenerv3.Listener{Name: name, FilterChains: chains}
	if number != 0 {
		addr := g.proxy.ListenAddress
		if addr == "" {
			addr = "0.0.0.0"
		}
		l.Address = socketAddress(addr, number)
	}
	g.res.Listeners = append(g.res.Listeners, l)
}

// addRoutes adds a service port's route configuration: its codec's
// translator's routes, the MetaRouter's, or one route to the service itself.
func (g *Generation) addRoutes(svc *Service, port Port, name string) {
	rc := &configv1alpha1.RouteConfiguration{Name: name}
	if routes := g.protocolRoutes(svc, port); routes != nil {
		rc.Routes = routes
	} else if mr := g.ix.router(svc.Host, g.proxy.Namespace); mr != nil {
		g.routerRoutes(rc, mr, svc, port.Number)
	} else {
		rc.Routes = []*configv1alpha1.Route{g.defaultRoute(svc.Host, port.Number)}
	}
	g.res.Routes = append(g.res.Routes, rc)
}

// defaultRoute sends every request to the service port itself.
func (g *Generation) defaultRoute(host string, port uint32) *configv1alpha1.Route {
	return &configv1alpha1.Route{
		Name:  "default",
		Match: &configv1alpha1.RouteMatch{},
		Route: &configv1alpha1.RouteAction{ClusterSpecifier: &configv1alpha1.RouteAction_Cluster{Cluster: g.cluster(host, port, "")}},
	}
}

// routerRoutes fills a service port's route configuration from its
// MetaRouter: its routes (or, when it has none, as with a MetaRouter that
// only sets rate limits, the route to the service itself), its
// service-wide local rate limit, and its global rate limit on every route.
func (g *Generation) routerRoutes(rc *configv1alpha1.RouteConfiguration, mr *v1alpha1.MetaRouter, svc *Service, port uint32) {
	for i := range mr.Spec.Routes {
		rc.Routes = append(rc.Routes, g.route(mr, &mr.Spec.Routes[i], port))
	}
	if len(rc.Routes) == 0 {
		rc.Routes = []*configv1alpha1.Route{g.defaultRoute(svc.Host, port)}
	}
	rc.LocalRateLimit = serviceLocalRateLimit(mr.Spec.LocalRateLimit)
	if gl := g.globalRateLimit(mr); gl != nil {
		for _, r := range rc.Routes {
			r.Route.GlobalRateLimit = proto.CloneOf(gl)
		}
	}
}

// cluster records that the proxy needs a cluster and returns its name.
func (g *Generation) cluster(host string, port uint32, subset string) string {
	g.clusters[clusterKey{host, port, subset}] = true
	return ClusterName(host, port, subset)
}

// destination resolves a route destination to a cluster. Without a port,
// the destination's port with the listener's number is used, or its only
// MetaProtocol port.
func (g *Generation) destination(mr *v1alpha1.MetaRouter, d *v1alpha1.Destination, listenerPort uint32) string {
	host := g.ix.qualify(d.Host, mr.Namespace)
	port := listenerPort
	if d.Port != nil {
		port = d.Port.Number
	} else if svc := g.ix.services[host]; svc != nil {
		if _, ok := svc.Port(listenerPort); !ok && len(svc.Ports) > 0 {
			port = svc.Ports[0].Number
		}
	}
	return g.cluster(host, port, d.Subset)
}

func (g *Generation) route(mr *v1alpha1.MetaRouter, r *v1alpha1.MetaRoute, port uint32) *configv1alpha1.Route {
	out := &configv1alpha1.Route{Name: r.Name, Match: translateMatch(r.Match), Route: &configv1alpha1.RouteAction{}}
	act := out.Route
	if len(r.Route) == 1 {
		act.ClusterSpecifier = &configv1alpha1.RouteAction_Cluster{Cluster: g.destination(mr, &r.Route[0].Destination, port)}
	} else {
		wc := &configv1alpha1.WeightedClusters{}
		for i := range r.Route {
			wc.Clusters = append(wc.Clusters, &configv1alpha1.ClusterWeight{
				Name:   g.destination(mr, &r.Route[i].Destination, port),
				Weight: uint32(r.Route[i].Weight),
			})
		}
		act.ClusterSpecifier = &configv1alpha1.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	if r.Timeout != nil {
		act.Timeout = durationpb.New(r.Timeout.Duration)
	}
	if len(r.HashPolicy) > 0 {
		act.HashPolicy = []*configv1alpha1.HashPolicy{{Attributes: r.HashPolicy}}
	}
	act.RequestMutation = keyValues(r.RequestMutation)
	act.ResponseMutation = keyValues(r.ResponseMutation)
	if rt := r.Retries; rt != nil {
		rp := &configv1alpha1.RetryPolicy{NumRetries: uint32(rt.Attempts), RetryOn: v1alpha1.SplitRetryOn(rt.RetryOn)}
		if len(rp.RetryOn) == 0 {
			rp.RetryOn = []string{"connect-failure", "unavailable"}
		}
		if rt.PerTryTimeout != nil {
			rp.PerTryTimeout = durationpb.New(rt.PerTryTimeout.Duration)
		}
		act.RetryPolicy = rp
	}
	if f := r.Fault; f != nil {
		fi := &configv1alpha1.FaultInjection{}
		if f.Delay != nil {
			fi.Delay = &configv1alpha1.FaultInjection_Delay{FixedDelay: durationpb.New(f.Delay.FixedDelay.Duration), Percentage: percent(f.Delay.Percentage)}
		}
		if f.Abort != nil {
			fi.Abort = &configv1alpha1.FaultInjection_Abort{Status: f.Abort.Status, Percentage: percent(f.Abort.Percentage)}
		}
		act.Fault = fi
	}
	if r.Mirror != nil {
		act.Mirror = []*configv1alpha1.MirrorPolicy{{Cluster: g.destination(mr, r.Mirror, port), Percentage: percent(r.MirrorPercentage)}}
	}
	if b := r.LocalRateLimit; b != nil {
		act.LocalRateLimit = tokenBucket(b)
	}
	return out
}

// percent reads an optional percentage; absent means 100.
func percent(p *v1alpha1.Percent) float64 {
	if p == nil {
		return 100
	}
	return p.Value
}

func keyValues(kvs []v1alpha1.KeyValue) []*configv1alpha1.KeyValue {
	var out []*configv1alpha1.KeyValue
	for _, kv := range kvs {
		out = append(out, &configv1alpha1.KeyValue{Key: kv.Key, Value: kv.Value})
	}
	return out
}

// translateMatch turns the attribute map into conditions sorted by name, so
// the output does not depend on map order.
func translateMatch(m *v1alpha1.MetaRouteMatch) *configv1alpha1.RouteMatch {
	out := &configv1alpha1.RouteMatch{}
	if m == nil {
		return out
	}
	names := make([]string, 0, len(m.Attributes))
	for n := range m.Attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sm := m.Attributes[n]
		am := &configv1alpha1.AttributeMatch{Name: n}
		switch {
		case sm.Exact != nil:
			am.Match = &configv1alpha1.AttributeMatch_Exact{Exact: *sm.Exact}
		case sm.Prefix != nil:
			am.Match = &configv1alpha1.AttributeMatch_Prefix{Prefix: *sm.Prefix}
		case sm.Regex != nil:
			am.Match = &configv1alpha1.AttributeMatch_Regex{Regex: *sm.Regex}
		default:
			am.Match = &configv1alpha1.AttributeMatch_Present{Present: true}
		}
		out.Attributes = append(out.Attributes, am)
	}
	return out
}

// sees reports whether proxy p, scoped by its Sidecar sc, gets svc's
// listeners: exportTo and the Sidecar's egress hosts decide.
func (ix *Index) sees(p *Proxy, sc *networkingv1.Sidecar, svc *Service) bool {
	return visibleTo(svc.ExportTo, svc.Namespace, p.Namespace) && egressAllows(sc, svc, p.Namespace)
}

// sidecarFor finds the Sidecar that scopes a proxy: one in its namespace
// whose workloadSelector matches its labels, else one in its namespace
// without a selector, else one in the root namespace without a selector.
func (ix *Index) sidecarFor(p *Proxy) *networkingv1.Sidecar {
	var nsDefault, rootDefault *networkingv1.Sidecar
	for _, sc := range ix.sidecars {
		sel := sc.Spec.GetWorkloadSelector().GetLabels()
		switch {
		case sc.Namespace == p.Namespace && len(sel) > 0:
			if labels.SelectorFromSet(sel).Matches(labels.Set(p.Labels)) {
				return sc
			}
		case sc.Namespace == p.Namespace:
			if nsDefault == nil {
				nsDefault = sc
			}
		case sc.Namespace == ix.opts.RootNamespace && len(sel) == 0:
			if rootDefault == nil {
				rootDefault = sc
			}
		}
	}
	if nsDefault != nil {
		return nsDefault
	}
	return rootDefault
}

// egressAllows applies a Sidecar's egress hosts ("namespace/dnsName", where
// namespace may be "*", "." or "~" and dnsName "*" or "*.suffix").
func egressAllows(sc *networkingv1.Sidecar, svc *Service, proxyNS string) bool {
	if sc == nil || len(sc.Spec.GetEgress()) == 0 {
		return true
	}
	for _, eg := range sc.Spec.GetEgress() {
		for _, h := range eg.GetHosts() {
			ns, name, ok := strings.Cut(h, "/")
			if !ok {
				continue
			}
			if ns == "." {
				ns = sc.Namespace
			}
			if ns == "~" || (ns != "*" && ns != svc.Namespace) {
				continue
			}
			if hostMatches(name, svc.Host) {
				return true
			}
		}
	}
	return false
}

func hostMatches(pattern, host string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(host, pattern[1:])
	}
	return pattern == host
}
