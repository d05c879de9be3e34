package client

import (
	"context"
	"fmt"
	"maps"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// wildcardTypes are subscribed to whole; the other types by the names
// held resources name (namesOf), as Envoy subscribes to RDS, EDS and SDS.
var wildcardTypes = []string{config.ClusterType, config.ListenerType}

// byName says a type is subscribed to by name.
func byName(typeURL string) bool { return !slices.Contains(wildcardTypes, typeURL) }

// wildcard is the resource name that subscribes to every resource of a
// type.
const wildcard = "*"

// resource is one resource the client holds, with the version the
// controller gave it.
type resource struct {
	version string
	msg     proto.Message
}

// deltaState is what a delta client holds, by type and then name.
//
// accepted is the set the proxy last applied: a new stream starts from
// it, and its versions are the stream's initial_resource_versions, so
// the controller sends only what changed since, and again what the proxy
// refused (as Envoy does).
//
// received is what the controller holds the client to on the current
// stream: accepted, plus every resource received since, refused or not
// yet applied, less those removed or unsubscribed. The controller sends
// only what changes, so the next set is built on what it last sent, not
// on what the proxy last accepted.
//
// A change costs in proportion to what it changes, but for handing the
// proxy the whole set: refs follows what received names (the names
// subscribed to, the references not resolved yet), touched what changed
// since the proxy last accepted a set, and list each type's resources in
// order of name (at: where each name is) until a name comes or goes.
type deltaState struct {
	accepted map[string]map[string]resource
	received map[string]map[string]resource
	refs     *refGraph
	touched  map[ref]bool
	list     map[string][]proto.Message
	at       map[string]map[string]int
	// subscribed are the names subscribed to on this stream, for the
	// types subscribed to by name, and renamed the names whose count of
	// resources naming them went to or from 0 since they were last
	// brought in line.
	subscribed map[string]map[string]bool
	renamed    map[ref]bool
	// dirty says received changed since the proxy was last given it; it
	// starts true until the proxy accepts a set, so a first, empty set is
	// applied too.
	dirty   bool
	applied bool
}

func newDeltaState() *deltaState {
	return &deltaState{accepted: map[string]map[string]resource{}, touched: map[ref]bool{}}
}

// begin starts a stream's state from what the proxy accepted.
func (st *deltaState) begin() {
	st.received = map[string]map[string]resource{}
	st.subscribed = map[string]map[string]bool{}
	st.renamed = map[ref]bool{}
	st.list, st.at = map[string][]proto.Message{}, map[string]map[string]int{}
	st.refs = newRefGraph(func(r ref) bool { _, ok := st.received[r.typeURL][r.name]; return ok })
	clear(st.touched)
	for _, t := range typeOrder {
		st.received[t] = maps.Clone(st.accepted[t])
		if st.received[t] == nil {
			st.received[t] = map[string]resource{}
		}
		if byName(t) {
			st.subscribed[t] = map[string]bool{}
		}
	}
	for t, held := range st.received {
		for name, r := range held {
			st.refs.set(ref{t, name}, r.msg, st.rename)
		}
	}
	st.dirty = !st.applied // received is what the proxy runs, if anything
}

// rename notes a name newly named or no longer named.
func (st *deltaState) rename(r ref) {
	if byName(r.typeURL) {
		st.renamed[r] = true
	}
}

// put makes r the resource typeURL/name in received.
func (st *deltaState) put(typeURL, name string, r resource) {
	if i, ok := st.at[typeURL][name]; ok && st.list[typeURL] != nil {
		st.list[typeURL][i] = r.msg
	} else {
		st.list[typeURL] = nil
	}
	st.received[typeURL][name] = r
	st.touched[ref{typeURL, name}] = true
	st.refs.set(ref{typeURL, name}, r.msg, st.rename)
	st.dirty = true
}

// remove drops typeURL/name from received, if it is there.
func (st *deltaState) remove(typeURL, name string) {
	if _, ok := st.received[typeURL][name]; !ok {
		return
	}
	delete(st.received[typeURL], name)
	st.list[typeURL] = nil
	st.touched[ref{typeURL, name}] = true
	st.refs.set(ref{typeURL, name}, nil, st.rename)
	st.dirty = true
}

// accept makes received what the proxy runs.
func (st *deltaState) accept() {
	for r := range st.touched {
		if st.accepted[r.typeURL] == nil {
			st.accepted[r.typeURL] = map[string]resource{}
		}
		if x, ok := st.received[r.typeURL][r.name]; ok {
			st.accepted[r.typeURL][r.name] = x
		} else {
			delete(st.accepted[r.typeURL], r.name)
		}
	}
	clear(st.touched)
	st.applied = true
}

// resources is received as the set the proxy applies, each type in
// order of name. The set has slices of its own.
func (st *deltaState) resources() config.Resources {
	for t, held := range st.received {
		if st.list[t] != nil || len(held) == 0 {
			continue
		}
		names := slices.Sorted(maps.Keys(held))
		st.list[t], st.at[t] = make([]proto.Message, len(names)), make(map[string]int, len(names))
		for i, name := range names {
			st.list[t][i], st.at[t][name] = held[name].msg, i
		}
	}
	return toResources(st.list)
}

// deltaPending is a response merged into received but not yet answered.
type deltaPending struct {
	typeURL, nonce string
}

// deltaUpdate is a decoded response.
type deltaUpdate struct {
	typeURL, nonce string
	resources      map[string]resource
	removed        []string
}

// runStream runs one delta ADS stream on conn. progressed tells whether
// any response arrived.
func (st *deltaState) runStream(ctx context.Context, opts *Options, node *corev3.Node, conn *grpc.ClientConn, apply func(config.Resources) error) (progressed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("xds/client: open stream: %w", err)
	}
	st.begin()
	s := &deltaStream{st: st, stream: stream, opts: opts, apply: apply, seen: map[string]bool{}, node: node}
	if opts.Lazy != nil {
		s.lazy = &lazyReport{d: opts.Lazy}
	}
	if err := s.subscribe(node); err != nil {
		return false, err
	}
	loop := streamLoop[*discoveryv3.DeltaDiscoveryResponse]{
		handle:  s.handle,
		settle:  func() error { return s.settle(true) },
		holding: func() bool { return len(s.pending) > 0 },
	}
	if opts.Lazy != nil {
		loop.wake, loop.woken = opts.Lazy.wake, func() error { return s.sendLazy(false) }
	}
	return loop.run(sctx, stream.Recv, opts.IncompleteTimeout)
}

