package controller

import (
	"fmt"
	"sort"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// defaultConnectTimeout is Istio's default connect timeout.
const defaultConnectTimeout = 10 * time.Second

// ClusterName names the cluster of a host's port and subset, as Istio does.
func ClusterName(host string, port uint32, subset string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// destinationRule returns the DestinationRule for host as seen from a
// proxy in namespace ns: one in ns first, then in the service's
// namespace, then in the root namespace, then any other; the oldest first.
// Rules for a wildcard host ("*.example.com") count after exact ones.
func (ix *Index) destinationRule(host, ns string) *networkingv1.DestinationRule {
	svcNS := ""
	if s := ix.serviceOf(host); s != nil {
		svcNS = s.Namespace
	}
	var cands []*networkingv1.DestinationRule
	for _, dr := range ix.rules[host] {
		if visibleTo(dr.Spec.GetExportTo(), dr.Namespace, ns) {
			cands = append(cands, dr)
		}
	}
	if len(cands) == 0 {
		for h, drs := range ix.rules {
			if strings.HasPrefix(h, "*") && strings.HasSuffix(host, h[1:]) {
				for _, dr := range drs {
					if visibleTo(dr.Spec.GetExportTo(), dr.Namespace, ns) {
						cands = append(cands, dr)
					}
				}
			}
		}
		sortByAge(cands)
	}
	for _, want := range []string{ns, svcNS, ix.opts.RootNamespace} {
		for _, dr := range cands {
			if dr.Namespace == want {
				return dr
			}
		}
	}
	if len(cands) > 0 {
		return cands[0]
	}
	return nil
}

// subset finds a subset of host in any DestinationRule.
func (ix *Index) subset(host, name string) *v1alpha3.Subset {
	for _, dr := range ix.rules[host] {
		for _, s := range dr.Spec.GetSubsets() {
			if s.GetName() == name {
				return s
			}
		}
	}
	return nil
}

// policy is the traffic policy of one cluster after merging the rule's,
// the subset's and the port's settings (the most specific wins, field by
// field, as in Istio).
type policy struct {
	lb   *v1alpha3.LoadBalancerSettings
	pool *v1alpha3.ConnectionPoolSettings
	od   *v1alpha3.OutlierDetection
	// tls is nil when no level sets it: Istio's auto mTLS.
	tls *v1alpha3.ClientTLSSettings
	// budget is the rule's or subset's retryBudget (ports have none).
	budget *v1alpha3.TrafficPolicy_RetryBudget
}

func (p *policy) merge(tp *v1alpha3.TrafficPolicy, port uint32) {
	if tp == nil {
		return
	}
	p.set(tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection(), tp.GetTls())
	if b := tp.GetRetryBudget(); b != nil {
		p.budget = b
	}
	for _, pl := range tp.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() == port {
			p.set(pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection(), pl.GetTls())
		}
	}
}

func (p *policy) set(lb *v1alpha3.LoadBalancerSettings, pool *v1alpha3.ConnectionPoolSettings, od *v1alpha3.OutlierDetection, tls *v1alpha3.ClientTLSSettings) {
	if lb != nil {
		p.lb = lb
	}
	if pool != nil {
		p.pool = pool
	}
	if od != nil {
		p.od = od
	}
	if tls != nil {
		p.tls = tls
	}
}

// buildCluster makes the cluster and its endpoints for a host's port and
// subset, as proxy p sees them. A host or subset that does not exist gives
// a cluster without endpoints, so routes stay consistent and calls fail
// with "no healthy upstream" until it appears. Only a proxy with an
// identity gets Istio mTLS (mtls.go).
func (ix *Index) buildCluster(host string, port uint32, subset string, p *Proxy) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	svc := ix.services[host]
	if host == ix.opts.LazyFallback {
		if svc = ix.lazyFallbackAt(port, p); svc == nil {
			return ix.lazyFallbackCluster(port)
		}
	}
	name := ClusterName(host, port, subset)
	var pol policy
	var sel labels.Selector
	dr := ix.destinationRule(host, p.Namespace)
	if dr != nil {
		pol.merge(dr.Spec.GetTrafficPolicy(), port)
	}
	if subset != "" {
		sel = labels.Nothing()
		if dr != nil {
			for _, s := range dr.Spec.GetSubsets() {
				if s.GetName() == subset {
					sel = labels.SelectorFromSet(s.GetLabels())
					pol.merge(s.GetTrafficPolicy(), port)
				}
			}
		}
	}
	c := edsCluster(name)
	applyLB(c, pol.lb)
	applyPool(c, pol.pool)
	applyRetryBudget(c, pol.budget)
	applyOutlier(c, pol.od)
	mtls := p.Identity != ""
	if mtls {
		ix.applyUpstreamTLS(c, host, port, subset, pol.tls, ix.trustDomain(p))
	}
	cla := loadAssignment(name, svc, port, sel, mtls, ix.trustDomain(p))
	if svc != nil {
		c.Metadata = serviceMetadata(host, svc)
	}
	if host != ix.opts.LazyFallback {
		ix.patchCluster(c, cla, host, port) // the fallback is no protocol's service
	}
	return c, cla
}

