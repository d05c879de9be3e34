package xds

import (
	"encoding/json"
	"net/http"
	"sort"
)

// ProxyStatus is what the controller knows of one connected proxy: who
// it says (or proved) it is, and per resource type the version last sent,
// the version it last acknowledged, and its refusal of a later one.
type ProxyStatus struct {
	ID        string       `json:"id"`
	Namespace string       `json:"namespace,omitempty"`
	Mode      string       `json:"mode,omitempty"`
	Identity  string       `json:"identity,omitempty"`
	Streams   int          `json:"streams"`
	Types     []TypeStatus `json:"types"`
}

// TypeStatus is one resource type's state for a proxy.
type TypeStatus struct {
	Type string `json:"type"` // short: "Listener"
	// Resources counts the type's resources in the proxy's config. A
	// delta stream sends nothing for a type without any, so such a type
	// may never be acknowledged.
	Resources int `json:"resources"`
	// Sent is the version the controller holds for the proxy; Acked the
	// last one the proxy acknowledged. They differ while a push is on
	// its way, and after a refusal.
	Sent  string `json:"sent,omitempty"`
	Acked string `json:"acked,omitempty"`
	// Rejected is the refused version and the proxy's reason, until it
	// acknowledges a later one.
	Rejected *Refusal `json:"rejected,omitempty"`
}

// Refusal is a NACK.
type Refusal struct {
	Version string `json:"version"`
	Detail  string `json:"detail"`
}

// Status lists the connected proxies, sorted by id.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.nodes))
	for _, n := range s.nodes {
		ps := ProxyStatus{ID: n.id, Namespace: n.proxy.Namespace, Mode: n.proxy.Mode, Identity: n.proxy.Identity,
			Streams: n.streams, Types: make([]TypeStatus, 0, len(TypeURLs))}
		for _, t := range TypeURLs {
			ts := TypeStatus{Type: shortType(t), Resources: n.count(t), Sent: n.versions[t], Acked: n.acked[t]}
			if r, ok := n.rejected[t]; ok {
				ts.Rejected = &Refusal{Version: r.Version, Detail: r.Detail}
			}
			ps.Types = append(ps.Types, ts)
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// StatusHandler serves Status as JSON ({"proxies": [...]}), for rosettactl
// status. NACK details can quote config: serve it where the config dump
// is served (the controller's debug address).
func (s *Server) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		js, err := json.MarshalIndent(map[string]any{"proxies": s.Status()}, "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(js, '\n'))
	})
}

// count is how many resources of a type the proxy was last given.
// Callers hold s.mu.
func (n *nodeState) count(typeURL string) int {
	if n.gen == nil {
		return 0
	}
	return n.gen.snap.count(typeURL)
}