// deltaStream is one delta stream's state beyond deltaState.
type deltaStream struct {
	st     *deltaState
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	opts   *Options
	apply  func(config.Resources) error
	// pending are the responses not answered yet, in arrival order.
	pending []deltaPending
	// seen are the wildcard types answered on this stream: a set is
	// complete only with both, so a reconnection applies the listeners
	// and clusters that changed meanwhile at once.
	seen map[string]bool
	node *corev3.Node
	// lazy reports the destinations a lazy proxy's callers use; nil for
	// a proxy not in lazy mode.
	lazy *lazyReport
}

// subscribe opens the stream's subscriptions: the wildcard types, then
// the names the held resources name, each with the versions the proxy
// holds.
func (s *deltaStream) subscribe(node *corev3.Node) error {
	if err := s.sendLazy(true); err != nil {
		return err
	}
	for i, t := range wildcardTypes {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: []string{wildcard},
			InitialResourceVersions: versions(s.st.accepted[t])}
		if i == 0 {
			req.Node = node
		}
		if err := s.stream.Send(req); err != nil {
			return fmt.Errorf("xds/client: subscribe: %w", err)
		}
	}
	return s.resubscribe(true)
}

// versions maps each name held to its version.
func versions(held map[string]resource) map[string]string {
	out := make(map[string]string, len(held))
	for name, r := range held {
		out[name] = r.version
	}
	return out
}

// resubscribe brings the subscriptions by name in line with what the
// received resources name: it subscribes to the names newly named, and
// unsubscribes from (and drops) those no longer named. initial sends
// the versions held with each subscription (the first of a stream).
func (s *deltaStream) resubscribe(initial bool) error {
	add, drop := map[string][]string{}, map[string][]string{}
	for len(s.st.renamed) > 0 {
		renamed := s.st.renamed
		s.st.renamed = map[ref]bool{}
		for r := range renamed {
			named, have := s.st.refs.named(r), s.st.subscribed[r.typeURL][r.name]
			switch {
			case named && !have:
				s.st.subscribed[r.typeURL][r.name] = true
				add[r.typeURL] = append(add[r.typeURL], r.name)
			case !named && have:
				delete(s.st.subscribed[r.typeURL], r.name)
				drop[r.typeURL] = append(drop[r.typeURL], r.name)
				s.st.remove(r.typeURL, r.name) // may rename more
			}
		}
	}
	for _, t := range typeOrder {
		if len(add[t]) == 0 && len(drop[t]) == 0 {
			continue
		}
		slices.Sort(add[t])
		slices.Sort(drop[t])
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: add[t], ResourceNamesUnsubscribe: drop[t]}
		if initial {
			req.InitialResourceVersions = map[string]string{}
			for _, name := range add[t] {
				if r, ok := s.st.accepted[t][name]; ok {
					req.InitialResourceVersions[name] = r.version
				}
			}
		}
		if err := s.stream.Send(req); err != nil {
			return fmt.Errorf("xds/client: subscribe: %w", err)
		}
	}
	return nil
}