func applyLB(c *clusterv3.Cluster, lb *v1alpha3.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		if m := ch.GetMaglev(); m != nil {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			if m.GetTableSize() > 0 {
				c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(m.GetTableSize())}}
			}
			return
		}
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		size := ch.GetRingHash().GetMinimumRingSize()
		if size == 0 {
			//lint:ignore SA1019 Istio still accepts the deprecated field, and users still set it
			size = ch.GetMinimumRingSize()
		}
		if size > 0 {
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(size)}}
		}
		return
	}
	switch lb.GetSimple() {
	//lint:ignore SA1019 Istio still accepts the deprecated field, and users still set it
	case v1alpha3.LoadBalancerSettings_LEAST_CONN, v1alpha3.LoadBalancerSettings_LEAST_REQUEST:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	case v1alpha3.LoadBalancerSettings_RANDOM:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	default:
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	}
}

func applyPool(c *clusterv3.Cluster, pool *v1alpha3.ConnectionPoolSettings) {
	if pool == nil {
		return
	}
	if t := pool.GetTcp().GetConnectTimeout(); t != nil {
		c.ConnectTimeout = durationpb.New(t.AsDuration())
	}
	th := &clusterv3.CircuitBreakers_Thresholds{}
	if n := pool.GetTcp().GetMaxConnections(); n > 0 {
		th.MaxConnections = wrapperspb.UInt32(uint32(n))
	}
	if n := pool.GetHttp().GetHttp1MaxPendingRequests(); n > 0 {
		th.MaxPendingRequests = wrapperspb.UInt32(uint32(n))
	}
	if n := pool.GetHttp().GetHttp2MaxRequests(); n > 0 {
		th.MaxRequests = wrapperspb.UInt32(uint32(n))
	}
	if n := pool.GetHttp().GetMaxRetries(); n > 0 {
		th.MaxRetries = wrapperspb.UInt32(uint32(n))
	}
	if th.MaxConnections != nil || th.MaxPendingRequests != nil || th.MaxRequests != nil || th.MaxRetries != nil {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	}
}

// applyRetryBudget gives the cluster Envoy's retry_budget from a
// DestinationRule's retryBudget, with Istio's defaults (20%, 3) for what it
// leaves unset; without one, the cluster's max_retries (3 unless the
// connection pool says) caps its retries in flight. budgetInterval is not
// sent: the proxy counts the requests in flight now, as Envoy does without
// it.
func applyRetryBudget(c *clusterv3.Cluster, b *v1alpha3.TrafficPolicy_RetryBudget) {
	if b == nil {
		return
	}
	rb := &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
		BudgetPercent:       &typev3.Percent{Value: 20},
		MinRetryConcurrency: wrapperspb.UInt32(3),
	}
	if p := b.GetPercent(); p != nil {
		rb.BudgetPercent.Value = min(max(p.GetValue(), 0), 100)
	}
	if n := b.GetMinRetryConcurrency(); n > 0 {
		rb.MinRetryConcurrency = wrapperspb.UInt32(n)
	}
	if c.CircuitBreakers == nil {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{}}}
	}
	c.CircuitBreakers.Thresholds[0].RetryBudget = rb
}

