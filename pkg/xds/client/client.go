// Package client is the proxy's side of xDS: an ADS (state-of-the-world)
// client that subscribes to Rosetta's five resource types (SDS secrets
// among them), hands each
// consistent set to the proxy, and ACKs or NACKs what the proxy says.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	configv1alpha1 "github.com/rosetta-mesh/rosetta/pkg/api/config/v1alpha1"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
)

// Options say where the controller is and who the proxy is.
type Options struct {
	// Address of the controller's xDS port, "host:port".
	Address string
	// NodeID names the proxy; unique per proxy.
	NodeID string
	// Namespace, Labels and Mode tell the controller which resources the
	// proxy needs (Sidecar scoping, exportTo); ListenAddress is the IP its
	// listeners bind.
	Namespace     string
	Labels        map[string]string
	Mode          string
	ListenAddress string
	// WorkloadID is the proxy's SPIFFE identity when it has one (it can
	// then terminate and originate Istio mTLS, and the controller sends
	// such listeners and clusters); "" for none. A controller that
	// authenticates proxies takes it from the proof, not from here.
	WorkloadID string
	// HBONE says the proxy terminates HBONE (rosetta-proxy
	// --hbone-address): the controller may then send it listeners without
	// an address, reached through their authorities. It is node metadata
	// "hbone": "true".
	HBONE bool

	Logger *slog.Logger
	// InitialBackoff and MaxBackoff bound the wait between reconnections;
	// 100 ms and 5 s when zero.
	InitialBackoff, MaxBackoff time.Duration
	// IncompleteTimeout is how long a set that refers to resources not yet
	// received is held back before it is handed over anyway (the proxy's
	// own validation then decides); 3 s when zero.
	IncompleteTimeout time.Duration
	// DialOptions are added to the gRPC dial options (tests).
	DialOptions []grpc.DialOption

	// Security of the connection to the controller. With none of
	// Identity, CAFile and TokenFile the connection is plaintext, as the
	// controller serves it with --xds-auth=none and no TLS.
	//
	// Identity, when set, is the proxy's workload certificate: it is the
	// client certificate, which authenticates the proxy to a controller
	// with --xds-auth=mtls. Without CAFile, the controller's certificate
	// must then be a mesh certificate (verified against Identity's roots)
	// with one of ControllerIDs, exact spiffe:// URIs, or with any
	// identity of the proxy's trust domain when ControllerIDs is empty.
	Identity      *identity.Workload
	ControllerIDs []string
	// CAFile, when set, holds the PEM roots that verify the controller's
	// certificate as a plain server certificate, by DNS name or IP:
	// ServerName, or Address's host when empty. It is for a controller
	// whose serving certificate is not a mesh one (--xds-tls-cert), and is
	// read on each (re)connect.
	CAFile     string
	ServerName string
	// TokenFile, when set, holds a token sent as "authorization: Bearer"
	// when each stream opens, for a controller with --xds-auth=token: a
	// projected ServiceAccount token with the controller's audience
	// (xds.DefaultTokenAudience unless it was changed). It is read again
	// on each (re)connect, since the kubelet rotates it. It needs TLS
	// (Identity or CAFile): a token is never sent in plaintext.
	TokenFile string
}

// typeOrder is the order of the initial subscriptions.
var typeOrder = []string{config.ClusterType, config.EndpointType, config.SecretType, config.ListenerType, config.RouteType}

// maxResourcesPerType caps what one response may carry.
const maxResourcesPerType = 100_000

