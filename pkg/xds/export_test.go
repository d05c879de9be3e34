package xds

import "fmt"

// Held names what the server holds for a connected proxy, for tests
// outside the package: the snapshot the snapshot cache holds for it, the
// snapshot of the generation set as its own, and that of its scope's
// generation in force, each by the address of its resources (a
// snapshot's copies with versions of their own share them), and the
// Deps of the scope's generation by address. "" for what it has none of.
func (s *Server) Held(nodeID string) (cached, node, scope, deps string) {
	if snap, err := s.cache.GetSnapshot(nodeID); err == nil {
		cached = fmt.Sprintf("%p", snap.(*snapshot).resources)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	if n == nil {
		return cached, "", "", ""
	}
	if n.gen != nil {
		node = fmt.Sprintf("%p", n.gen.snap.resources)
	}
	if sc := s.scopes[n.scopeKey]; sc != nil {
		scope, deps = fmt.Sprintf("%p", sc.gen.snap.resources), fmt.Sprintf("%p", sc.gen.deps)
	}
	return cached, node, scope, deps
}
