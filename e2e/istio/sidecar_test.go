package istio

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/rosetta-mesh/rosetta/internal/testutil"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// A stand-in sidecar: an ADS client that asks istiod for a pod's sidecar
// configuration, as the pod's Envoy would, and answers questions about it
// ("where does a connection to VIP:port go?") the way Envoy would route
// the connection. Nothing listens or forwards; it only reads config.

// The resources a stand-in sidecar subscribes to, and the one filter it reads.
const (
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	tcpProxyType = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
)

// sidecarIstioVersion is the proxy version a stand-in sidecar reports:
// that of the istiod it talks to (Istio 1.31), so istiod generates config
// for a proxy of its own version.
const sidecarIstioVersion = "1.31.0"

// sidecarNode is the pod a stand-in sidecar runs in.
type sidecarNode struct {
	Namespace, Pod, IP, ServiceAccount string
	// Labels are the pod's; istiod selects Sidecars, policies and
	// sourceLabels matches by them.
	Labels map[string]string
}

// id is the pod's Envoy node id: sidecar~IP~POD.NS~NS.svc.cluster.local.
func (n sidecarNode) id() string {
	return fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", n.IP, n.Pod, n.Namespace, n.Namespace)
}

// envoyNode is the node a pod's istio-agent sends, reduced to the
// metadata istiod needs: the namespace, cluster and version, the pod's
// labels and ServiceAccount (enough, measured), and INSTANCE_IPS, which
// istiod reads before the node id's IP (kept for old proxies).
func (n sidecarNode) envoyNode() (*corev3.Node, error) {
	labels := map[string]any{}
	for k, v := range n.Labels {
		labels[k] = v
	}
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":       n.Namespace,
		"CLUSTER_ID":      clusterID,
		"ISTIO_VERSION":   sidecarIstioVersion,
		"LABELS":          labels,
		"SERVICE_ACCOUNT": n.ServiceAccount,
		"INSTANCE_IPS":    n.IP,
	})
	if err != nil {
		return nil, fmt.Errorf("node metadata of %s/%s: %w", n.Namespace, n.Pod, err)
	}
	return &corev3.Node{Id: n.id(), Metadata: md}, nil
}

// standInSidecar holds the latest Listeners and Clusters istiod sent to a
// pod's sidecar over one ADS stream (state of the world), each response
// ACKed, or NACKed when it does not decode.
type standInSidecar struct {
	node sidecarNode
	// source is the pod's IP, the source of its outbound connections.
	source netip.Addr

	mu        sync.Mutex
	listeners map[string]*listenerv3.Listener
	clusters  map[string]*clusterv3.Cluster
	// versions are the accepted version of each type.
	versions map[string]string
	// err is why the stream ended, or the last response NACKed.
	err error
}

// startStandInSidecar connects as pod s.Namespace/s.Pod (IP s.IP, labels,
// ServiceAccount) to istiod's plaintext xDS, subscribes to all Clusters and
// Listeners, and keeps the latest of each until the test ends. It does not
// wait for the first response; the wait* methods do.
func startStandInSidecar(t *testing.T, m *istiod, s sidecarNode) *standInSidecar {
	t.Helper()
	source, err := netip.ParseAddr(s.IP)
	if err != nil {
		t.Fatalf("stand-in sidecar %s/%s: %v", s.Namespace, s.Pod, err)
	}
	node, err := s.envoyNode()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(m.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatalf("stand-in sidecar %s/%s: %v", s.Namespace, s.Pod, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		conn.Close()
		t.Fatalf("stand-in sidecar %s/%s: ADS stream: %v", s.Namespace, s.Pod, err)
	}
	sc := &standInSidecar{node: s, source: source, listeners: map[string]*listenerv3.Listener{},
		clusters: map[string]*clusterv3.Cluster{}, versions: map[string]string{}}
	// Clusters before Listeners, as Envoy asks; the node on the first
	// request only, as Istio's bootstrap has Envoy do.
	for i, typ := range []string{clusterType, listenerType} {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			cancel()
			conn.Close()
			t.Fatalf("stand-in sidecar %s/%s: subscribe to %s: %v", s.Namespace, s.Pod, typ, err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc.run(ctx, stream)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
	})
	return sc
}

// run receives responses until the stream ends, and ACKs or NACKs each.
func (s *standInSidecar) run(ctx context.Context, stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) {
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() == nil {
				s.setErr(fmt.Errorf("ADS stream ended: %w", err))
			}
			return
		}
		req := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := s.apply(resp); err != nil {
			err = fmt.Errorf("NACKed %s version %s: %w", resp.GetTypeUrl(), resp.GetVersionInfo(), err)
			s.setErr(err)
			req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		}
		s.mu.Lock()
		req.VersionInfo = s.versions[resp.GetTypeUrl()]
		s.mu.Unlock()
		if err := stream.Send(req); err != nil {
			if ctx.Err() == nil {
				s.setErr(fmt.Errorf("ADS stream: ACK: %w", err))
			}
			return
		}
	}
}