// Run subscribes and calls apply with every complete, consistent set of
// resources, until ctx ends. apply returning an error NACKs the responses
// behind that set (its message is the error_detail) and the previous set
// stays in force. When the controller goes away, Run reconnects with
// backoff; the proxy keeps its last good config meanwhile. Run returns
// ctx's error.
func Run(ctx context.Context, opts Options, apply func(config.Resources) error) error {
	if opts.Address == "" || opts.NodeID == "" {
		return errors.New("xds/client: address and node id are required")
	}
	if err := checkSecurity(&opts); err != nil {
		return err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.IncompleteTimeout <= 0 {
		opts.IncompleteTimeout = 3 * time.Second
	}
	node, err := buildNode(&opts)
	if err != nil {
		return err
	}
	st := newState()
	backoff := opts.InitialBackoff
	for {
		progressed, err := runStream(ctx, &opts, node, st, apply)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if progressed {
			backoff = opts.InitialBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		opts.Logger.Warn("xds stream ended; keeping the last config", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, opts.MaxBackoff)
	}
}

func buildNode(opts *Options) (*corev3.Node, error) {
	labels := map[string]any{}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	fields := map[string]any{
		"namespace":     opts.Namespace,
		"labels":        labels,
		"mode":          opts.Mode,
		"listenAddress": opts.ListenAddress,
	}
	if opts.WorkloadID != "" {
		fields["workloadIdentity"] = opts.WorkloadID
	}
	if opts.HBONE {
		fields["hbone"] = "true"
	}
	md, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, fmt.Errorf("xds/client: node metadata: %w", err)
	}
	return &corev3.Node{Id: opts.NodeID, Metadata: md, UserAgentName: "rosetta-proxy"}, nil
}

// state is what the client holds across streams: the versions it
// accepted per type (sent back as version_info), and the resources last
// received per type, accepted or not: the controller sends only the types
// that change, so the next set is built on what it last sent, not on what
// the proxy last accepted.
type state struct {
	latest   map[string][]proto.Message
	versions map[string]string
}

func newState() *state {
	return &state{latest: map[string][]proto.Message{}, versions: map[string]string{}}
}

// pending is a response decoded but not yet answered.
type pending struct {
	version, nonce string
	resources      []proto.Message
}

// runStream runs one ADS stream. progressed tells whether any response
// arrived, which resets the backoff.
func runStream(ctx context.Context, opts *Options, node *corev3.Node, st *state, apply func(config.Resources) error) (progressed bool, err error) {
	creds, err := transportCredentials(opts)
	if err != nil {
		return false, err
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	}
	if opts.TokenFile != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(tokenFile(opts.TokenFile)))
	}
	dialOpts = append(dialOpts, opts.DialOptions...)
	conn, err := grpc.NewClient(opts.Address, dialOpts...)
	if err != nil {
		return false, fmt.Errorf("xds/client: dial %s: %w", opts.Address, err)
	}
	defer conn.Close()
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
	responses := make(chan *discoveryv3.DiscoveryResponse)
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case responses <- resp:
			case <-sctx.Done():
				return
			}
		}
	}()
	waiting := map[string]*pending{}
	seen := map[string]bool{}
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case err := <-recvErr:
			return progressed, fmt.Errorf("xds/client: receive: %w", err)
		case <-timer:
			timer = nil
			if err := settle(stream, st, waiting, seen, apply, true, opts.Logger); err != nil {
				return progressed, err
			}
		case resp := <-responses:
			progressed = true
			p, derr := decode(resp)
			if derr != nil {
				// The response itself is malformed: refuse it alone.
				if err := send(stream, resp.GetTypeUrl(), st.versions[resp.GetTypeUrl()], resp.GetNonce(), derr); err != nil {
					return progressed, err
				}
				continue
			}
			waiting[resp.GetTypeUrl()] = p
			seen[resp.GetTypeUrl()] = true
			if err := settle(stream, st, waiting, seen, apply, false, opts.Logger); err != nil {
				return progressed, err
			}
			if len(waiting) > 0 && timer == nil {
				timer = time.After(opts.IncompleteTimeout)
			} else if len(waiting) == 0 {
				timer = nil
			}
		}
	}
}

// settle hands the waiting responses to the proxy once, merged with the
// accepted set, they form a complete set: every type received on this
// stream (so a reconnection applies the controller's whole state at once)
// and every referenced route, cluster and endpoint set present. force
// hands an incomplete set over anyway.
func settle(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, st *state,
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
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: cause.Error()}
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
		if a.GetTypeUrl() != resp.GetTypeUrl() {
			return nil, fmt.Errorf("xds/client: resource %d is a %s in a %s response", i, a.GetTypeUrl(), resp.GetTypeUrl())
		}
		m, err := newMessage(resp.GetTypeUrl())
		if err != nil {
			return nil, err
		}
		if err := anypb.UnmarshalTo(a, m, proto.UnmarshalOptions{}); err != nil {
			return nil, fmt.Errorf("xds/client: resource %d of %s: %w", i, resp.GetTypeUrl(), err)
		}
		p.resources = append(p.resources, m)
	}
	return p, nil
}

