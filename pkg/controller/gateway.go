package controller

import (
	"fmt"
	"slices"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// A MetaRouter whose gateways name an Istio Gateway ("namespace/name", or
// "name" in the MetaRouter's namespace) routes the calls that arrive at
// that Gateway's servers: each proxy the Gateway's selector picks in its
// namespace gets a listener per server port, serving the routes of the
// oldest MetaRouter bound to the Gateway that has a host the server's
// hosts allow. MetaProtocol calls carry no host name to tell services
// apart on one port, so a server port serves one MetaRouter; younger ones
// that would share it say so in their status. "mesh" (the default when
// gateways is empty) binds the routes to every proxy's own listeners.

// meshGateway is the gateways value of the mesh's own proxies.
const meshGateway = "mesh"

// ReasonUnknownGateway is a MetaRouter's ResolvedRefs reason when a
// Gateway it names does not exist.
const ReasonUnknownGateway = "UnknownGateway"

// bindsMesh reports whether a MetaRouter's routes apply to the mesh's
// proxies: no gateways, or "mesh" among them.
func bindsMesh(mr *v1alpha1.MetaRouter) bool {
	return len(mr.Spec.Gateways) == 0 || slices.Contains(mr.Spec.Gateways, meshGateway)
}

// gatewayKey qualifies a MetaRouter's gateways entry to namespace/name.
func gatewayKey(g, ns string) string {
	if strings.Contains(g, "/") {
		return g
	}
	return ns + "/" + g
}

// indexGateways files the MetaRouters in force under the Gateways they
// bind, oldest first.
func (ix *Index) indexGateways(in *Inputs, effective []*v1alpha1.MetaRouter) {
	ix.gateways = map[string]*networkingv1.Gateway{}
	ix.gatewayRouters = map[string][]*v1alpha1.MetaRouter{}
	for _, gw := range in.Gateways {
		ix.gateways[key(gw)] = gw
	}
	for _, mr := range effective {
		for _, g := range mr.Spec.Gateways {
			if g != meshGateway {
				k := gatewayKey(g, mr.Namespace)
				ix.gatewayRouters[k] = append(ix.gatewayRouters[k], mr)
			}
		}
	}
}

// gatewayServer is what a Gateway server port serves: one MetaRouter's
// routes for one of its hosts.
type gatewayServer struct {
	gw     *networkingv1.Gateway
	server *v1alpha3.Server
	router *v1alpha1.MetaRouter
	svc    *Service
}

// gatewayServers lists the server ports of the Gateways that select a
// proxy, with what each serves; ports no MetaRouter serves are left out.
func (ix *Index) gatewayServers(p *Proxy) []gatewayServer {
	var out []gatewayServer
	for _, k := range sortedKeys(ix.gateways) {
		gw := ix.gateways[k]
		sel := gw.Spec.GetSelector()
		if gw.Namespace != p.Namespace || len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(p.Labels)) {
			continue
		}
		for _, srv := range gw.Spec.GetServers() {
			if mr, svc := ix.serverRouter(gw, srv); mr != nil {
				out = append(out, gatewayServer{gw: gw, server: srv, router: mr, svc: svc})
			}
		}
	}
	return out
}

// serverRouter finds the oldest MetaRouter bound to gw with a host the
// server allows, and that host's service.
func (ix *Index) serverRouter(gw *networkingv1.Gateway, srv *v1alpha3.Server) (*v1alpha1.MetaRouter, *Service) {
	for _, mr := range ix.gatewayRouters[key(gw)] {
		for _, h := range mr.Spec.Hosts {
			svc := ix.services[ix.qualify(h, mr.Namespace)]
			if svc != nil && len(svc.Ports) > 0 && serverAllows(srv, svc, gw.Namespace) {
				return mr, svc
			}
		}
	}
	return nil, nil
}

// serverAllows applies a Gateway server's hosts ("namespace/dnsName" or
// "dnsName", namespace "*" or "." for the Gateway's) to a service.
func serverAllows(srv *v1alpha3.Server, svc *Service, gwNS string) bool {
	for _, h := range srv.GetHosts() {
		ns, name, ok := strings.Cut(h, "/")
		if !ok {
			ns, name = "*", h
		}
		if ns == "." {
			ns = gwNS
		}
		if (ns == "*" || ns == svc.Namespace) && hostMatches(name, svc.Host) {
			return true
		}
	}
	return false
}

// GatewayListenerName names the listener of a Gateway's server port.
func GatewayListenerName(ns, gateway string, port uint32) string {
	return fmt.Sprintf("%s/%s_%d", ns, gateway, port)
}

