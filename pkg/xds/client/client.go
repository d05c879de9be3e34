// Package client is the proxy's side of xDS: an ADS client that subscribes
// to Rosetta's five resource types (SDS secrets among them), hands each
// consistent set to the proxy, and ACKs or NACKs what the proxy says. It
// speaks either variant of ADS: delta (incremental: listeners and clusters
// by wildcard, route configurations, endpoints and secrets by the names
// those name, as Envoy subscribes; a change to one resource sends that
// resource) or state of the world (every type whole, on each change of
// it).
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
	// Delta subscribes with delta (incremental) xDS; false subscribes with
	// state of the world. rosetta-proxy uses delta (--xds-mode).
	Delta bool
	// Lazy, when set, puts the proxy in lazy mode (node metadata "lazy":
	// "true"): the controller sends only the config of the destinations
	// it reports, and routes the rest to its fallback proxy. It needs
	// Delta.
	Lazy *Destinations

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
	if opts.Lazy != nil && !opts.Delta {
		return errors.New("xds/client: lazy mode reports its destinations over delta xDS: it needs Delta")
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
	var st streamer = newSotwState()
	if opts.Delta {
		st = newDeltaState()
	}
	backoff := opts.InitialBackoff
	for {
		progressed, err := connect(ctx, &opts, func(ctx context.Context, conn *grpc.ClientConn) (bool, error) {
			return st.runStream(ctx, &opts, node, conn, apply)
		})
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
	if opts.Lazy != nil {
		fields["lazy"] = "true"
	}
	md, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, fmt.Errorf("xds/client: node metadata: %w", err)
	}
	return &corev3.Node{Id: opts.NodeID, Metadata: md, UserAgentName: "rosetta-proxy"}, nil
}

// streamer runs one ADS stream on a connection, with what it kept of the
// streams before; progressed tells whether any response arrived, which
// resets the backoff.
type streamer interface {
	runStream(ctx context.Context, opts *Options, node *corev3.Node, conn *grpc.ClientConn, apply func(config.Resources) error) (progressed bool, err error)
}

// connect dials the controller and runs one stream on the connection.
// progressed tells whether any response arrived, which resets the
// backoff.
func connect(ctx context.Context, opts *Options, run func(context.Context, *grpc.ClientConn) (bool, error)) (progressed bool, err error) {
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
	return run(ctx, conn)
}

// receive reads a stream's messages into a channel until it fails (the
// error channel) or ctx ends.
func receive[T any](ctx context.Context, recv func() (T, error)) (<-chan T, <-chan error) {
	out := make(chan T)
	failed := make(chan error, 1)
	go func() {
		for {
			m, err := recv()
			if err != nil {
				failed <- err
				return
			}
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, failed
}

// streamLoop is what a stream's variant does with what it receives.
type streamLoop[R any] struct {
	// handle answers or holds one response.
	handle func(R) error
	// settle hands the held responses over, complete or not, once
	// IncompleteTimeout passes with some still held.
	settle func() error
	// holding reports whether responses are held.
	holding func() bool
	// woken, when set, runs each time wake is signalled (lazy.go).
	wake  <-chan struct{}
	woken func() error
}

// run reads the stream's responses until it ends or ctx is done.
// progressed tells whether any response arrived.
func (l streamLoop[R]) run(ctx context.Context, recv func() (R, error), wait time.Duration) (progressed bool, err error) {
	responses, recvErr := receive(ctx, recv)
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case err := <-recvErr:
			return progressed, fmt.Errorf("xds/client: receive: %w", err)
		case <-timer:
			timer = nil
			if err := l.settle(); err != nil {
				return progressed, err
			}
		case <-l.wake:
			if err := l.woken(); err != nil {
				return progressed, err
			}
		case resp := <-responses:
			progressed = true
			if err := l.handle(resp); err != nil {
				return progressed, err
			}
			if !l.holding() {
				timer = nil
			} else if timer == nil {
				timer = time.After(wait)
			}
		}
	}
}

// errorDetail is the error_detail of a NACK.
func errorDetail(cause error) *statuspb.Status {
	return &statuspb.Status{Code: int32(codes.InvalidArgument), Message: cause.Error()}
}

// decodeAny unpacks resource i of a response of typeURL.
func decodeAny(typeURL string, i int, a *anypb.Any) (proto.Message, error) {
	if a.GetTypeUrl() != typeURL {
		return nil, fmt.Errorf("xds/client: resource %d is a %s in a %s response", i, a.GetTypeUrl(), typeURL)
	}
	m, err := newMessage(typeURL)
	if err != nil {
		return nil, err
	}
	if err := anypb.UnmarshalTo(a, m, proto.UnmarshalOptions{}); err != nil {
		return nil, fmt.Errorf("xds/client: resource %d of %s: %w", i, typeURL, err)
	}
	return m, nil
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

// nameOf is the name a resource goes by in its type: a
// ClusterLoadAssignment's is its cluster_name.
func nameOf(m proto.Message) string {
	switch m := m.(type) {
	case *listenerv3.Listener:
		return m.GetName()
	case *clusterv3.Cluster:
		return m.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return m.GetClusterName()
	case *configv1alpha1.RouteConfiguration:
		return m.GetName()
	case *tlsv3.Secret:
		return m.GetName()
	}
	return ""
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

// Interface guards.
var (
	_ streamer = (*sotwState)(nil)
	_ streamer = (*deltaState)(nil)
)
