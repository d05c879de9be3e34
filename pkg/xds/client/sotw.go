package client

import (
	"context"
	"fmt"
	"log/slog"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// sotwState is what a state-of-the-world client holds across streams: the versions it
// accepted per type (sent back as version_info), and the resources last
// received per type, accepted or not: the controller sends only the types
// that change, so the next set is built on what it last sent, not on what
// the proxy last accepted.
type sotwState struct {
	latest   map[string][]proto.Message
	versions map[string]string
}

func newSotwState() *sotwState {
	return &sotwState{latest: map[string][]proto.Message{}, versions: map[string]string{}}
}

// pending is a response decoded but not yet answered.
type pending struct {
	version, nonce string
	resources      []proto.Message
}

// runStream runs one state-of-the-world ADS stream on conn. progressed
// tells whether any response arrived.
func (st *sotwState) runStream(ctx context.Context, opts *Options, node *corev3.Node, conn *grpc.ClientConn, apply func(config.Resources) error) (progressed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("xds/client: open stream: %w", err)
	}
	for i, t := range typeOrder {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: st.versions[t]}
		if i == 0 {
			req.Node = node
		}
		if err := stream.Send(req); err != nil {
			return false, fmt.Errorf("xds/client: subscribe: %w", err)
		}
	}
	waiting := map[string]*pending{}
	seen := map[string]bool{}
	loop := streamLoop[*discoveryv3.DiscoveryResponse]{
		handle: func(resp *discoveryv3.DiscoveryResponse) error {
			p, derr := decode(resp)
			if derr != nil {
				// The response itself is malformed: refuse it alone.
				return send(stream, resp.GetTypeUrl(), st.versions[resp.GetTypeUrl()], resp.GetNonce(), derr)
			}
			waiting[resp.GetTypeUrl()] = p
			seen[resp.GetTypeUrl()] = true
			return settle(stream, st, waiting, seen, apply, false, opts.Logger)
		},
		settle:  func() error { return settle(stream, st, waiting, seen, apply, true, opts.Logger) },
		holding: func() bool { return len(waiting) > 0 },
	}
	return loop.run(sctx, stream.Recv, opts.IncompleteTimeout)
}

// settle hands the waiting responses to the proxy once, merged with the
// accepted set, they form a complete set: every type received on this
// stream (so a reconnection applies the controller's whole state at once)
// and every referenced route, cluster and endpoint set present. force
// hands an incomplete set over anyway.
func settle(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, st *sotwState,
	waiting map[string]*pending, seen map[string]bool, apply func(config.Resources) error, force bool, log *slog.Logger) error {
	if len(waiting) == 0 {
		return nil
	}
	if !force && len(seen) < len(typeOrder) {
		return nil
	}
	cand := map[string][]proto.Message{}
	for _, t := range typeOrder {
		if p, ok := waiting[t]; ok {
			cand[t] = p.resources
		} else if r, ok := st.latest[t]; ok {
			cand[t] = r
		} else if !force {
			return nil // a type never received yet
		}
	}
	res := toResources(cand)
	if missing := checkRefs(&res); missing != "" && !force {
		log.Debug("xds set incomplete; waiting", "missing", missing)
		return nil
	}
	applyErr := apply(res)
	for _, t := range typeOrder {
		p, ok := waiting[t]
		if !ok {
			continue
		}
		st.latest[t] = p.resources
		if applyErr != nil {
			if err := send(stream, t, st.versions[t], p.nonce, applyErr); err != nil {
				return err
			}
			continue
		}
		st.versions[t] = p.version
		if err := send(stream, t, p.version, p.nonce, nil); err != nil {
			return err
		}
	}
	if applyErr != nil {
		log.Warn("config refused; the previous one stays in force", "err", applyErr)
	}
	clear(waiting)
	return nil
}

// send ACKs (cause nil) or NACKs a response.
func send(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, typeURL, version, nonce string, cause error) error {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce}
	if cause != nil {
		req.ErrorDetail = errorDetail(cause)
	}
	if err := stream.Send(req); err != nil {
		return fmt.Errorf("xds/client: send: %w", err)
	}
	return nil
}

// decode unpacks a response's resources into their Go types.
func decode(resp *discoveryv3.DiscoveryResponse) (*pending, error) {
	if len(resp.GetResources()) > maxResourcesPerType {
		return nil, fmt.Errorf("xds/client: %d resources in one response, more than %d", len(resp.GetResources()), maxResourcesPerType)
	}
	p := &pending{version: resp.GetVersionInfo(), nonce: resp.GetNonce()}
	for i, a := range resp.GetResources() {
		m, err := decodeAny(resp.GetTypeUrl(), i, a)
		if err != nil {
			return nil, err
		}
		p.resources = append(p.resources, m)
	}
	return p, nil
}