func (s *standInSidecar) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// apply decodes a response and, when all of it decodes, makes it the
// current set of its type.
func (s *standInSidecar) apply(resp *discoveryv3.DiscoveryResponse) error {
	switch resp.GetTypeUrl() {
	case listenerType:
		set, err := decodeAll[listenerv3.Listener](resp.GetResources())
		if err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.listeners = set
	case clusterType:
		set, err := decodeAll[clusterv3.Cluster](resp.GetResources())
		if err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.clusters = set
	default:
		return fmt.Errorf("not subscribed to %s", resp.GetTypeUrl())
	}
	s.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
	return nil
}

// namedMessage is a resource with a name: a Listener or a Cluster.
type namedMessage[T any] interface {
	*T
	proto.Message
	GetName() string
}

// decodeAll decodes the resources of a response by name.
func decodeAll[T any, P namedMessage[T]](resources []*anypb.Any) (map[string]P, error) {
	set := make(map[string]P, len(resources))
	for _, r := range resources {
		var v P = new(T)
		if err := r.UnmarshalTo(v); err != nil {
			return nil, err
		}
		set[v.GetName()] = v
	}
	return set, nil
}

// outboundCluster returns the cluster the sidecar's outbound TCP config
// sends a plaintext, non-HTTP connection to vip:port to, "" when none (no
// listener or filter chain takes it, or the chain's filters have no
// tcp_proxy, e.g. an HTTP chain). It follows Envoy: the listener whose
// address (or an additional address) is vip:port, else the wildcard
// (0.0.0.0 or ::) listener of port, else the virtual outbound listener
// (use_original_dst); then that listener's filter chain as Envoy's
// filter_chain_match picks it (see matchFilterChain), else its default
// chain. A tcp_proxy with weighted_clusters gives its first cluster, its
// weight ignored: enough for routes of one destination. Once listeners
// have arrived, a destination no Service has is not "": istiod's
// virtualOutbound sends it to PassthroughCluster.
func (s *standInSidecar) outboundCluster(vip string, port int) string {
	dst, err := netip.ParseAddr(vip)
	if err != nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.outboundListener(dst, port)
	if l == nil {
		return ""
	}
	fc := matchFilterChain(l, dst, port, s.source)
	if fc == nil {
		return ""
	}
	return tcpProxyCluster(fc)
}

// outboundListener is the listener Envoy's virtual outbound listener hands
// a connection to dst:port to, or that listener itself. Inbound listeners
// are left out. s.mu is held.
func (s *standInSidecar) outboundListener(dst netip.Addr, port int) *listenerv3.Listener {
	var wildcard, virtual *listenerv3.Listener
	for _, name := range s.listenerNames() {
		l := s.listeners[name]
		if l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND {
			continue
		}
		if l.GetUseOriginalDst().GetValue() {
			virtual = l
		}
		addrs := []*corev3.Address{l.GetAddress()}
		for _, a := range l.GetAdditionalAddresses() {
			addrs = append(addrs, a.GetAddress())
		}
		for _, a := range addrs {
			sa := a.GetSocketAddress()
			if sa == nil || int(sa.GetPortValue()) != port {
				continue
			}
			ip, err := netip.ParseAddr(sa.GetAddress())
			switch {
			case err != nil:
			case ip == dst:
				return l
			case ip.IsUnspecified() && ip.Is4() == dst.Is4():
				wildcard = l
			}
		}
	}
	if wildcard != nil {
		return wildcard
	}
	return virtual
}

