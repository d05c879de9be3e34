package upstream

import (
	"fmt"
	"math"

	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/rosetta-mesh/rosetta/pkg/config"
	"github.com/rosetta-mesh/rosetta/pkg/identity"
	"github.com/rosetta-mesh/rosetta/pkg/observability"
)

// Manager builds clusters from config and keeps one Endpoint per address
// across updates, so connections and health outlive a config change.
type Manager struct {
	// identity secures connections to endpoints whose transport is Istio
	// mutual TLS; nil: such clusters are refused.
	identity *identity.Workload

	mu        sync.Mutex
	endpoints map[string]*Endpoint
	// draining are the endpoints config removed whose connections are
	// still open; each leaves once they are closed (Endpoint.drain).
	draining map[*Endpoint]struct{}
	// drainTime bounds how long a removed endpoint's requests may take.
	drainTime time.Duration
	// states keeps each cluster name's State across builds.
	states map[string]*sync.Map
	read   ReadLimits // bounds the reading of endpoints made
}

// NewManager returns an empty Manager; id, when not nil, is the workload
// identity for Istio mutual TLS to upstreams.
func NewManager(id *identity.Workload) *Manager {
	return &Manager{identity: id, endpoints: map[string]*Endpoint{}, draining: map[*Endpoint]struct{}{},
		drainTime: DrainTime, states: map[string]*sync.Map{}}
}

// SetDrainTime sets how long the requests in flight to an endpoint that a
// config update removes may take (DrainTime unless set), for endpoints
// removed from now on.
func (m *Manager) SetDrainTime(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drainTime = d
}

// Draining reports how many removed endpoints still have connections open.
func (m *Manager) Draining() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.draining)
}

// Build checks and builds clusters. EDS clusters take their endpoints from
// the ClusterLoadAssignment of the same name (or their eds service name).
// It changes nothing until Commit.
func (m *Manager) Build(clusters []*clusterv3.Cluster, cla []*endpointv3.ClusterLoadAssignment) (map[string]*Cluster, error) {
	byName := map[string]*endpointv3.ClusterLoadAssignment{}
	for i, a := range cla {
		if a.GetClusterName() == "" {
			return nil, fmt.Errorf("endpoints[%d].cluster_name: must not be empty", i)
		}
		byName[a.GetClusterName()] = a
	}
	out := make(map[string]*Cluster, len(clusters))
	for i, c := range clusters {
		if c.GetName() == "" {
			return nil, fmt.Errorf("clusters[%d].name: must not be empty", i)
		}
		if _, dup := out[c.GetName()]; dup {
			return nil, fmt.Errorf("clusters[%d].name: %q is defined twice", i, c.GetName())
		}
		cl, err := m.buildCluster(c, byName)
		if err != nil {
			return nil, fmt.Errorf("clusters[%d] (%s): %w", i, c.GetName(), err)
		}
		out[c.GetName()] = cl
	}
	return out, nil
}

func (m *Manager) buildCluster(c *clusterv3.Cluster, cla map[string]*endpointv3.ClusterLoadAssignment) (*Cluster, error) {
	assignment := c.GetLoadAssignment()
	if name, ok := config.EndpointsName(c); ok {
		assignment = cla[name]
	}
	lbs, err := usableEndpoints(assignment)
	if err != nil {
		return nil, err
	}
	if err := checkBufferLimit(c); err != nil {
		return nil, err
	}
	tp, err := m.transports(c)
	if err != nil {
		return nil, err
	}
	cl := &Cluster{
		Name:           c.GetName(),
		ConnectTimeout: DefaultConnectTimeout,
		MaxConnections: DefaultMaxConnections,
		MaxRequests:    DefaultMaxRequests,
		MaxPending:     DefaultMaxPending,
		MaxRetries:     DefaultMaxRetries,
		Policy:         policy(c.GetLbPolicy()),
	}
	if d := c.GetConnectTimeout(); d != nil {
		cl.ConnectTimeout = d.AsDuration()
	}
	if err := applyLimits(cl, c.GetCircuitBreakers()); err != nil {
		return nil, err
	}
	if cl.Outlier, err = outlier(c.GetOutlierDetection()); err != nil {
		return nil, err
	}
	if cl.Service, err = serviceOf(c); err != nil {
		return nil, err
	}
	for i, lb := range lbs {
		e := m.endpoint(lb.addr, tp.pick(lb.lb))
		e.listed.Store(true)
		cl.Endpoints = append(cl.Endpoints, e)
		w, err := workloadOf(lb.lb)
		if err != nil {
			return nil, fmt.Errorf("endpoints (%s): %w", lbs[i].addr, err)
		}
		if w != nil {
			if cl.workloads == nil {
				cl.workloads = map[*Endpoint]*observability.Workload{}
			}
			cl.workloads[e] = w
		}
	}
	if cl.Balancer, err = newBalancer(cl.Policy, cl.Endpoints, ringSize(c)); err != nil {
		return nil, err
	}
	cl.state = m.stateOf(cl.Name)
	return cl, nil
}

// stateOf is the State of every build of the cluster named name.
func (m *Manager) stateOf(name string) *sync.Map {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.states[name]
	if st == nil {
		st = &sync.Map{}
		m.states[name] = st
	}
	return st
}

// outlier reads a cluster's outlier detection. The proxy sees connect
// failures and resets (local-origin and gateway failures) and error answers
// (what Envoy counts as 5xx); the first threshold set decides. interval and
// max_ejection_percent mean what they mean to Envoy (see Outlier); unset,
// they keep Rosetta's defaults (no sweep, no cap) rather than Envoy's
// (10 s, 10%), as the other fields do.
func outlier(od *clusterv3.OutlierDetection) (Outlier, error) {
	o := DefaultOutlier
	if od == nil {
		return o, nil
	}
	for _, v := range []*wrapperspb.UInt32Value{od.GetConsecutiveLocalOriginFailure(), od.GetConsecutiveGatewayFailure()} {
		if v != nil && v.GetValue() > 0 {
			o.Consecutive = int(v.GetValue())
			break
		}
	}
	if v := od.GetConsecutive_5Xx(); v != nil && v.GetValue() > 0 {
		o.Consecutive, o.CountErrors = int(v.GetValue()), true
	}
	if d := od.GetBaseEjectionTime(); d != nil {
		if d.AsDuration() <= 0 {
			return o, fmt.Errorf("outlier_detection.base_ejection_time: must be positive")
		}
		o.Base = d.AsDuration()
	}
	if d := od.GetMaxEjectionTime(); d != nil && d.AsDuration() > 0 {
		o.Max = d.AsDuration()
	}
	if o.Max < o.Base {
		o.Max = o.Base
	}
	if d := od.GetInterval(); d != nil {
		if d.AsDuration() <= 0 {
			return o, fmt.Errorf("outlier_detection.interval: must be positive")
		}
		o.Interval = d.AsDuration()
	}
	if v := od.GetMaxEjectionPercent(); v != nil {
		if v.GetValue() > 100 {
			return o, fmt.Errorf("outlier_detection.max_ejection_percent: %d is over 100", v.GetValue())
		}
		o.MaxEjectionPercent = int(v.GetValue())
	}
	return o, nil
}

// ringSize is the ring's minimum size (RING_HASH) or table size (MAGLEV)
// when the cluster sets one; 0 otherwise.
func ringSize(c *clusterv3.Cluster) int {
	if v := c.GetRingHashLbConfig().GetMinimumRingSize(); v != nil {
		return int(min(v.GetValue(), maxRingSize))
	}
	if v := c.GetMaglevLbConfig().GetTableSize(); v != nil {
		return int(min(v.GetValue(), maxRingSize))
	}
	return 0
}

func policy(p clusterv3.Cluster_LbPolicy) LBPolicy {
	if p == clusterv3.Cluster_MAGLEV {
		return ConsistentHash
	}
	return LBPolicy(p.String())
}

func applyLimits(cl *Cluster, cb *clusterv3.CircuitBreakers) error {
	for i, t := range cb.GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		if v := t.GetMaxConnections(); v != nil && v.GetValue() > 0 {
			cl.MaxConnections = int(v.GetValue())
		}
		if v := t.GetMaxRequests(); v != nil && v.GetValue() > 0 {
			cl.MaxRequests = int64(v.GetValue())
		}
		if v := t.GetMaxPendingRequests(); v != nil && v.GetValue() > 0 {
			cl.MaxPending = int(v.GetValue())
		}
		if v := t.GetMaxRetries(); v != nil {
			cl.MaxRetries = int64(v.GetValue())
		}
		if rb := t.GetRetryBudget(); rb != nil {
			b, err := retryBudget(rb)
			if err != nil {
				return fmt.Errorf("circuit_breakers.thresholds[%d].retry_budget.%w", i, err)
			}
			cl.RetryBudget = b
		}
	}
	return nil
}

// retryBudget reads Envoy's retry_budget, with its defaults (20%, 3).
func retryBudget(rb *clusterv3.CircuitBreakers_Thresholds_RetryBudget) (*RetryBudget, error) {
	b := &RetryBudget{Percent: DefaultRetryBudgetPercent, MinConcurrency: DefaultRetryBudgetMinConcurrency}
	if p := rb.GetBudgetPercent(); p != nil {
		v := p.GetValue()
		if math.IsNaN(v) || v < 0 || v > 100 {
			return nil, fmt.Errorf("budget_percent: %v is not between 0 and 100", v)
		}
		b.Percent = v
	}
	if v := rb.GetMinRetryConcurrency(); v != nil {
		b.MinConcurrency = int64(v.GetValue())
	}
	if rb.GetBudgetInterval() != nil {
		return nil, fmt.Errorf("budget_interval: not supported: the budget counts the requests in flight now")
	}
	return b, nil
}

