// Package xds serves the controller's per-proxy resources over ADS, both
// state-of-the-world and delta, with go-control-plane; package
// xds/client is the proxy's side.
package xds

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/controller"
)

// Node metadata keys a proxy sets to say who it is. Istio's upper-case
// NAMESPACE and LABELS are read too.
const (
	MetaNamespace     = "namespace"
	MetaLabels        = "labels"
	MetaMode          = "mode"
	MetaListenAddress = "listenAddress"
	// MetaIdentity is the proxy's SPIFFE workload identity, set when it
	// has one (it can then terminate and originate Istio mTLS).
	MetaIdentity = "workloadIdentity"
	// MetaHBONE is "true" when the proxy terminates HBONE.
	MetaHBONE = "hbone"
)

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	// Registerer receives the metrics; none are registered when nil.
	Registerer prometheus.Registerer
	// OnAck is called when a proxy acknowledges a version of a type, and
	// OnNack when it refuses one; for tests and benchmarks.
	OnAck  func(nodeID, typeURL, version string)
	OnNack func(nodeID, typeURL, version, detail string)

	// TLS, when set, makes Serve serve over TLS (ServerTLS makes one). A
	// gRPC server given to Register brings its own credentials.
	TLS *tls.Config
	// Authenticators verify who opens each stream, tried in order until
	// one finds its kind of credentials (see Authenticator); a stream that
	// none verifies is refused with Unauthenticated. The verified
	// namespace, and identity, replace what the node metadata claims.
	// Empty: no authentication, the node metadata is trusted, as in
	// folder mode and local runs.
	Authenticators []Authenticator
	// TrustDomain makes the SPIFFE identity of a proxy authenticated by a
	// token; DefaultTrustDomain when empty.
	TrustDomain string
	// MaxConnectionAge, when set, makes Serve close each connection after
	// about that long (and 10 s of grace), so that proxies reconnect and
	// are authenticated again with their current credentials; istiod's
	// chart uses 30 minutes. Zero: connections live as long as they
	// are used.
	MaxConnectionAge time.Duration
}

// Server keeps one snapshot per connected proxy and serves them.
type Server struct {
	opts    Options
	log     *slog.Logger
	cache   cachev3.SnapshotCache
	xds     serverv3.Server
	metrics *Metrics
	ctx     context.Context

	// pushMu serialises setting snapshots, so they are set in version
	// order; generations run outside it (scopes.go).
	pushMu sync.Mutex
	// genSlots bounds the generations running at once.
	genSlots chan struct{}

	mu sync.Mutex
	// scopes are the generation in force of each scope with a proxy, by
	// ScopeKey: replaced whole by Update (under pushMu too), added to when
	// a proxy of a new scope connects.
	scopes map[string]*scope
	// flights are the generations under way (generateOnce).
	flights     map[flightKey]*inFlight
	index       *controller.Index
	changedAt   time.Time
	lastVersion uint64
	nodes       map[string]*nodeState
	// streams are by deltaStream's key for a delta stream, its id for
	// a state-of-the-world one.
	streams map[int64]*streamState
	// rejectCh signals that a proxy refused config, or accepted config
	// after refusing, or left with a refusal (see RejectionsChanged).
	rejectCh chan struct{}
}

type nodeState struct {
	id       string
	proxy    *controller.Proxy
	scopeKey string
	// gen is the generation last set as the proxy's snapshot; guarded
	// by pushMu.
	gen       *generation
	streams   int
	versions  map[string]string
	typeHash  map[string]string
	changedAt map[string]time.Time
	// rejected holds the proxy's refusal of the last version of each type
	// it refused, until it acknowledges a later one.
	rejected map[string]controller.Rejection
	// acked is the version of each type the proxy last acknowledged.
	acked map[string]string
}

type streamState struct {
	nodeID string
	// principal is who the stream proved to be; nil without
	// authentication.
	principal *Principal
	peer      string
	sent      map[string]sentInfo // by nonce
}

type sentInfo struct {
	typeURL   string
	version   string
	changedAt time.Time
}

// maxUnacked caps the responses remembered per stream while waiting for
// their ACK.
const maxUnacked = 64

// NewServer makes a Server; it serves nothing until Update gives it an
// index, so a controller that is still syncing never sends partial config.
func NewServer(ctx context.Context, opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		opts:     opts,
		log:      log,
		metrics:  NewMetrics(opts.Registerer),
		ctx:      ctx,
		nodes:    map[string]*nodeState{},
		streams:  map[int64]*streamState{},
		scopes:   map[string]*scope{},
		flights:  map[flightKey]*inFlight{},
		genSlots: make(chan struct{}, runtime.GOMAXPROCS(0)),
		rejectCh: make(chan struct{}, 1),
	}
	s.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, cacheLogger{log})
	s.xds = serverv3.NewServer(ctx, s.cache, s.callbacks())
	return s
}

