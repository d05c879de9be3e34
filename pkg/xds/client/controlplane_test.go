package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// controlPlane is go-control-plane's ADS server, state of the world and
// delta, with a snapshot cache, on a loopback port: the server Rosetta's
// controller runs, serving the resources a test sets rather than those
// the controller generates. Each resource's delta version is a hash of
// its content and each type's version changes when one of its resources
// does, as pkg/xds does.
type controlPlane struct {
	addr  string
	cache cachev3.SnapshotCache
	stop  func()

	mu sync.Mutex
	// base starts the type versions; a control plane started again
	// (restart) numbers them from another base, as a restarted
	// controller does.
	base     int
	versions map[string]string
	typeHash map[string]string
	// sent is the type and version of each response by stream and nonce,
	// until it is answered.
	sent    map[string]sentResponse
	answers chan answer
}

type sentResponse struct{ typeURL, version string }

// answer is a client's ACK or NACK of a response.
type answer struct {
	typeURL, version, detail string
	nack                     bool
}

const testNode = "proxy-1"

func startControlPlane(t testing.TB) *controlPlane {
	t.Helper()
	cp := &controlPlane{
		cache:    cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		base:     1000,
		versions: map[string]string{},
		typeHash: map[string]string{},
		sent:     map[string]sentResponse{},
		answers:  make(chan answer, 1024),
	}
	cp.serve(t, "127.0.0.1:0")
	return cp
}

// serve serves ADS from cp's cache on addr until the test ends or
// cp.stop is called.
func (cp *controlPlane) serve(t testing.TB, addr string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = lis.Addr().String()
	// The keepalive policy pkg/xds serves with: the client pings every
	// 10 s.
	g := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(context.Background(), cp.cache, cp.callbacks()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Error(err)
		}
	}()
	var once sync.Once
	cp.stop = func() { once.Do(func() { g.Stop(); <-done }) }
	t.Cleanup(cp.stop)
}

// restart stops the server and serves again on the same address from a
// fresh cache holding the same resources, with other type versions, as a
// restarted controller does.
func (cp *controlPlane) restart(t testing.TB, res config.Resources) {
	t.Helper()
	cp.stop()
	cp.mu.Lock()
	cp.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	cp.base += 1000
	clear(cp.versions)
	clear(cp.typeHash)
	cp.mu.Unlock()
	cp.set(t, res)
	cp.serve(t, cp.addr)
}

// set makes res the resources testNode is served.
func (cp *controlPlane) set(t testing.TB, res config.Resources) {
	t.Helper()
	snap, err := newTestSnapshot(res)
	if err != nil {
		t.Fatal(err)
	}
	cp.setSnapshot(t, snap)
}

// setSnapshot makes snap what testNode is served, versioning each type
// that changed.
func (cp *controlPlane) setSnapshot(t testing.TB, snap *testSnapshot) {
	t.Helper()
	cp.mu.Lock()
	for _, typ := range typeOrder {
		if _, ok := cp.versions[typ]; !ok || cp.typeHash[typ] != snap.typeHash[typ] {
			cp.base++
			cp.versions[typ] = strconv.Itoa(cp.base)
			cp.typeHash[typ] = snap.typeHash[typ]
		}
		snap.versions[typ] = cp.versions[typ]
	}
	cache := cp.cache
	cp.mu.Unlock()
	if err := cache.SetSnapshot(context.Background(), testNode, snap); err != nil {
		t.Fatal(err)
	}
}

func (cp *controlPlane) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			if v, ok := cp.answered(id, req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil); ok && req.GetErrorDetail() != nil {
				// As pkg/xds does: a NACK carries the version last
				// accepted, which the cache would answer at once with
				// the refused one again.
				req.VersionInfo = v
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			cp.remember(id, resp.GetNonce(), resp.GetTypeUrl(), resp.GetVersionInfo())
		},
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			cp.answered(id, req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
			cp.remember(id, resp.GetNonce(), resp.GetTypeUrl(), resp.GetSystemVersionInfo())
		},
	}
}

func (cp *controlPlane) remember(stream int64, nonce, typeURL, version string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.sent[strconv.FormatInt(stream, 10)+"/"+nonce] = sentResponse{typeURL, version}
}

// answered records the answer to a response and returns the version that
// response carried.
func (cp *controlPlane) answered(stream int64, nonce, detail string, nack bool) (string, bool) {
	if nonce == "" {
		return "", false
	}
	key := strconv.FormatInt(stream, 10) + "/" + nonce
	cp.mu.Lock()
	s, ok := cp.sent[key]
	delete(cp.sent, key)
	cp.mu.Unlock()
	if ok {
		select {
		case cp.answers <- answer{typeURL: s.typeURL, version: s.version, detail: detail, nack: nack}:
		default: // a test that does not read them
		}
	}
	return s.version, ok
}

// nextAnswer waits up to within for the client's next answer.
func (cp *controlPlane) nextAnswer(t testing.TB, within time.Duration) (answer, bool) {
	t.Helper()
	select {
	case a := <-cp.answers:
		return a, true
	case <-time.After(within):
		return answer{}, false
	}
}

// testSnapshot is one proxy's resources with a version per type and a
// hash per resource, as pkg/xds's snapshot (go-control-plane's own
// knows Envoy's types only, and Rosetta's routes are not one). A
// resource's version is go-control-plane's HashResource of its encoding,
// as its own Snapshot computes it: that is the version its delta server
// sends with the resource, so a client's initial_resource_versions
// match it.
type testSnapshot struct {
	resources map[string]map[string]types.ResourceWithTTL
	hashes    map[string]map[string]string
	typeHash  map[string]string
	versions  map[string]string
}