func applyOutlier(c *clusterv3.Cluster, od *v1alpha3.OutlierDetection) {
	if od == nil {
		return
	}
	out := &clusterv3.OutlierDetection{}
	//lint:ignore SA1019 Istio still accepts the deprecated field, and users still set it
	legacy := od.GetConsecutiveErrors()
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(v.GetValue())
	} else if legacy > 0 {
		out.Consecutive_5Xx = wrapperspb.UInt32(uint32(legacy))
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(v.GetValue())
	}
	if v := od.GetConsecutiveLocalOriginFailures(); v != nil {
		out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(v.GetValue())
	}
	if d := od.GetInterval(); d != nil {
		out.Interval = durationpb.New(d.AsDuration())
	}
	if d := od.GetBaseEjectionTime(); d != nil {
		out.BaseEjectionTime = durationpb.New(d.AsDuration())
	}
	if n := od.GetMaxEjectionPercent(); n > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(n))
	}
	c.OutlierDetection = out
}

// loadAssignment lists the endpoints of svc's port that sel selects (all
// when sel is nil), sorted by address; none when svc is nil. With mtls,
// endpoints with a sidecar carry the metadata that selects Istio mTLS for
// them. Every endpoint carries its workload (workloadMetadata), for
// Istio's metrics.
func loadAssignment(name string, svc *Service, port uint32, sel labels.Selector, mtls bool, td string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if svc == nil {
		return cla
	}
	var lbs []*endpointv3.LbEndpoint
	for _, e := range svc.Endpoints {
		p, ok := e.Ports[port]
		if !ok || (sel != nil && !sel.Matches(labels.Set(e.Labels))) {
			continue
		}
		lb := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddress(e.Address, p),
		}}}
		if mtls && e.Labels[tlsModeLabel] == config.TLSModeIstio {
			lb.Metadata = istioEndpointMetadata()
		}
		addWorkloadMetadata(lb, &e, td)
		lbs = append(lbs, lb)
	}
	sort.SliceStable(lbs, func(i, j int) bool {
		a, b := lbs[i].GetEndpoint().GetAddress().GetSocketAddress(), lbs[j].GetEndpoint().GetAddress().GetSocketAddress()
		if a.GetAddress() != b.GetAddress() {
			return a.GetAddress() < b.GetAddress()
		}
		return a.GetPortValue() < b.GetPortValue()
	})
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return cla
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// addWorkloadMetadata puts e's workload in lb's metadata as istiod does
// ("istio": {"workload": "NAME;NAMESPACE;APP;VERSION;CLUSTER"}), with the
// SPIFFE ID of its service account as "principal". App and version are
// Istio's canonical service and revision: the service.istio.io labels,
// else app.kubernetes.io/name and version, else app and version.
func addWorkloadMetadata(lb *endpointv3.LbEndpoint, e *Endpoint, td string) {
	w := config.WorkloadMetadata{
		Name:      e.Workload,
		Namespace: e.Namespace,
		App:       firstLabel(e.Labels, "service.istio.io/canonical-name", "app.kubernetes.io/name", "app"),
		Version:   firstLabel(e.Labels, "service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"),
		Cluster:   defaultClusterID,
	}
	if w.Name == "" {
		w.Name = w.App
	}
	if ns, sa, ok := strings.Cut(e.ServiceAccount, "/"); ok {
		w.Principal = "spiffe://" + td + "/ns/" + ns + "/sa/" + sa
	}
	if w == (config.WorkloadMetadata{Cluster: defaultClusterID}) {
		return // nothing known: the proxy labels it unknown
	}
	if lb.Metadata == nil {
		lb.Metadata = &corev3.Metadata{}
	}
	if lb.Metadata.FilterMetadata == nil {
		lb.Metadata.FilterMetadata = map[string]*structpb.Struct{}
	}
	lb.Metadata.FilterMetadata[config.IstioMetadataKey] = w.Metadata()
}

// defaultClusterID is Istio's cluster ID of a single-cluster mesh.
const defaultClusterID = "Kubernetes"

func firstLabel(l map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := l[k]; v != "" {
			return v
		}
	}
	return ""
}

// serviceMetadata is a cluster's destination service, as istiod puts it
// in cluster metadata: a Kubernetes Service's name, a ServiceEntry's host.
func serviceMetadata(host string, svc *Service) *corev3.Metadata {
	name := host
	if svc.Kind == "Service" && svc.Name != "" {
		name = svc.Name
	}
	return config.ServiceMetadata{Host: host, Name: name, Namespace: svc.Namespace}.Metadata()
}

// edsCluster is a round-robin cluster whose endpoints come over ADS by
// its own name, with the default connect timeout.
func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig: &corev3.ConfigSource{
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
				ResourceApiVersion:    corev3.ApiVersion_V3,
			},
			ServiceName: name,
		},
		ConnectTimeout: durationpb.New(defaultConnectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
}