// Register adds the ADS service (SotW and delta) to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Serve serves ADS on lis until ctx ends, over TLS when Options.TLS is
// set.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	params := keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}
	if s.opts.MaxConnectionAge > 0 {
		params.MaxConnectionAge, params.MaxConnectionAgeGrace = s.opts.MaxConnectionAge, 10*time.Second
	}
	gopts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(params),
		grpc.MaxConcurrentStreams(1 << 16),
	}
	if s.opts.TLS != nil {
		gopts = append(gopts, grpc.Creds(&countingCreds{
			TransportCredentials: credentials.NewTLS(s.opts.TLS), failures: s.metrics.HandshakeFailures, log: s.log}))
	}
	g := grpc.NewServer(gopts...)
	s.Register(g)
	go func() {
		<-ctx.Done()
		g.Stop()
	}()
	if err := g.Serve(lis); err != nil && ctx.Err() == nil {
		return fmt.Errorf("xds: serve: %w", err)
	}
	return nil
}

// nextVersion returns a version larger than every earlier one, also
// across restarts (it starts from the clock in milliseconds). Callers
// hold s.mu.
func (s *Server) nextVersion() string {
	v := uint64(time.Now().UnixMilli())
	if v <= s.lastVersion {
		v = s.lastVersion + 1
	}
	s.lastVersion = v
	return strconv.FormatUint(v, 10)
}

// setNode sets a proxy's snapshot from its scope's shared resources; a
// type whose resources did not change keeps its version, so the proxy is
// not sent it again (an endpoint-only change sends endpoints only). The
// snapshot cache then holds the proxy's generation's snapshot, never an
// earlier one with equal resources, which would be a second copy of the
// scope. Callers hold s.pushMu.
func (s *Server) setNode(n *nodeState, sc *scope, version string, changedAt time.Time) {
	if n.gen == sc.gen {
		return // the proxy has this generation already
	}
	if n.gen != nil && n.gen.snap == sc.gen.snap {
		// A generation that kept the snapshot in force (generate): only
		// its Deps are new.
		s.mu.Lock()
		n.gen = sc.gen
		s.mu.Unlock()
		return
	}
	snap := sc.gen.snap.withVersions()
	s.mu.Lock()
	n.gen = sc.gen
	for _, t := range TypeURLs {
		if _, ok := n.versions[t]; ok && n.typeHash[t] == snap.typeHash[t] {
			continue
		}
		n.versions[t] = version
		n.typeHash[t] = snap.typeHash[t]
		n.changedAt[t] = changedAt
		s.metrics.Pushes.WithLabelValues(shortType(t)).Inc()
	}
	for t, v := range n.versions {
		snap.versions[t] = v
	}
	s.mu.Unlock()
	// Set even when no type changed (equal resources of another scope,
	// which a lazy proxy moves to when it learns a destination that
	// changes none of them): every version is the one the proxy has, so
	// nothing is sent, and the cache lets go of the earlier copy.
	if err := s.cache.SetSnapshot(s.ctx, n.id, snap); err != nil {
		s.log.Error("set snapshot", "node", n.id, "err", err)
	}
}

// Resources returns the resources last set for a proxy, decoded, or nil.
func (s *Server) Resources(nodeID string) *config.Resources {
	s.mu.Lock()
	n := s.nodes[nodeID]
	var gen *generation
	if n != nil {
		gen = n.gen
	}
	s.mu.Unlock()
	if gen == nil {
		return nil
	}
	res, err := gen.snap.decode()
	if err != nil {
		s.log.Error("config dump", "node", nodeID, "err", err)
		return nil
	}
	return res
}