var _ cachev3.ResourceSnapshot = (*testSnapshot)(nil)

func newTestSnapshot(res config.Resources) (*testSnapshot, error) {
	s := &testSnapshot{resources: map[string]map[string]types.ResourceWithTTL{}, hashes: map[string]map[string]string{},
		typeHash: map[string]string{}, versions: map[string]string{}}
	add := func(typeURL string, m proto.Message) error {
		b, err := cachev3.MarshalResource(m)
		if err != nil {
			return err
		}
		if s.resources[typeURL] == nil {
			s.resources[typeURL] = map[string]types.ResourceWithTTL{}
			s.hashes[typeURL] = map[string]string{}
		}
		s.resources[typeURL][nameOf(m)] = types.ResourceWithTTL{Resource: m}
		s.hashes[typeURL][nameOf(m)] = cachev3.HashResource(b)
		return nil
	}
	for typ, list := range byType(res) {
		for _, m := range list {
			if err := add(typ, m); err != nil {
				return nil, err
			}
		}
		s.typeHash[typ] = s.hashType(typ)
	}
	return s, nil
}

func (s *testSnapshot) hashType(typeURL string) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(s.hashes[typeURL])) {
		_, _ = io.WriteString(h, name+"="+s.hashes[typeURL][name]+";")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// byType lists res's resources by type.
func byType(res config.Resources) map[string][]proto.Message {
	out := map[string][]proto.Message{}
	for _, r := range res.Listeners {
		out[config.ListenerType] = append(out[config.ListenerType], r)
	}
	for _, r := range res.Clusters {
		out[config.ClusterType] = append(out[config.ClusterType], r)
	}
	for _, r := range res.Endpoints {
		out[config.EndpointType] = append(out[config.EndpointType], r)
	}
	for _, r := range res.Routes {
		out[config.RouteType] = append(out[config.RouteType], r)
	}
	for _, r := range res.Secrets {
		out[config.SecretType] = append(out[config.SecretType], r)
	}
	return out
}

func (s *testSnapshot) GetVersion(typeURL string) string { return s.versions[typeURL] }
func (s *testSnapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	return s.resources[typeURL]
}
func (s *testSnapshot) GetResources(typeURL string) map[string]types.Resource {
	out := make(map[string]types.Resource, len(s.resources[typeURL]))
	for k, v := range s.resources[typeURL] {
		out[k] = v.Resource
	}
	return out
}
func (s *testSnapshot) ConstructVersionMap() error                     { return nil }
func (s *testSnapshot) GetVersionMap(typeURL string) map[string]string { return s.hashes[typeURL] }

// wire records what a client sends and receives on its ADS streams, in
// either variant: add its DialOption to Options.DialOptions.
type wire struct {
	mu        sync.Mutex
	streams   int
	responses []wireResponse
	requests  []*discoveryv3.DeltaDiscoveryRequest
	sotwReqs  []*discoveryv3.DiscoveryRequest
}

// wireResponse is one response a client received: its type, the names
// of the resources it carried (and removed, in delta) and its size.
type wireResponse struct {
	stream         int
	typeURL        string
	names, removed []string
	size           int
	at             time.Time
}

func (w *wire) DialOption() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
		method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		w.mu.Lock()
		w.streams++
		n := w.streams
		w.mu.Unlock()
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &wireStream{ClientStream: s, w: w, n: n}, nil
	})
}

type wireStream struct {
	grpc.ClientStream
	w *wire
	n int
}

func (s *wireStream) SendMsg(m any) error {
	s.w.mu.Lock()
	switch m := m.(type) {
	case *discoveryv3.DeltaDiscoveryRequest:
		s.w.requests = append(s.w.requests, proto.Clone(m).(*discoveryv3.DeltaDiscoveryRequest))
	case *discoveryv3.DiscoveryRequest:
		s.w.sotwReqs = append(s.w.sotwReqs, proto.Clone(m).(*discoveryv3.DiscoveryRequest))
	}
	s.w.mu.Unlock()
	return s.ClientStream.SendMsg(m)
}

func (s *wireStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		return err
	}
	r := wireResponse{stream: s.n, at: time.Now()}
	switch m := m.(type) {
	case *discoveryv3.DeltaDiscoveryResponse:
		r.typeURL, r.size = m.GetTypeUrl(), proto.Size(m)
		for _, x := range m.GetResources() {
			r.names = append(r.names, x.GetName())
		}
		r.removed = m.GetRemovedResources()
	case *discoveryv3.DiscoveryResponse:
		r.typeURL, r.size = m.GetTypeUrl(), proto.Size(m)
		for _, a := range m.GetResources() {
			x, err := decodeAny(m.GetTypeUrl(), 0, a)
			if err != nil {
				return err
			}
			r.names = append(r.names, nameOf(x))
		}
	}
	s.w.mu.Lock()
	s.w.responses = append(s.w.responses, r)
	s.w.mu.Unlock()
	return nil
}

// since returns the responses received after the first n.
func (w *wire) since(n int) []wireResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]wireResponse(nil), w.responses[n:]...)
}

func (w *wire) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.responses)
}

// Interface guards.
var _ grpc.ClientStream = (*wireStream)(nil)
