package main

import (
	"context"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/xds/client"
)

// wildcardTypes are subscribed to whole in delta mode; route
// configurations and endpoints by the names the listeners and clusters
// held name (pkg/xds/client's wildcardTypes and namesOf).
var wildcardTypes = []string{config.ClusterType, config.ListenerType}

// deltaNames is what a delta client holds of the resources that name
// others, and the names it subscribed to.
type deltaNames struct {
	// routes are by listener the route configurations it names; eds by
	// cluster the endpoints it takes.
	routes map[string][]string
	eds    map[string]string
	// subscribed and held are by type (route configurations, endpoints)
	// and name.
	subscribed map[string]map[string]bool
	held       map[string]map[string]bool
}

// deltaStream subscribes with delta xDS, as rosetta-proxy does: listeners
// and clusters by wildcard, then the route configurations and
// ClusterLoadAssignments they name, following them as they change. It
// ACKs every response once decoded, after any change of subscription it
// brought.
func (p *proxy) deltaStream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient, node *corev3.Node, updated chan<- struct{}) error {
	stream, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("%s: open stream: %w", p.nodeID(), err)
	}
	if req := p.lazyRequest(); req != nil {
		req.Node = node
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("%s: report destinations: %w", p.nodeID(), err)
		}
	}
	for i, t := range wildcardTypes {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: []string{"*"}}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("%s: subscribe: %w", p.nodeID(), err)
		}
	}
	n := &deltaNames{routes: map[string][]string{}, eds: map[string]string{},
		subscribed: map[string]map[string]bool{config.RouteType: {}, config.EndpointType: {}},
		held:       map[string]map[string]bool{config.RouteType: {}, config.EndpointType: {}}}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("%s: receive: %w", p.nodeID(), err)
		}
		typeURL := resp.GetTypeUrl()
		t := typeIndex(typeURL)
		if t < 0 {
			return fmt.Errorf("%s: unexpected type %s", p.nodeID(), typeURL)
		}
		methods := map[string]string{}
		size, count := 0, 0
		for _, r := range resp.GetResources() {
			a := r.GetResource()
			if a == nil {
				continue // a TTL heartbeat; the controller sets none
			}
			size += len(a.GetValue())
			count++
			switch typeURL {
			case config.ListenerType:
				var l listenerv3.Listener
				if err := proto.Unmarshal(a.GetValue(), &l); err != nil {
					return fmt.Errorf("%s: listener: %w", p.nodeID(), err)
				}
				names, err := client.RouteNames(&l)
				if err != nil {
					return fmt.Errorf("%s: listener %s: %w", p.nodeID(), r.GetName(), err)
				}
				n.routes[r.GetName()] = names
			case config.ClusterType:
				var c clusterv3.Cluster
				if err := proto.Unmarshal(a.GetValue(), &c); err != nil {
					return fmt.Errorf("%s: cluster: %w", p.nodeID(), err)
				}
				if name, ok := config.EndpointsName(&c); ok {
					n.eds[r.GetName()] = name
				} else {
					delete(n.eds, r.GetName())
				}
			case config.RouteType:
				if !n.subscribed[typeURL][r.GetName()] {
					continue // unsubscribed since it was sent
				}
				var rc configv1alpha1.RouteConfiguration
				if err := proto.Unmarshal(a.GetValue(), &rc); err != nil {
					return fmt.Errorf("%s: route configuration: %w", p.nodeID(), err)
				}
				methods[rc.GetName()] = firstMethod(&rc)
				n.held[typeURL][r.GetName()] = true
			case config.EndpointType:
				if n.subscribed[typeURL][r.GetName()] {
					n.held[typeURL][r.GetName()] = true
				}
			}
		}
		var removed []string
		for _, name := range resp.GetRemovedResources() {
			switch typeURL {
			case config.ListenerType:
				delete(n.routes, name)
			case config.ClusterType:
				delete(n.eds, name)
			case config.RouteType, config.EndpointType:
				delete(n.held[typeURL], name)
				if typeURL == config.RouteType {
					removed = append(removed, name)
				}
			}
		}
		if typeURL == config.ListenerType || typeURL == config.ClusterType {
			gone, err := n.resubscribe(stream)
			if err != nil {
				return fmt.Errorf("%s: subscribe: %w", p.nodeID(), err)
			}
			removed = append(removed, gone...)
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.GetNonce()}
		if err := stream.Send(ack); err != nil {
			return fmt.Errorf("%s: ack: %w", p.nodeID(), err)
		}
		p.record(t, count, size, methods, removed, n.missing)
		select {
		case updated <- struct{}{}:
		default:
		}
	}
}

// resubscribe brings the subscriptions to route configurations and
// endpoints in line with what the listeners and clusters held name: it
// subscribes to the names newly named and unsubscribes from (and drops)
// those no longer named. It returns the route configurations dropped.
func (n *deltaNames) resubscribe(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) (droppedRoutes []string, err error) {
	want := map[string]map[string]bool{config.RouteType: {}, config.EndpointType: {}}
	for _, names := range n.routes {
		for _, name := range names {
			want[config.RouteType][name] = true
		}
	}
	for _, name := range n.eds {
		want[config.EndpointType][name] = true
	}
	for _, t := range []string{config.EndpointType, config.RouteType} {
		var add, drop []string
		for name := range want[t] {
			if !n.subscribed[t][name] {
				add = append(add, name)
				n.subscribed[t][name] = true
			}
		}
		for name := range n.subscribed[t] {
			if !want[t][name] {
				drop = append(drop, name)
				delete(n.subscribed[t], name)
				delete(n.held[t], name)
			}
		}
		if len(add) == 0 && len(drop) == 0 {
			continue
		}
		slices.Sort(add)
		slices.Sort(drop)
		if t == config.RouteType {
			droppedRoutes = drop
		}
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: drop}
		if err := stream.Send(req); err != nil {
			return nil, err
		}
	}
	return droppedRoutes, nil
}

// missing says a name subscribed to has not arrived.
func (n *deltaNames) missing() bool {
	for t, names := range n.subscribed {
		for name := range names {
			if !n.held[t][name] {
				return true
			}
		}
	}
	return false
}