// Nodes lists the connected proxies' ids, sorted.
func (s *Server) Nodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.nodes))
	for id := range s.nodes {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// ProxyFromNode reads a proxy's identity from its xDS node.
func ProxyFromNode(node *corev3.Node) *controller.Proxy {
	p := &controller.Proxy{ID: node.GetId(), Labels: map[string]string{}}
	f := node.GetMetadata().GetFields()
	str := func(keys ...string) string {
		for _, k := range keys {
			if v := f[k].GetStringValue(); v != "" {
				return v
			}
		}
		return ""
	}
	p.Namespace = str(MetaNamespace, "NAMESPACE")
	p.Mode = str(MetaMode)
	p.ListenAddress = str(MetaListenAddress)
	p.Identity = str(MetaIdentity)
	p.HBONE = str(MetaHBONE) == "true"
	p.Lazy = str(MetaLazy) == "true"
	for _, k := range []string{MetaLabels, "LABELS"} {
		for lk, lv := range f[k].GetStructValue().GetFields() {
			p.Labels[lk] = lv.GetStringValue()
		}
	}
	return p
}

// register notes the node of a stream's request: on the first request
// that names one, it makes the proxy's view (the node metadata, overridden
// by what the stream proved), and returns the proxy when it has no
// snapshot yet: the caller pushes its first (pushFirst) once it has
// applied the rest of the request, so that a lazy proxy's destinations,
// which it sends with its node as the stream's first request, are in its
// first generation. It refuses a stream that names another node later
// (go-control-plane would then serve that node's snapshot), and, with
// authentication, a node id held by a proxy that proved another namespace
// or identity (both would get the same snapshot).
func (s *Server) register(streamID int64, node *corev3.Node) (*nodeState, error) {
	s.mu.Lock()
	st := s.streams[streamID]
	s.mu.Unlock()
	if st == nil || node.GetId() == "" {
		return nil, nil
	}
	// A stream's requests come one at a time, so st.nodeID and
	// st.principal, written only here and in open, are stable.
	if st.nodeID != "" {
		if node.GetId() != st.nodeID {
			return nil, s.refuse(&refusal{reasonNodeIDChanged, codes.InvalidArgument,
				fmt.Sprintf("xds: the stream of node %q asked as node %q", st.nodeID, node.GetId())}, st.peer, st.nodeID)
		}
		return nil, nil
	}
	proxy := ProxyFromNode(node)
	if st.principal != nil {
		s.applyPrincipal(proxy, st.principal)
	}
	s.mu.Lock()
	if s.streams[streamID] != st {
		s.mu.Unlock()
		return nil, nil // closed meanwhile
	}
	n := s.nodes[proxy.ID]
	if n != nil && st.principal != nil && (n.proxy.Namespace != proxy.Namespace || n.proxy.Identity != proxy.Identity) {
		held := n.proxy.Namespace
		s.mu.Unlock()
		return nil, s.refuse(&refusal{reasonNodeIDConflict, codes.PermissionDenied,
			fmt.Sprintf("xds: node id %q is in use by a proxy of namespace %q", proxy.ID, held)}, st.peer, proxy.ID)
	}
	st.nodeID = proxy.ID
	if n == nil {
		n = &nodeState{id: st.nodeID, proxy: proxy, scopeKey: proxy.ScopeKey(), versions: map[string]string{},
			typeHash: map[string]string{}, changedAt: map[string]time.Time{}}
		s.nodes[st.nodeID] = n
		s.metrics.Connected.Inc()
		attrs := []any{"node", n.id, "namespace", proxy.Namespace, "mode", proxy.Mode, "peer", st.peer}
		if st.principal != nil {
			attrs = append(attrs, "identity", proxy.Identity, "authenticated_by", st.principal.Method)
		}
		s.log.Info("proxy connected", attrs...)
	}
	n.streams++
	first := len(n.versions) == 0
	s.mu.Unlock()
	if !first {
		return nil, nil
	}
	return n, nil
}

// open authenticates a new stream (when Authenticators are set) and notes
// it; its error refuses the stream.
func (s *Server) open(ctx context.Context, streamID int64) error {
	p, err := s.authenticate(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.streams[streamID] = &streamState{principal: p, peer: peerAddr(ctx), sent: map[string]sentInfo{}}
	s.mu.Unlock()
	return nil
}

func (s *Server) closed(streamID int64) {
	s.mu.Lock()
	st := s.streams[streamID]
	delete(s.streams, streamID)
	var gone string
	if st != nil && st.nodeID != "" {
		if n := s.nodes[st.nodeID]; n != nil {
			n.streams--
			if n.streams == 0 {
				if len(n.rejected) > 0 {
					s.rejectionsChanged()
				}
				delete(s.nodes, st.nodeID)
				s.metrics.Connected.Dec()
				gone = st.nodeID
			}
		}
	}
	s.mu.Unlock()
	if gone != "" {
		s.cache.ClearSnapshot(gone)
		s.log.Info("proxy disconnected", "node", gone)
	}
}

// sent remembers a response until its ACK or NACK arrives.
func (s *Server) sent(streamID int64, typeURL, version, nonce string, resources []*anypb.Any) {
	bytes := 0
	for _, r := range resources {
		bytes += len(r.GetValue())
	}
	s.metrics.ResourcesSent.WithLabelValues(shortType(typeURL)).Add(float64(len(resources)))
	s.metrics.BytesSent.WithLabelValues(shortType(typeURL)).Add(float64(bytes))
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[streamID]
	if st == nil {
		return
	}
	if len(st.sent) >= maxUnacked {
		clear(st.sent)
	}
	info := sentInfo{typeURL: typeURL, version: version}
	if n := s.nodes[st.nodeID]; n != nil {
		info.changedAt = n.changedAt[typeURL]
	}
	st.sent[nonce] = info
}

// answered handles the ACK or NACK of an earlier response and returns
// the version that response carried ("" when unknown).
func (s *Server) answered(streamID int64, nonce string, errDetail string, nack bool) string {
	if nonce == "" {
		return ""
	}
	s.mu.Lock()
	st := s.streams[streamID]
	var info sentInfo
	var ok bool
	if st != nil {
		info, ok = st.sent[nonce]
		delete(st.sent, nonce)
	}
	if ok {
		s.noteAnswer(st.nodeID, info, errDetail, nack)
	}
	s.mu.Unlock()
	if !ok {
		return ""
	}
	if nack {
		s.metrics.NACKs.WithLabelValues(shortType(info.typeURL)).Inc()
		s.log.Warn("proxy refused config", "node", st.nodeID, "type", shortType(info.typeURL), "version", info.version, "error", errDetail)
		if s.opts.OnNack != nil {
			s.opts.OnNack(st.nodeID, info.typeURL, info.version, errDetail)
		}
		return info.version
	}
	if !info.changedAt.IsZero() {
		s.metrics.Propagation.WithLabelValues(shortType(info.typeURL)).Observe(time.Since(info.changedAt).Seconds())
	}
	if s.opts.OnAck != nil {
		s.opts.OnAck(st.nodeID, info.typeURL, info.version)
	}
	return info.version
}

// deltaStream is the key of a delta stream in Server.streams: its id,
// negated, because go-control-plane numbers state-of-the-world and delta
// streams apart, each from 1, and the first of each would otherwise
// share one entry (one proxy's ACKs counted as the other's, its stream
// refused as naming another node).
func deltaStream(id int64) int64 { return -id }

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			return s.open(ctx, id)
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) { s.closed(id) },
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			n, err := s.register(id, req.GetNode())
			if err != nil {
				return err
			}
			if n != nil {
				s.pushFirst(n)
			}
			nack := req.GetErrorDetail() != nil
			v := s.answered(id, req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), nack)
			if nack && v != "" {
				// A NACK carries the last version the proxy accepted;
				// go-control-plane's cache would answer it at once with
				// the refused snapshot again, in a loop. Marking the
				// refused version as seen makes the next response wait
				// for a new snapshot.
				req.VersionInfo = v
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			s.sent(id, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce(), resp.GetResources())
		},
		DeltaStreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			return s.open(ctx, deltaStream(id))
		},
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) { s.closed(deltaStream(id)) },
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			id = deltaStream(id)
			n, err := s.register(id, req.GetNode())
			if err != nil {
				return err
			}
			s.internNames(id, req)
			s.answered(id, req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
			// A lazy proxy's first request is its destinations: its first
			// push, after them, already has them.
			s.learn(id, req, n == nil)
			if n != nil {
				s.pushFirst(n)
			}
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
			id = deltaStream(id)
			anys := make([]*anypb.Any, 0, len(resp.GetResources()))
			for _, r := range resp.GetResources() {
				anys = append(anys, r.GetResource())
			}
			s.sent(id, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce(), anys)
		},
	}
}

// internNames replaces the names a delta request subscribes to by the
// same strings of the proxy's snapshot: go-control-plane keeps them for
// as long as the stream lasts, and a proxy subscribes to every route
// configuration and endpoint by name, so each proxy would otherwise hold
// its own copy of every name of its scope.
func (s *Server) internNames(streamID int64, req *discoveryv3.DeltaDiscoveryRequest) {
	names := req.GetResourceNamesSubscribe()
	if len(names) == 0 {
		return
	}
	s.mu.Lock()
	var gen *generation
	if st := s.streams[streamID]; st != nil {
		if n := s.nodes[st.nodeID]; n != nil {
			gen = n.gen
		}
	}
	s.mu.Unlock()
	if gen == nil {
		return
	}
	held := gen.snap.plain[req.GetTypeUrl()]
	for i, name := range names {
		if r, ok := held[name]; ok {
			names[i] = r.(encoded).name
		}
	}
}

// cacheLogger routes go-control-plane's logs to slog, at debug level but
// for errors, since it logs every watch.
type cacheLogger struct{ log *slog.Logger }

func (l cacheLogger) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l cacheLogger) Infof(format string, args ...any)  { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l cacheLogger) Warnf(format string, args ...any)  { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l cacheLogger) Errorf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }
