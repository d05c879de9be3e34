package controller

import (
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"istio.io/api/networking/v1alpha3"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/apis/metaprotocol/v1alpha1"
)

// tokenBucket translates a token bucket; tokensPerFill defaults to 1.
func tokenBucket(b *v1alpha1.TokenBucket) *configv1alpha1.LocalRateLimit {
	per := uint32(1)
	if b.TokensPerFill != nil {
		per = *b.TokensPerFill
	}
	return &configv1alpha1.LocalRateLimit{MaxTokens: b.MaxTokens, TokensPerFill: per, FillInterval: durationpb.New(b.FillInterval.Duration)}
}

// serviceLocalRateLimit translates a MetaRouter's localRateLimit into the
// route configuration's, whose buckets all its routes share.
func serviceLocalRateLimit(l *v1alpha1.LocalRateLimit) *configv1alpha1.ServiceLocalRateLimit {
	if l == nil {
		return nil
	}
	out := &configv1alpha1.ServiceLocalRateLimit{}
	if l.TokenBucket != nil {
		out.TokenBucket = tokenBucket(l.TokenBucket)
	}
	for i := range l.Conditions {
		c := &l.Conditions[i]
		out.Conditions = append(out.Conditions, &configv1alpha1.LocalRateLimitCondition{
			Match:       translateMatch(&c.Match),
			TokenBucket: tokenBucket(&c.TokenBucket),
		})
	}
	return out
}

// globalRateLimit translates a MetaRouter's globalRateLimit into the
// action every one of its routes carries, and records the cluster of the
// rate limit service. A service that Validate refused gives nil (the
// controller does not send such a MetaRouter).
func (g *Generation) globalRateLimit(mr *v1alpha1.MetaRouter) *configv1alpha1.GlobalRateLimit {
	gl := mr.Spec.GlobalRateLimit
	if gl == nil {
		return nil
	}
	host, port, err := gl.ServiceAddress()
	if err != nil {
		return nil
	}
	out := &configv1alpha1.GlobalRateLimit{
		Match:      translateMatch(gl.Match),
		Domain:     gl.Domain,
		Cluster:    g.rateLimitCluster(host, port),
		DenyOnFail: gl.DenyOnFail,
	}
	if gl.RequestTimeout != nil {
		out.Timeout = durationpb.New(gl.RequestTimeout.Duration)
	}
	for _, d := range gl.Descriptors {
		out.Descriptors = append(out.Descriptors, &configv1alpha1.RateLimitDescriptorEntry{Key: d.DescriptorKey, Attribute: d.Property})
	}
	return out
}

// rateLimitCluster records the cluster of a rate limit service and returns
// its name, Istio's for the host and port, as Aeraki's rateLimitService
// names it. The cluster's one endpoint is the host name and port: the
// registry knows only MetaProtocol services, and a rate limit service
// speaks gRPC, so the proxy resolves the name (in Kubernetes, to the
// Service's cluster IP) when it connects. A proxy with an identity calls
// a service in the mesh over Istio mTLS (rateLimitTLS).
func (g *Generation) rateLimitCluster(host string, port uint32) string {
	name := ClusterName(host, port, "")
	if g.rateLimitClusters == nil {
		g.rateLimitClusters, g.rateLimitHosts = map[string]*clusterv3.Cluster{}, map[string]bool{}
	}
	g.rateLimitHosts[host] = true
	if g.rateLimitClusters[name] == nil {
		c := &clusterv3.Cluster{
			Name:           name,
			ConnectTimeout: durationpb.New(defaultConnectTimeout),
			LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}},
				}}}},
			},
		}
		if g.proxy.Identity != "" {
			g.ix.rateLimitTLS(c, host, port, g.proxy)
		}
		g.rateLimitClusters[name] = c
	}
	return name
}

// rateLimitTLS secures a rate limit service's cluster as Istio would reach
// the service: a DestinationRule for its host with tls mode ISTIO_MUTUAL
// puts Istio mTLS on it (with the rule's sni and subjectAltNames), DISABLE
// leaves it plaintext. Without a tls mode, auto mTLS cannot look at the
// endpoints' sidecars (the service is not in the registry), so the
// PeerAuthentication of the service's namespace decides: STRICT (there or
// mesh-wide) means its sidecars accept only mTLS, so the proxy uses it;
// PERMISSIVE or none, plaintext, which the service accepts either way.
func (ix *Index) rateLimitTLS(c *clusterv3.Cluster, host string, port uint32, p *Proxy) {
	var pol policy
	if dr := ix.destinationRule(host, p.Namespace); dr != nil {
		pol.merge(dr.Spec.GetTrafficPolicy(), port)
	}
	tls := pol.tls
	if tls == nil {
		ns, ok := ix.kubeNamespace(host)
		if !ok || ix.inboundMode(&Proxy{Namespace: ns}, port) != mtlsStrict {
			return
		}
		tls = &v1alpha3.ClientTLSSettings{Mode: v1alpha3.ClientTLSSettings_ISTIO_MUTUAL}
	}
	ix.applyUpstreamTLS(c, host, port, "", tls, ix.trustDomain(p))
}

// kubeNamespace is the namespace of a Kubernetes service host
// ("name.ns.svc.<domain suffix>").
func (ix *Index) kubeNamespace(host string) (string, bool) {
	rest, ok := strings.CutSuffix(host, ".svc."+ix.opts.DomainSuffix)
	if !ok {
		return "", false
	}
	_, ns, ok := strings.Cut(rest, ".")
	return ns, ok && ns != "" && !strings.Contains(ns, ".")
}

// addRateLimitClusters adds the clusters of the rate limit services the
// routes call, unless a route already sends to a cluster of that name
// (which then serves both), keeping the clusters sorted by name.
func (g *Generation) addRateLimitClusters() {
	if len(g.rateLimitClusters) == 0 {
		return
	}
	have := map[string]bool{}
	for _, c := range g.res.Clusters {
		have[c.GetName()] = true
	}
	for name, c := range g.rateLimitClusters {
		if !have[name] {
			g.res.Clusters = append(g.res.Clusters, c)
		}
	}
	sort.Slice(g.res.Clusters, func(i, j int) bool { return g.res.Clusters[i].GetName() < g.res.Clusters[j].GetName() })
}