// handle merges a response into received, follows the names it brings or
// drops, and settles.
func (s *deltaStream) handle(resp *discoveryv3.DeltaDiscoveryResponse) error {
	u, err := decodeDelta(resp)
	if err != nil {
		// The response itself is malformed: refuse it alone.
		s.opts.Logger.Warn("xds response refused", "type", resp.GetTypeUrl(), "err", err)
		return s.answer(resp.GetTypeUrl(), resp.GetNonce(), err)
	}
	held := s.st.received[u.typeURL]
	for name, r := range u.resources {
		if byName(u.typeURL) && !s.st.subscribed[u.typeURL][name] {
			continue // unsubscribed since it was sent
		}
		if old, ok := held[name]; ok && old.version == r.version {
			continue
		}
		s.st.put(u.typeURL, name, r)
	}
	for _, name := range u.removed {
		s.st.remove(u.typeURL, name)
	}
	s.opts.Logger.Debug("xds delta response", "type", u.typeURL, "resources", len(u.resources), "removed", len(u.removed))
	s.pending = append(s.pending, deltaPending{typeURL: u.typeURL, nonce: u.nonce})
	s.seen[u.typeURL] = true
	if err := s.resubscribe(false); err != nil {
		return err
	}
	return s.settle(false)
}

// settle answers the pending responses: at once when they changed
// nothing; otherwise once received is a complete set (both wildcard types
// answered on this stream, every reference resolved), which the proxy is
// given and which it accepts (ACK) or refuses (NACK with its error).
// force gives the proxy an incomplete set anyway.
func (s *deltaStream) settle(force bool) error {
	if len(s.pending) == 0 {
		return nil
	}
	var applyErr error
	if s.st.dirty {
		if !force && (!s.seen[config.ListenerType] || !s.seen[config.ClusterType]) {
			return nil
		}
		if missing := s.st.refs.firstMissing(); missing != "" && !force {
			s.opts.Logger.Debug("xds set incomplete; waiting", "missing", missing)
			return nil
		}
		applyErr = s.apply(s.st.resources())
		s.st.dirty = false
		if applyErr == nil {
			s.st.accept()
		} else {
			s.opts.Logger.Warn("config refused; the previous one stays in force", "err", applyErr)
		}
	}
	for _, p := range s.pending {
		if err := s.answer(p.typeURL, p.nonce, applyErr); err != nil {
			return err
		}
	}
	s.pending = s.pending[:0]
	return nil
}

// answer ACKs (cause nil) or NACKs a response.
func (s *deltaStream) answer(typeURL, nonce string, cause error) error {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: nonce}
	if cause != nil {
		req.ErrorDetail = errorDetail(cause)
	}
	if err := s.stream.Send(req); err != nil {
		return fmt.Errorf("xds/client: send: %w", err)
	}
	return nil
}

// decodeDelta unpacks a delta response's resources into their Go types,
// by name.
func decodeDelta(resp *discoveryv3.DeltaDiscoveryResponse) (*deltaUpdate, error) {
	if n := len(resp.GetResources()) + len(resp.GetRemovedResources()); n > maxResourcesPerType {
		return nil, fmt.Errorf("xds/client: %d resources in one response, more than %d", n, maxResourcesPerType)
	}
	if _, err := newMessage(resp.GetTypeUrl()); err != nil {
		return nil, err
	}
	u := &deltaUpdate{typeURL: resp.GetTypeUrl(), nonce: resp.GetNonce(), resources: map[string]resource{}, removed: resp.GetRemovedResources()}
	for i, r := range resp.GetResources() {
		if r.GetResource() == nil {
			// A TTL heartbeat: the resource is unchanged. Rosetta's
			// controller sets no TTLs.
			continue
		}
		m, err := decodeAny(resp.GetTypeUrl(), i, r.GetResource())
		if err != nil {
			return nil, err
		}
		switch name := nameOf(m); {
		case r.GetName() == "":
			return nil, fmt.Errorf("xds/client: resource %d of %s has no name", i, resp.GetTypeUrl())
		case name != r.GetName():
			return nil, fmt.Errorf("xds/client: resource %d of %s is named %q, and %q inside", i, resp.GetTypeUrl(), r.GetName(), name)
		}
		if _, dup := u.resources[r.GetName()]; dup {
			return nil, fmt.Errorf("xds/client: resource %d of %s: %q is sent twice", i, resp.GetTypeUrl(), r.GetName())
		}
		u.resources[r.GetName()] = resource{version: r.GetVersion(), msg: m}
	}
	return u, nil
}