// addGatewayListeners adds a listener for each Gateway server port that
// selects the proxy, with the routes of its MetaRouter.
func (g *Generation) addGatewayListeners() {
	for _, gs := range g.ix.gatewayServers(g.proxy) {
		number := gs.server.GetPort().GetNumber()
		if _, taken := g.ports[number]; taken || number == 0 {
			continue
		}
		g.ports[number] = gs.svc.Host
		name := GatewayListenerName(gs.gw.Namespace, gs.gw.Name, number)
		port := gs.svc.Ports[0]
		chains, err := g.gatewayChains(gs, g.listenerFilters(gs.svc, port, name, name))
		if err != nil {
			delete(g.ports, number) // warnGateways reported it
			continue
		}
		g.appendListener(name, number, chains)
		rc := &configv1alpha1.RouteConfiguration{Name: name}
		g.routerRoutes(rc, gs.router, gs.svc, port.Number)
		g.res.Routes = append(g.res.Routes, rc)
	}
}

// gatewayChains are the filter chains of a Gateway server's listener:
// plaintext without tls; Istio mTLS with the proxy's identity for
// ISTIO_MUTUAL; the Gateway's own certificate for SIMPLE and MUTUAL
// (gateway_tls.go).
func (g *Generation) gatewayChains(gs gatewayServer, filters []*listenerv3.Filter) ([]*listenerv3.FilterChain, error) {
	tls := gs.server.GetTls()
	if tls == nil {
		return filterChains(mtlsDisable, filters), nil
	}
	switch tls.GetMode() {
	case v1alpha3.ServerTLSSettings_SIMPLE, v1alpha3.ServerTLSSettings_MUTUAL:
		fc, err := g.gatewayTLSChain(gs.gw, tls, filters)
		if err != nil {
			return nil, err
		}
		return []*listenerv3.FilterChain{fc}, nil
	case v1alpha3.ServerTLSSettings_ISTIO_MUTUAL:
		if g.proxy.Identity == "" {
			return nil, fmt.Errorf("tls mode ISTIO_MUTUAL needs a proxy with an Istio identity")
		}
		return filterChains(mtlsStrict, filters), nil
	}
	return nil, fmt.Errorf("tls mode %s is not supported for MetaProtocol", tls.GetMode())
}

// warnGateways warns about the Gateway server ports that a MetaRouter is
// bound to and no proxy can serve (their TLS settings), once per build:
// Generate skips them.
func (ix *Index) warnGateways() {
	for _, k := range sortedKeys(ix.gateways) {
		gw := ix.gateways[k]
		for _, srv := range gw.Spec.GetServers() {
			mr, svc := ix.serverRouter(gw, srv)
			if mr == nil {
				continue
			}
			// An identity only matters for ISTIO_MUTUAL, reported apart.
			g := &Generation{ix: ix, proxy: &Proxy{Identity: "any"}, clusters: map[clusterKey]bool{}}
			if _, err := g.gatewayChains(gatewayServer{gw: gw, server: srv, router: mr, svc: svc}, nil); err != nil {
				ix.warnings = append(ix.warnings, fmt.Sprintf("Gateway %s: server port %d is not served: %v", k, srv.GetPort().GetNumber(), err))
			}
		}
	}
}

// gatewayConflicts says, for a MetaRouter, which Gateways it names do not
// exist, and on which server ports an older MetaRouter is served instead.
func (ix *Index) gatewayConflicts(mr *v1alpha1.MetaRouter) (missing, lost []string) {
	for i, g := range mr.Spec.Gateways {
		if g == meshGateway {
			continue
		}
		k := gatewayKey(g, mr.Namespace)
		gw := ix.gateways[k]
		if gw == nil {
			missing = append(missing, fmt.Sprintf("spec.gateways[%d]: no Gateway %s", i, k))
			continue
		}
		for _, srv := range gw.Spec.GetServers() {
			if w, _ := ix.serverRouter(gw, srv); w != nil && key(w) != key(mr) && ix.allowsAnyHost(srv, mr, gw.Namespace) {
				lost = append(lost, fmt.Sprintf("spec.gateways[%d]: port %d of Gateway %s serves the older MetaRouter %s", i, srv.GetPort().GetNumber(), k, key(w)))
			}
		}
	}
	return missing, lost
}

func (ix *Index) allowsAnyHost(srv *v1alpha3.Server, mr *v1alpha1.MetaRouter, gwNS string) bool {
	for _, h := range mr.Spec.Hosts {
		if svc := ix.services[ix.qualify(h, mr.Namespace)]; svc != nil && serverAllows(srv, svc, gwNS) {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
