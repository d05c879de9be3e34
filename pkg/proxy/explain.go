package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/router"
	"github.com/rosetta-mesh/rosetta/pkg/upstream"
)

// Explanation says where a request with some attributes goes: the
// listener, each route tried (and why it did not match), the route taken
// and the clusters and endpoints it may reach. The proxy's admin serves it
// at /explain; rosettactl explain prints it.
type Explanation struct {
	Listener string `json:"listener"`
	Codec    string `json:"codec"`
	// RouteConfig names the route configuration; empty for inline routes.
	RouteConfig string            `json:"routeConfig,omitempty"`
	Attributes  map[string]string `json:"attributes"`
	Routes      []router.Verdict  `json:"routes"`
	// Route is the route taken; empty when none matched (the proxy then
	// answers with the codec's no-route error).
	Route    string          `json:"route,omitempty"`
	Clusters []ClusterChoice `json:"clusters,omitempty"`
	Mirrors  []ClusterChoice `json:"mirrors,omitempty"`
	Timeout  string          `json:"timeout,omitempty"`
	// RequestMutation lists the attributes the route sets ("key=value").
	RequestMutation []string `json:"requestMutation,omitempty"`
}

// ClusterChoice is a cluster a route may send to, with its share of the
// requests and its endpoints.
type ClusterChoice struct {
	Name string `json:"name"`
	// Percent of the requests: the weight's share, or a mirror's
	// percentage.
	Percent   float64  `json:"percent"`
	Policy    string   `json:"policy,omitempty"`
	Endpoints []string `json:"endpoints"`
	// Endpoint is the one the request goes to when that does not depend
	// on load (a single endpoint, or a hash on the request's attributes);
	// empty when the balancer chooses per request.
	Endpoint string `json:"endpoint,omitempty"`
	// Missing is true when the config has no such cluster: the proxy
	// answers "no upstream".
	Missing bool `json:"missing,omitempty"`
}

// ErrNoListener is returned when no listener answers to the name or port
// asked for.
var ErrNoListener = errors.New("no such listener")

// Explain answers for the configuration in force. listener is a listener's
// name or port number, or empty when the proxy has one Rosetta listener.
func (p *Proxy) Explain(listener string, attrs map[string]string) (*Explanation, error) {
	s := p.snap.Load()
	if s == nil {
		return nil, errors.New("proxy: no configuration yet")
	}
	return s.explain(listener, attrs)
}

// ExplainResources answers for res, compiled as the proxy compiles
// config it is given (an error is what the proxy would refuse it with).
func ExplainResources(res config.Resources, listener string, attrs map[string]string) (*Explanation, error) {
	id := identity.NewWorkload(nil, nil)
	s, err := compile(res, upstream.NewManager(id), id, DefaultLimits(), nil)
	if err != nil {
		return nil, err
	}
	return s.explain(listener, attrs)
}

func (s *snapshot) explain(listener string, attrs map[string]string) (*Explanation, error) {
	lc, err := s.findListener(listener)
	if err != nil {
		return nil, err
	}
	t := lc.table(s)
	if t == nil {
		return nil, fmt.Errorf("listener %q: no route configuration named %q", lc.name, lc.routeName)
	}
	e := &Explanation{Listener: lc.name, Codec: lc.protocol.Name, RouteConfig: lc.routeName, Attributes: attrs}
	if lc.inline != nil {
		e.RouteConfig = ""
	}
	req := &codec.Message{Kind: codec.KindRequest, Attrs: codec.Map(attrs)}
	r, verdicts := t.Explain(req)
	e.Routes = verdicts
	if r == nil {
		return e, nil
	}
	e.Route = r.Name
	a := &r.Action
	if a.Timeout > 0 {
		e.Timeout = a.Timeout.String()
	}
	for _, kv := range a.RequestMutation {
		e.RequestMutation = append(e.RequestMutation, kv.Key+"="+kv.Value)
	}
	hash := hashOf(req, a)
	if a.Cluster != "" {
		e.Clusters = append(e.Clusters, s.clusterChoice(a.Cluster, 100, hash))
	}
	var total uint32
	for _, w := range a.Weighted {
		total += w.Weight
	}
	for _, w := range a.Weighted {
		e.Clusters = append(e.Clusters, s.clusterChoice(w.Name, 100*float64(w.Weight)/float64(total), hash))
	}
	for _, m := range a.Mirrors {
		e.Mirrors = append(e.Mirrors, s.clusterChoice(m.Cluster, m.Percent, hash))
	}
	return e, nil
}

// findListener is the listener named name, or bound to port name, or the
// only one when name is empty.
func (s *snapshot) findListener(name string) (*listenerConfig, error) {
	if lc := s.listeners[name]; lc != nil {
		return lc, nil
	}
	var found []*listenerConfig
	port, perr := strconv.ParseUint(name, 10, 32)
	for _, lc := range s.listeners {
		if name == "" || (perr == nil && lc.port == uint32(port)) {
			found = append(found, lc)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	names := make([]string, 0, len(s.listeners))
	for n := range s.listeners {
		names = append(names, n)
	}
	sort.Strings(names)
	if name == "" {
		return nil, fmt.Errorf("%w: %d listeners %v, name one (or its port)", ErrNoListener, len(names), names)
	}
	if len(found) > 1 {
		return nil, fmt.Errorf("%w: %d listeners on port %s, name one of %v", ErrNoListener, len(found), name, names)
	}
	return nil, fmt.Errorf("%w: no listener named %q or on that port (the config has %v)", ErrNoListener, name, names)
}

// clusterChoice describes cluster as the snapshot has it. With a single
// endpoint, or a ring hash on the request's attributes, the endpoint is
// the one a request goes to (while it is healthy); other balancers choose
// per request and no endpoint is named.
func (s *snapshot) clusterChoice(name string, percent float64, hash uint64) ClusterChoice {
	c := ClusterChoice{Name: name, Percent: percent, Endpoints: []string{}}
	cl := s.clusters[name]
	if cl == nil {
		c.Missing = true
		return c
	}
	c.Policy = string(cl.Policy)
	if c.Policy == "" {
		c.Policy = string(upstream.RoundRobin)
	}
	for _, ep := range cl.Endpoints {
		c.Endpoints = append(c.Endpoints, ep.Addr)
	}
	slices.Sort(c.Endpoints)
	switch {
	case len(cl.Endpoints) == 1:
		c.Endpoint = cl.Endpoints[0].Addr
	case cl.Policy == upstream.ConsistentHash && len(cl.Endpoints) > 0:
		if ep := cl.Pick(hash, nil); ep != nil {
			c.Endpoint = ep.Addr
		}
	}
	return c
}

// handleExplain serves /explain?listener=NAME|PORT&attr=key=value...: the
// proxy's own answer, from the configuration in force, as JSON.
func (p *Proxy) handleExplain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	attrs := map[string]string{}
	for _, kv := range q["attr"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			http.Error(w, fmt.Sprintf("attr %q: want key=value", kv), http.StatusBadRequest)
			return
		}
		attrs[k] = v
	}
	e, err := p.Explain(q.Get("listener"), attrs)
	switch {
	case errors.Is(err, ErrNoListener):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	out, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(out, '\n'))
}