// listenerNames are the names of the current listeners, sorted. s.mu is
// held.
func (s *standInSidecar) listenerNames() []string {
	names := make([]string, 0, len(s.listeners))
	for name := range s.listeners {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// matchFilterChain picks the filter chain of l that Envoy would give a
// plaintext connection from src to dst:port that is not HTTP, else l's
// default chain, else nil. Envoy narrows the chains one criterion at a
// time, keeping those that match most specifically and never going back:
// destination port, destination IP (longest prefix), server names (none:
// no SNI), transport protocol (raw_buffer), application protocols (none
// detected), direct source IP, source type (external), source IP, source
// ports (none: the source port is not known).
func matchFilterChain(l *listenerv3.Listener, dst netip.Addr, port int, src netip.Addr) *listenerv3.FilterChain {
	chains := l.GetFilterChains()
	steps := []func(*listenerv3.FilterChainMatch) int{
		func(m *listenerv3.FilterChainMatch) int {
			switch p := m.GetDestinationPort(); {
			case p == nil:
				return 0
			case int(p.GetValue()) == port:
				return 1
			}
			return -1
		},
		func(m *listenerv3.FilterChainMatch) int { return prefixMatch(m.GetPrefixRanges(), dst) },
		func(m *listenerv3.FilterChainMatch) int { return emptyMatch(m.GetServerNames()) },
		func(m *listenerv3.FilterChainMatch) int {
			switch m.GetTransportProtocol() {
			case "":
				return 0
			case "raw_buffer":
				return 1
			}
			return -1
		},
		func(m *listenerv3.FilterChainMatch) int { return emptyMatch(m.GetApplicationProtocols()) },
		func(m *listenerv3.FilterChainMatch) int { return prefixMatch(m.GetDirectSourcePrefixRanges(), src) },
		func(m *listenerv3.FilterChainMatch) int {
			switch m.GetSourceType() {
			case listenerv3.FilterChainMatch_ANY:
				return 0
			case listenerv3.FilterChainMatch_EXTERNAL:
				return 1
			}
			return -1
		},
		func(m *listenerv3.FilterChainMatch) int { return prefixMatch(m.GetSourcePrefixRanges(), src) },
		func(m *listenerv3.FilterChainMatch) int { return emptyMatch(m.GetSourcePorts()) },
	}
	for _, score := range steps {
		chains = mostSpecific(chains, score)
	}
	if len(chains) > 0 {
		return chains[0]
	}
	return l.GetDefaultFilterChain()
}

// mostSpecific keeps the chains whose match scores highest, leaving out
// those that score below 0 (no match).
func mostSpecific(chains []*listenerv3.FilterChain, score func(*listenerv3.FilterChainMatch) int) []*listenerv3.FilterChain {
	best, kept := 0, []*listenerv3.FilterChain(nil)
	for _, fc := range chains {
		switch n := score(fc.GetFilterChainMatch()); {
		case n < best:
		case n > best:
			best, kept = n, []*listenerv3.FilterChain{fc}
		default:
			kept = append(kept, fc)
		}
	}
	return kept
}

// prefixMatch scores ranges against ip: 0 when there are none (any IP),
// the longest prefix that contains ip, or -1 when none does.
func prefixMatch(ranges []*corev3.CidrRange, ip netip.Addr) int {
	if len(ranges) == 0 {
		return 0
	}
	best := -1
	for _, r := range ranges {
		p, err := netip.ParsePrefix(fmt.Sprintf("%s/%d", r.GetAddressPrefix(), r.GetPrefixLen().GetValue()))
		if err == nil && p.Contains(ip) {
			best = max(best, p.Bits())
		}
	}
	return best
}

// emptyMatch scores a condition the connection has nothing for: 0 when
// the chain sets none, else -1.
func emptyMatch[T any](values []T) int {
	if len(values) == 0 {
		return 0
	}
	return -1
}

// tcpProxyCluster is the cluster of fc's tcp_proxy filter, "" when it has
// none. Of weighted clusters it is the first, whatever the weights.
func tcpProxyCluster(fc *listenerv3.FilterChain) string {
	for _, f := range fc.GetFilters() {
		tc := f.GetTypedConfig()
		if tc.GetTypeUrl() != tcpProxyType {
			continue
		}
		var p tcpproxyv3.TcpProxy
		if err := tc.UnmarshalTo(&p); err != nil {
			return ""
		}
		if c := p.GetCluster(); c != "" {
			return c
		}
		if wc := p.GetWeightedClusters().GetClusters(); len(wc) > 0 {
			return wc[0].GetName()
		}
		return ""
	}
	return ""
}

// waitOutboundCluster waits until outboundCluster(vip, port) is want and,
// when want is not "", the sidecar has that cluster (without it Envoy
// would close the connection). On timeout the test fails with what
// it last saw: the cluster, the listener names, the stream's state.
func (s *standInSidecar) waitOutboundCluster(t *testing.T, vip string, port int, want string) {
	t.Helper()
	var got string
	var known bool
	err := testutil.Poll(configWait, fmt.Sprintf("%s:%d to go to %q", vip, port, want), func() (bool, error) {
		got = s.outboundCluster(vip, port)
		s.mu.Lock()
		_, known = s.clusters[want]
		streamErr := s.err
		s.mu.Unlock()
		return got == want && (want == "" || known), streamErr
	})
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Fatalf("stand-in sidecar %s/%s: %v; it goes to %q (cluster %q sent: %v); versions %v; %d listeners: %s",
		s.node.Namespace, s.node.Pod, err, got, want, known, s.versions, len(s.listeners), strings.Join(s.listenerNames(), " "))
}
