package xds

import (
	"maps"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/rosetta-mesh/rosetta/pkg/config"
)

// MetaLazy is "true" when the proxy runs in lazy mode (rosetta-proxy
// --lazy): it reports the destinations its callers use as delta
// subscriptions to config.LazyDestinationType, and gets only those
// destinations' config plus the route to the fallback for the rest.
const MetaLazy = "lazy"

// learn applies a lazy proxy's report, a delta request for
// config.LazyDestinationType: the names it subscribes to are destinations
// its callers use, those it unsubscribes from ones they stopped using.
// When the set changes, the proxy's scope key changes with it, and it gets
// its new scope's snapshot (shared with every proxy of the same scope and
// learned set). go-control-plane never answers these subscriptions: the
// snapshots hold no resource of the type. Names past the caps are
// dropped, so a proxy cannot make the controller hold without bound.
// Without push the set is only noted: the caller pushes the proxy's first
// snapshot next.
func (s *Server) learn(streamID int64, req *discoveryv3.DeltaDiscoveryRequest, push bool) {
	if req.GetTypeUrl() != config.LazyDestinationType || !s.isLazy(streamID) {
		return
	}
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	var n *nodeState
	if st := s.streams[streamID]; st != nil {
		n = s.nodes[st.nodeID]
	}
	if n == nil || !n.proxy.Lazy {
		s.mu.Unlock()
		return
	}
	learned := maps.Clone(n.proxy.Learned)
	if learned == nil {
		learned = map[string]bool{}
	}
	for _, d := range req.GetResourceNamesUnsubscribe() {
		delete(learned, d)
	}
	for _, d := range req.GetResourceNamesSubscribe() {
		if len(learned) < config.MaxLazyDestinations && len(d) <= config.MaxLazyDestinationLength && d != "" {
			learned[d] = true
		}
	}
	if maps.Equal(learned, n.proxy.Learned) {
		s.mu.Unlock()
		return
	}
	// n.proxy and n.scopeKey are read under pushMu, which is held.
	p := *n.proxy
	p.Learned = learned
	n.proxy, n.scopeKey = &p, p.ScopeKey()
	ix := s.index
	version, changedAt := s.nextVersion(), s.changedAt
	s.mu.Unlock()
	s.log.Debug("lazy proxy's destinations", "node", n.id, "destinations", len(learned))
	if ix == nil || !push {
		return
	}
	s.mu.Lock()
	last := s.scopes[n.scopeKey]
	s.mu.Unlock()
	if sc := s.generateOnce(ix, n.scopeKey, n.proxy, last, "lazy"); sc != nil {
		s.setNode(n, sc, version, changedAt)
	}
}

// isLazy reports whether the stream's proxy runs in lazy mode. It is
// asked before taking pushMu: a stream's request callback that waits for
// pushMu while its holder waits to hand the same stream a response
// (SetSnapshot) holds both until the proxy's keepalive gives up.
func (s *Server) isLazy(streamID int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[streamID]; st != nil {
		if n := s.nodes[st.nodeID]; n != nil {
			return n.proxy.Lazy
		}
	}
	return false
}
