package xds

import (
	"github.com/rosetta-mesh/rosetta/pkg/controller"
)

// noteAnswer records a proxy's refusal of a response, or its acceptance
// (forgetting an earlier refusal of that type). Callers hold s.mu.
func (s *Server) noteAnswer(nodeID string, info sentInfo, detail string, nack bool) {
	n := s.nodes[nodeID]
	if n == nil {
		return
	}
	if nack {
		if n.rejected == nil {
			n.rejected = map[string]controller.Rejection{}
		}
		n.rejected[info.typeURL] = controller.Rejection{Proxy: nodeID, Type: shortType(info.typeURL), Version: info.version, Detail: detail}
		s.rejectionsChanged()
		return
	}
	if n.acked == nil {
		n.acked = map[string]string{}
	}
	n.acked[info.typeURL] = info.version
	if _, ok := n.rejected[info.typeURL]; ok {
		delete(n.rejected, info.typeURL)
		s.rejectionsChanged()
	}
}

// rejectionsChanged wakes a RejectionsChanged reader, without waiting.
func (s *Server) rejectionsChanged() {
	select {
	case s.rejectCh <- struct{}{}:
	default:
	}
}

// RejectionsChanged receives a value after a proxy refuses config, accepts
// config after refusing, or disconnects with a refusal: then Rejections
// has changed. One reader (the MetaRouter status writer).
func (s *Server) RejectionsChanged() <-chan struct{} { return s.rejectCh }

// Rejections returns the connected proxies' outstanding refusals, by the
// MetaRouters (namespace/name) whose routes the refused config carries.
func (s *Server) Rejections() map[string][]controller.Rejection {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.index == nil {
		return nil
	}
	out := map[string][]controller.Rejection{}
	for _, n := range s.nodes {
		if len(n.rejected) == 0 {
			continue
		}
		routers := s.index.RoutersFor(n.proxy)
		for _, r := range n.rejected {
			for _, k := range routers {
				out[k] = append(out[k], r)
			}
		}
	}
	return out
}

// WithRejections adds the proxies' refusals to MetaRouter statuses (see
// controller.WithRejections); it is a controller.StatusWriter's Amend.
func (s *Server) WithRejections(st map[string]controller.RouterStatus) map[string]controller.RouterStatus {
	return controller.WithRejections(st, s.Rejections())
}
