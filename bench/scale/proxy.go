package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// typeOrder is what rosetta-proxy subscribes to, in its order
// (pkg/xds/client's typeOrder).
var typeOrder = []string{config.ClusterType, config.EndpointType, config.SecretType, config.ListenerType, config.RouteType}

// typeIndex numbers the types of typeOrder.
func typeIndex(typeURL string) int {
	for i, t := range typeOrder {
		if t == typeURL {
			return i
		}
	}
	return -1
}

// proxy is one lightweight ADS client, subscribed as rosetta-proxy
// subscribes (the node and metadata its defaults send: mode gateway,
// listen address 0.0.0.0, no labels), with delta xDS (rosetta-proxy's
// default; delta.go) or state-of-the-world ADS (every type whole). It
// ACKs every response as soon as it is decoded, and keeps of its config
// only what the measurements read: the method each route
// configuration's first route matches, and when the response that last
// changed it was ACKed.
type proxy struct {
	id, ns int
	// stop ends the proxy's stream (set before it runs).
	stop context.CancelFunc

	mu sync.Mutex
	// methods and changed are by route configuration name.
	methods map[string]string
	changed map[string]time.Time
	// acked says which types have been ACKed at least once; responses
	// and bytes count what arrived, per type.
	acked     [5]bool
	responses [5]int
	resources int
	bytes     int
	err       error
	// delta says the proxy subscribes with delta xDS; missing (delta
	// only) says a name it subscribed to has not arrived yet.
	delta   bool
	missing bool
	// learned are the services a lazy proxy reports it called (lazy.go);
	// nil when not in lazy mode.
	learned map[int]bool
	reports []string
}

func newProxy(id, ns int, delta bool) *proxy {
	return &proxy{id: id, ns: ns, delta: delta, methods: map[string]string{}, changed: map[string]time.Time{}}
}

func (p *proxy) nodeID() string { return fmt.Sprintf("proxy-%d", p.id) }

// node is what rosetta-proxy sends as its xDS node (pkg/xds/client's
// buildNode with rosetta-proxy's default flags).
func (p *proxy) node() (*corev3.Node, error) {
	md, err := structpb.NewStruct(map[string]any{
		"namespace":     fmt.Sprintf("ns-%d", p.ns),
		"labels":        map[string]any{},
		"mode":          "gateway",
		"listenAddress": "0.0.0.0",
		"lazy":          fmt.Sprint(p.learned != nil),
	})
	if err != nil {
		return nil, err
	}
	return &corev3.Node{Id: p.nodeID(), Metadata: md, UserAgentName: "rosetta-proxy"}, nil
}

// run subscribes and answers until ctx ends or the stream fails; each
// ACK is followed by a signal on updated (dropped when one is pending).
func (p *proxy) run(ctx context.Context, addr string, updated chan<- struct{}) {
	err := p.stream(ctx, addr, updated)
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	select {
	case updated <- struct{}{}:
	default:
	}
}

func (p *proxy) stream(ctx context.Context, addr string, updated chan<- struct{}) error {
	node, err := p.node()
	if err != nil {
		return err
	}
	// A generous keepalive timeout: a thousand clients and the controller
	// on a loaded machine can take over 5 s to answer a ping, and a lost
	// client ends the run.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 30 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		return err
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	if p.delta {
		return p.deltaStream(ctx, ads, node, updated)
	}
	return p.sotwStream(ctx, ads, node, updated)
}

// sotwStream subscribes to every type with state-of-the-world ADS and
// ACKs each response.
func (p *proxy) sotwStream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient, node *corev3.Node, updated chan<- struct{}) error {
	stream, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("%s: open stream: %w", p.nodeID(), err)
	}
	for i, t := range typeOrder {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: t}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("%s: subscribe: %w", p.nodeID(), err)
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("%s: receive: %w", p.nodeID(), err)
		}
		t := typeIndex(resp.GetTypeUrl())
		if t < 0 {
			return fmt.Errorf("%s: unexpected type %s", p.nodeID(), resp.GetTypeUrl())
		}
		methods := map[string]string{}
		size := 0
		for _, a := range resp.GetResources() {
			size += len(a.GetValue())
			if t != typeIndex(config.RouteType) {
				continue
			}
			var rc configv1alpha1.RouteConfiguration
			if err := proto.Unmarshal(a.GetValue(), &rc); err != nil {
				return fmt.Errorf("%s: route configuration: %w", p.nodeID(), err)
			}
			methods[rc.GetName()] = firstMethod(&rc)
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := stream.Send(ack); err != nil {
			return fmt.Errorf("%s: ack: %w", p.nodeID(), err)
		}
		// A state-of-the-world response of routes holds them all: those
		// it leaves out are gone.
		var removed []string
		if t == typeIndex(config.RouteType) {
			p.mu.Lock()
			for name := range p.methods {
				if _, ok := methods[name]; !ok {
					removed = append(removed, name)
				}
			}
			p.mu.Unlock()
		}
		p.record(t, len(resp.GetResources()), size, methods, removed, nil)
		select {
		case updated <- struct{}{}:
		default:
		}
	}
}

// record notes an ACKed response of type t: resources resources of size
// bytes (their serialized protos),
// the route configurations it set (name to first method) and removed,
// and, in delta mode, the names held per type by name after it.
func (p *proxy) record(t, resources, size int, methods map[string]string, removed []string, missing func() bool) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.acked[t] = true
	p.responses[t]++
	p.resources += resources
	p.bytes += size
	for name, m := range methods {
		if old, ok := p.methods[name]; !ok || old != m {
			p.methods[name], p.changed[name] = m, now
		}
	}
	for _, name := range removed {
		delete(p.methods, name)
		delete(p.changed, name)
	}
	if missing != nil {
		p.missing = missing()
	}
}

// firstMethod is the method the first route of rc matches, "" when it
// matches none.
func firstMethod(rc *configv1alpha1.RouteConfiguration) string {
	routes := rc.GetRoutes()
	if len(routes) == 0 {
		return ""
	}
	for _, m := range routes[0].GetMatch().GetAttributes() {
		return m.GetExact()
	}
	return ""
}

// counts is a copy of what a proxy received.
type counts struct {
	responses [5]int
	resources int
	bytes     int
}

func (p *proxy) counts() counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return counts{responses: p.responses, resources: p.resources, bytes: p.bytes}
}

// synced says whether the proxy has ACKed every type (delta: both
// wildcard types, and holds every name it subscribed to) and holds routes
// routes, each matching want; it returns the proxy's stream error, if
// any.
func (p *proxy) synced(routes int, want string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return false, p.err
	}
	if p.delta {
		// Listeners and clusters are subscribed whole, the rest by the
		// names they name: all of those must have arrived.
		if !p.acked[typeIndex(config.ListenerType)] || !p.acked[typeIndex(config.ClusterType)] || p.missing {
			return false, nil
		}
	} else {
		for _, a := range p.acked {
			if !a {
				return false, nil
			}
		}
	}
	if len(p.methods) != routes {
		return false, nil
	}
	for _, m := range p.methods {
		if m != want {
			return false, nil
		}
	}
	return true, nil
}

// has says whether route's first route matches method, and when the
// response that made it so was ACKed.
func (p *proxy) has(route, method string) (bool, time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return false, time.Time{}, p.err
	}
	if p.methods[route] != method {
		return false, time.Time{}, nil
	}
	return true, p.changed[route], nil
}