func newMessage(typeURL string) (proto.Message, error) {
	switch typeURL {
	case config.ListenerType:
		return &listenerv3.Listener{}, nil
	case config.ClusterType:
		return &clusterv3.Cluster{}, nil
	case config.EndpointType:
		return &endpointv3.ClusterLoadAssignment{}, nil
	case config.RouteType:
		return &configv1alpha1.RouteConfiguration{}, nil
	case config.SecretType:
		return &tlsv3.Secret{}, nil
	}
	return nil, fmt.Errorf("xds/client: unexpected type %s", typeURL)
}

func toResources(m map[string][]proto.Message) config.Resources {
	var r config.Resources
	for _, x := range m[config.ListenerType] {
		r.Listeners = append(r.Listeners, x.(*listenerv3.Listener))
	}
	for _, x := range m[config.ClusterType] {
		r.Clusters = append(r.Clusters, x.(*clusterv3.Cluster))
	}
	for _, x := range m[config.EndpointType] {
		r.Endpoints = append(r.Endpoints, x.(*endpointv3.ClusterLoadAssignment))
	}
	for _, x := range m[config.RouteType] {
		r.Routes = append(r.Routes, x.(*configv1alpha1.RouteConfiguration))
	}
	for _, x := range m[config.SecretType] {
		r.Secrets = append(r.Secrets, x.(*tlsv3.Secret))
	}
	return r
}

// checkRefs names the first reference the set cannot resolve: a route
// configuration or a secret a listener names, a cluster a route names, the
// endpoints of an EDS cluster. "" when the set is complete.
func checkRefs(r *config.Resources) string {
	secrets := map[string]bool{}
	for _, s := range r.Secrets {
		secrets[s.GetName()] = true
	}
	routes := map[string]*configv1alpha1.RouteConfiguration{}
	for _, rc := range r.Routes {
		routes[rc.GetName()] = rc
	}
	clusters := map[string]bool{}
	for _, c := range r.Clusters {
		clusters[c.GetName()] = true
	}
	eds := map[string]bool{}
	for _, e := range r.Endpoints {
		eds[e.GetClusterName()] = true
	}
	for _, c := range r.Clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		if !eds[name] {
			return "endpoints " + name
		}
	}
	for _, l := range r.Listeners {
		for _, fc := range l.GetFilterChains() {
			for _, name := range tlsSecretNames(fc) {
				if !secrets[name] {
					return "secret " + name
				}
			}
			for _, f := range fc.GetFilters() {
				if f.GetName() != config.FilterName {
					continue
				}
				var mpp configv1alpha1.MetaProtocolProxy
				if err := f.GetTypedConfig().UnmarshalTo(&mpp); err != nil {
					return "" // malformed: the proxy's validation reports it
				}
				for _, name := range config.SecretNames(mpp.GetCodecOptions()) {
					if !secrets[name] {
						return "secret " + name
					}
				}
				rc := mpp.GetRouteConfig()
				if name := mpp.GetRouteConfigName(); name != "" {
					if rc = routes[name]; rc == nil {
						return "route configuration " + name
					}
				}
				if m := missingCluster(rc, clusters); m != "" {
					return m
				}
			}
		}
	}
	return ""
}

// tlsSecretNames are the SDS secrets a filter chain's TLS names, other
// than the workload certificate and mesh roots the proxy serves itself
// (a Gateway's own certificate and CA).
func tlsSecretNames(fc *listenerv3.FilterChain) []string {
	if fc.GetTransportSocket() == nil {
		return nil
	}
	ctx, err := config.DownstreamTLS(fc.GetTransportSocket())
	if err != nil || config.UsesWorkloadCertificate(ctx) {
		return nil // malformed, or Istio mTLS: nothing to wait for
	}
	var out []string
	for _, c := range ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
		out = append(out, c.GetName())
	}
	if v := ctx.GetCommonTlsContext().GetValidationContextSdsSecretConfig(); v != nil {
		out = append(out, v.GetName())
	}
	return out
}

func missingCluster(rc *configv1alpha1.RouteConfiguration, clusters map[string]bool) string {
	for _, r := range rc.GetRoutes() {
		names := []string{}
		if c := r.GetRoute().GetCluster(); c != "" {
			names = append(names, c)
		}
		for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
			names = append(names, w.GetName())
		}
		for _, m := range r.GetRoute().GetMirror() {
			names = append(names, m.GetCluster())
		}
		for _, n := range names {
			if !clusters[n] {
				return "cluster " + n
			}
		}
	}
	return ""
}
