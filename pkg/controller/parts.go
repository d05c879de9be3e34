package controller

import (
	"context"
	"maps"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// The generic side of the translator registry (translator.go): the
// Builder's translators, the Parts of an Index, and what a translator may
// use of the Index and of one proxy's generation.

// part is a translator's Part in an Index, with the codec it applies to.
type part struct {
	codec string
	Part
}

// translatorSet holds a Builder's translators, made on first use.
type translatorSet struct {
	mu sync.Mutex
	// byProtocol are the translators made so far.
	byProtocol map[string]Translator
}

// build runs every registered translator over in, by protocol name.
func (s *translatorSet) build(ix *Index, in *Inputs) []part {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byProtocol == nil {
		s.byProtocol = map[string]Translator{}
	}
	var out []part
	for _, info := range Translators() {
		t := s.byProtocol[info.Protocol]
		if t == nil {
			t = info.New()
			s.byProtocol[info.Protocol] = t
		}
		out = append(out, part{codec: info.Codec, Part: t.Build(ix, in)})
	}
	return out
}

// ProtocolStatuses is the status each object of the translators' kinds
// should have, by "<Kind>/<namespace>/<name>".
func (ix *Index) ProtocolStatuses() map[string]RouterStatus {
	out := map[string]RouterStatus{}
	for _, p := range ix.parts {
		maps.Copy(out, p.Statuses())
	}
	return out
}

// partFor returns the Part of a codec, nil when no translator has it.
func (ix *Index) partFor(codec string) Part {
	for _, p := range ix.parts {
		if p.codec == codec {
			return p.Part
		}
	}
	return nil
}

// codecOptions are the codec options of the listener of svc's port: its
// codec's translator's, else the port's protocol's.
func (g *Generation) codecOptions(svc *Service, port Port) map[string]string {
	if o, ok := g.ix.partFor(port.Protocol.Codec).(CodecOptioner); ok {
		return o.CodecOptions(g, svc, port)
	}
	return port.Protocol.CodecOptions
}

// protocolRoutes are the routes the translator of the port's codec gives
// it; nil when it gives none.
func (g *Generation) protocolRoutes(svc *Service, port Port) []*configv1alpha1.Route {
	if r, ok := g.ix.partFor(port.Protocol.Codec).(Router); ok {
		return r.Routes(g, svc, port)
	}
	return nil
}

// patchCluster lets the translator of the codec of host's port adjust its
// cluster; for a host without a service, every translator may.
func (ix *Index) patchCluster(c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment, host string, port uint32) {
	svc := ix.services[host]
	for _, p := range ix.parts {
		cp, ok := p.Part.(ClusterPatcher)
		if !ok {
			continue
		}
		if svc != nil {
			if sp, found := svc.Port(port); !found || sp.Protocol.Codec != p.codec {
				continue
			}
		}
		cp.PatchCluster(ix, c, cla, host, port)
	}
}

// protocolAuthorization adds the translators' own authorization policies,
// each covering its codec's ports.
func (ix *Index) protocolAuthorization() {
	for _, p := range ix.parts {
		a, ok := p.Part.(Authorizer)
		if !ok {
			continue
		}
		for _, cp := range a.Authorization() {
			ix.authz = append(ix.authz, ix.checked(&authzPolicy{ns: cp.Namespace, codec: p.codec, out: cp.Policy}))
		}
	}
}

// Qualify turns a short Kubernetes name ("greeter") into a host relative
// to namespace ns ("greeter.<ns>.svc.<domain suffix>"), as Istio does;
// other hosts stay as they are.
func (ix *Index) Qualify(host, ns string) string { return ix.qualify(host, ns) }

// RoutedByMetaRouter reports whether a MetaRouter exported to namespace ns
// routes host.
func (ix *Index) RoutedByMetaRouter(host, ns string) bool { return ix.router(host, ns) != nil }

// Resolve looks a name up with the build's resolver, which keeps the last
// good answer when a lookup fails and refreshes the name with the others.
func (ix *Index) Resolve(ctx context.Context, host string) ([]string, error) {
	return ix.opts.Resolve(ctx, host)
}

// Generation is one proxy's generation, as a translator sees it.
type Generation struct {
	ix       *Index
	proxy    *Proxy
	res      config.Resources
	clusters map[clusterKey]bool
	ports    map[uint32]string
	// routes are the route configurations made so far, by name: a
	// service port's listener and its steering listener share one.
	routes map[string]bool
	// dests are the HBONE destinations listed so far.
	dests map[string]bool
	// rateLimitClusters are the clusters of the rate limit services that
	// MetaRouters' globalRateLimit call, by name (ratelimit.go).
	rateLimitClusters map[string]*clusterv3.Cluster
	// rateLimitHosts are those services' hosts.
	rateLimitHosts map[string]bool
	// deps are what the generation read of the Index so far.
	deps *Deps
}

// Index is the Index the proxy's resources come from.
func (g *Generation) Index() *Index { return g.ix }

// Proxy is the proxy the resources are for.
func (g *Generation) Proxy() *Proxy { return g.proxy }

// Cluster records that the proxy needs the cluster of a host's port and
// subset, and returns its name.
func (g *Generation) Cluster(host string, port uint32, subset string) string {
	return g.cluster(host, port, subset)
}

// AddSecret adds an SDS secret to the proxy's resources once (listeners
// may share one) and returns its name.
func (g *Generation) AddSecret(s *tlsv3.Secret) string {
	for _, have := range g.res.Secrets {
		if have.GetName() == s.GetName() {
			return s.GetName()
		}
	}
	g.res.Secrets = append(g.res.Secrets, s)
	return s.GetName()
}

// Condition makes a condition for an object of generation gen.
func Condition(t string, ok bool, reason, msg string, gen int64) metav1.Condition {
	return cond(t, ok, reason, msg, gen)
}

// Key is an object's "<namespace>/<name>".
func Key(o metav1.Object) string { return key(o) }

// AuthorizationAction translates a policy's action ("ALLOW", "DENY",
// "AUDIT"; ALLOW when empty).
func AuthorizationAction(a string) configv1alpha1.AuthorizationPolicy_Action { return action(a) }

// ObjectsOf lists the objects of a registered kind in in, as the Go type
// its Kind.New makes (*T).
func ObjectsOf[T any](in *Inputs, kind string) []*T {
	objs := in.Objects[kind]
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		if t, ok := any(o).(*T); ok {
			out = append(out, t)
		}
	}
	return out
}

// addObjects adds objects of a kind to in.
func (in *Inputs) addObjects(kind string, objs ...metav1.Object) {
	if len(objs) == 0 {
		return
	}
	if in.Objects == nil {
		in.Objects = map[string][]metav1.Object{}
	}
	in.Objects[kind] = append(in.Objects[kind], objs...)
}

// AddObjects adds objects of a registered kind to in, as a source would.
func (in *Inputs) AddObjects(kind string, objs ...metav1.Object) { in.addObjects(kind, objs...) }