type lbEndpoint struct {
	addr string
	lb   *endpointv3.LbEndpoint
}

// usableEndpoints are the assignment's endpoints that may take requests.
func usableEndpoints(a *endpointv3.ClusterLoadAssignment) ([]lbEndpoint, error) {
	var out []lbEndpoint
	for i, loc := range a.GetEndpoints() {
		for j, lb := range loc.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil || sa.GetAddress() == "" || sa.GetPortValue() == 0 {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d].endpoint.address.socket_address: an address and a port_value are required", i, j)
			}
			if sa.GetPortValue() > 65535 {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d].endpoint.address.socket_address.port_value: %d is not a port (1-65535)", i, j, sa.GetPortValue())
			}
			if lb.GetHealthStatus() == corev3.HealthStatus_UNHEALTHY || lb.GetHealthStatus() == corev3.HealthStatus_DRAINING {
				continue
			}
			out = append(out, lbEndpoint{net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), lb})
		}
	}
	return out, nil
}

func (m *Manager) endpoint(addr string, t *clientTLS) *Endpoint {
	key := endpointKey(addr, t)
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.endpoints[key]
	if e == nil {
		e = newEndpoint(addr)
		e.tls = t
		e.read = m.read
		m.endpoints[key] = e
	}
	return e
}

// Commit forgets endpoints that no cluster in use references any more, and
// the State of clusters no longer in use. A forgotten endpoint drains: it
// takes no new request, each of its connections closes once the requests in
// flight on it are answered, and what is still open after the drain time
// closes then (Endpoint.drain). The same address in a later config is a new
// Endpoint, with connections of its own.
func (m *Manager) Commit(inUse map[string]*Cluster) {
	keep := map[*Endpoint]bool{}
	for _, c := range inUse {
		g := &ejectionGroup{endpoints: c.Endpoints, maxPercent: c.Outlier.MaxEjectionPercent}
		for _, e := range c.Endpoints {
			keep[e] = true
			e.setOutlier(c.Outlier, g)
		}
	}
	m.mu.Lock()
	var gone []*Endpoint
	for addr, e := range m.endpoints {
		if !keep[e] {
			gone = append(gone, e)
			delete(m.endpoints, addr)
		}
	}
	for name := range m.states {
		if inUse[name] == nil {
			delete(m.states, name)
		}
	}
	for _, e := range gone {
		m.draining[e] = struct{}{}
	}
	within := m.drainTime
	m.mu.Unlock()
	for _, e := range gone {
		e.drain(within, func() { m.released(e) })
	}
}

func (m *Manager) released(e *Endpoint) {
	m.mu.Lock()
	delete(m.draining, e)
	m.mu.Unlock()
}

// CloseAll closes every upstream connection, draining or not, failing the
// requests in flight on them.
func (m *Manager) CloseAll() {
	m.Commit(nil)
	m.mu.Lock()
	all := make([]*Endpoint, 0, len(m.draining))
	for e := range m.draining {
		all = append(all, e)
	}
	m.mu.Unlock()
	for _, e := range all {
		e.closeAll()
		e.release()
	}
}

// Endpoint returns the plaintext endpoint for addr, making one if no
// cluster has it.
func (m *Manager) Endpoint(addr string) *Endpoint { return m.endpoint(addr, nil) }

// serviceOf is a cluster's destination service for Istio's metrics: from
// its metadata (istiod's and the controller's istio.services), else the
// host of an Istio cluster name (outbound|PORT|SUBSET|HOST), else the
// cluster's name.
func serviceOf(c *clusterv3.Cluster) (*observability.Service, error) {
	s, ok, err := config.ParseService(c.GetMetadata())
	switch {
	case err != nil:
		return nil, err
	case ok:
		svc := observability.ServiceOf(s.Host)
		if s.Name != "" {
			svc.Name = s.Name
		}
		if s.Namespace != "" {
			svc.Namespace = s.Namespace
		}
		return svc, nil
	}
	name := c.GetName()
	if parts := strings.SplitN(name, "|", 4); len(parts) == 4 && parts[0] == "outbound" {
		name = parts[3]
	}
	return observability.ServiceOf(name), nil
}

// workloadOf is an endpoint's workload from its metadata; nil when it
// has none. Empty fields are Istio's "unknown".
func workloadOf(lb *endpointv3.LbEndpoint) (*observability.Workload, error) {
	w, ok, err := config.ParseWorkload(lb.GetMetadata())
	if err != nil || !ok {
		return nil, err
	}
	or := func(s string) string {
		if s == "" {
			return observability.Unknown
		}
		return s
	}
	return &observability.Workload{Name: or(w.Name), Namespace: or(w.Namespace), Principal: or(w.Principal), App: or(w.App), Version: or(w.Version)}, nil
}
