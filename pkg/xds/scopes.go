package xds

import (
	"maps"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/controller"
)

// Proxies with one ScopeKey (namespace, labels, mode, address, identity)
// share a scope: one generation of resources, encoded and hashed once,
// which every proxy of the scope is given. A generation runs without the
// server's locks, so that proxies whose scope is ready are served while
// other scopes are generated, and generations of different scopes run in
// parallel, at most GOMAXPROCS at once; it is installed under pushMu.

// generation is one generation of a scope's resources: the snapshot its
// proxies share and what it read of the Index (Deps). It never changes.
type generation struct {
	snap *snapshot
	deps *controller.Deps
}

// scope is the generation of a scope in force for the Index numbered
// seq: made from it, or from an earlier Index whose changes since did not
// reach the scope.
type scope struct {
	seq uint64
	gen *generation
}

// generate returns p's scope for ix: last's generation when last is for
// ix, or when ix's changes (relative to last's Index) do not reach the
// scope (Index.Affects); else a new generation, counted under reason.
// Nil when the resources are invalid (logged). It holds no lock.
func (s *Server) generate(ix *controller.Index, p *controller.Proxy, last *scope, reason string) *scope {
	if last != nil && (last.seq == ix.Seq() || (ix.ChangedSince(last.seq) && !ix.Affects(p, last.gen.deps))) {
		return &scope{seq: ix.Seq(), gen: last.gen}
	}
	s.genSlots <- struct{}{}
	defer func() { <-s.genSlots }()
	res, deps := ix.GenerateDeps(p)
	snap, err := newSnapshot(res)
	if err != nil {
		s.log.Error("generate", "node", p.ID, "err", err)
		return nil
	}
	s.metrics.ScopeGenerations.WithLabelValues(reason).Inc()
	if last != nil && snap.sameResources(last.gen.snap) {
		// Equal resources: keep the snapshot in force, which the scope's
		// proxies hold in the snapshot cache, so that memory holds one
		// copy, not that and this. The new Deps are what later changes
		// are checked against.
		snap = last.gen.snap
	}
	return &scope{seq: ix.Seq(), gen: &generation{snap: snap, deps: deps}}
}

// inFlight is a generation under way, which proxies of the same scope
// connecting meanwhile wait for instead of generating it again.
type inFlight struct {
	done chan struct{}
	sc   *scope
}

type flightKey struct {
	scopeKey string
	seq      uint64
}

// generateOnce is generate, for proxy p of the scope key, once for a
// scope and an Index however many callers ask at the same time.
func (s *Server) generateOnce(ix *controller.Index, key string, p *controller.Proxy, last *scope, reason string) *scope {
	k := flightKey{key, ix.Seq()}
	s.mu.Lock()
	if f := s.flights[k]; f != nil {
		s.mu.Unlock()
		<-f.done
		return f.sc
	}
	f := &inFlight{done: make(chan struct{})}
	s.flights[k] = f
	s.mu.Unlock()
	f.sc = s.generate(ix, p, last, reason)
	s.mu.Lock()
	// Made from the index in force, it is the scope's now, so that a
	// proxy of the scope that comes next does not generate it again.
	if cur := s.scopes[key]; f.sc != nil && s.index == ix && (cur == nil || cur.seq != ix.Seq()) {
		s.scopes[key] = f.sc
	}
	delete(s.flights, k)
	s.mu.Unlock()
	close(f.done)
	return f.sc
}

// generateAll returns for ix the scope of each key of reps (a proxy of
// it), generated in parallel where it must be; a scope left out has
// invalid resources.
func (s *Server) generateAll(ix *controller.Index, reps map[string]*controller.Proxy, last map[string]*scope) map[string]*scope {
	type result struct {
		key string
		sc  *scope
	}
	out := make(chan result, len(reps))
	for k, p := range reps {
		go func() { out <- result{k, s.generateOnce(ix, k, p, last[k], "push")} }()
	}
	scopes := make(map[string]*scope, len(reps))
	for range reps {
		r := <-out
		if r.sc != nil {
			scopes[r.key] = r.sc
		}
	}
	return scopes
}

// Update makes ix the index every proxy's resources come from and pushes
// to every connected proxy the types that changed for it. changedAt is
// when the first object change behind ix happened, for the propagation
// metric. Only the pipeline calls it, one at a time. Proxies connecting
// while it generates are served from the index before, then pushed to
// with the rest.
func (s *Server) Update(ix *controller.Index, changedAt time.Time) {
	start := time.Now()
	s.mu.Lock()
	reps := map[string]*controller.Proxy{}
	for _, n := range s.nodes {
		reps[n.scopeKey] = n.proxy
	}
	last := maps.Clone(s.scopes)
	s.mu.Unlock()
	scopes := s.generateAll(ix, reps, last)

	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.mu.Lock()
	s.index, s.changedAt = ix, changedAt
	version := s.nextVersion()
	nodes := s.nodeList()
	last = s.scopes
	s.mu.Unlock()
	// A proxy's scope key and view change only under pushMu (lazy.go),
	// which is held from here.
	kept := make(map[string]*scope, len(scopes))
	for _, n := range nodes {
		sc := kept[n.scopeKey]
		if sc == nil {
			// A proxy of a scope that connected after the generation
			// started is generated for here.
			if sc = scopes[n.scopeKey]; sc == nil {
				sc = s.generateOnce(ix, n.scopeKey, n.proxy, last[n.scopeKey], "push")
			}
			if sc == nil {
				continue
			}
			kept[n.scopeKey] = sc
		}
		s.setNode(n, sc, version, changedAt)
	}
	s.mu.Lock()
	s.scopes = kept // a scope no proxy is left in is dropped
	s.mu.Unlock()
	s.metrics.PushDuration.Observe(time.Since(start).Seconds())
}

// pushFirst sets the snapshot of a proxy that just connected: its
// scope's, generated (without the server's locks) when the scope has
// none from the current index yet. An Update that comes meanwhile pushes
// to the proxy itself.
func (s *Server) pushFirst(n *nodeState) {
	for {
		s.mu.Lock()
		ix, key, p := s.index, n.scopeKey, n.proxy
		last := s.scopes[key]
		s.mu.Unlock()
		if ix == nil {
			return // the first Update pushes to it
		}
		sc := last
		if sc == nil || sc.seq != ix.Seq() {
			if sc = s.generateOnce(ix, key, p, last, "connect"); sc == nil {
				return
			}
		}
		s.pushMu.Lock()
		s.mu.Lock()
		if n.gen != nil || s.nodes[n.id] != n || n.scopeKey != key {
			// An Update pushed to it, or it left, or it learned (lazy.go).
			s.mu.Unlock()
			s.pushMu.Unlock()
			return
		}
		if s.index != ix {
			s.mu.Unlock()
			s.pushMu.Unlock()
			continue // generate from the new index
		}
		if cur := s.scopes[n.scopeKey]; cur != nil && cur.seq == ix.Seq() {
			sc = cur // a proxy of the scope connected meanwhile
		} else {
			s.scopes[n.scopeKey] = sc
		}
		version, changedAt := s.nextVersion(), s.changedAt
		s.mu.Unlock()
		s.setNode(n, sc, version, changedAt)
		s.pushMu.Unlock()
		return
	}
}

// nodeList lists the connected proxies. Callers hold s.mu.
func (s *Server) nodeList() []*nodeState {
	out := make([]*nodeState, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, n)
	}
	return out
}
