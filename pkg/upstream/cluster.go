// Package upstream holds clusters, their endpoints, load balancing and the
// pooled, multiplexed connections to upstream servers.
package upstream

import (
	"github.com/rosetta-mesh/rosetta/pkg/observability"
	"sync"
	"sync/atomic"
	"time"
)

// Cluster is a named set of endpoints with a load balancer and limits. A
// cluster is immutable once built; a config update builds new ones that share
// the Endpoints (and so the connections) of the old.
type Cluster struct {
	Name           string
	Endpoints      []*Endpoint
	Balancer       Balancer
	Policy         LBPolicy
	ConnectTimeout time.Duration
	// MaxConnections caps the connections to each endpoint.
	MaxConnections int
	// MaxRequests caps the requests in flight to the whole cluster.
	MaxRequests int64
	// MaxPending caps the requests waiting, per connection, for the
	// connection to be made.
	MaxPending int
	// MaxRetries caps the retries in flight to the whole cluster, unless
	// RetryBudget is set.
	MaxRetries int64
	// RetryBudget, when set, caps the retries in flight in proportion to
	// the requests in flight instead (Envoy's retry_budget).
	RetryBudget *RetryBudget
	// Outlier says when an endpoint is ejected.
	Outlier Outlier
	// Active, when set, follows the requests in flight for a metric. It
	// is shared by every build of the cluster's name, so it stays right
	// across config updates (each build counts its own requests).
	Active Gauge
	// Service is the destination service its requests are labelled with
	// in Istio's metrics.
	Service *observability.Service
	// workloads are its endpoints' workloads, from their metadata.
	workloads map[*Endpoint]*observability.Workload

	inflight atomic.Int64
	retries  atomic.Int64
	state    *sync.Map // shared by every build of the name (Manager)

	// byAddr indexes Endpoints by address, made on first use (EndpointAt).
	byAddrOnce sync.Once
	byAddr     map[string]*Endpoint
}

// EndpointAt is the cluster's endpoint at addr; nil when it has none.
func (c *Cluster) EndpointAt(addr string) *Endpoint {
	c.byAddrOnce.Do(func() {
		c.byAddr = make(map[string]*Endpoint, len(c.Endpoints))
		for _, e := range c.Endpoints {
			c.byAddr[e.Addr] = e
		}
	})
	return c.byAddr[addr]
}

// State returns the value a protocol's handlers keep with the cluster under
// key, made by init on first use (codec.Upstream.ClusterState). Every build
// of the cluster's name shares it, so it outlives config updates; it is
// forgotten once a config no longer has the cluster. Callers that race on
// first use may each run init; one result is kept and given to all.
func (c *Cluster) State(key any, init func() any) any {
	if c.state == nil { // a cluster not built by a Manager (tests)
		return init()
	}
	if v, ok := c.state.Load(key); ok {
		return v
	}
	v, _ := c.state.LoadOrStore(key, init())
	return v
}

// RetryBudget bounds a cluster's retries in flight to Percent of its
// requests in flight, and never below MinConcurrency: when most requests
// fail at once, retries cannot multiply the load on what is left.
type RetryBudget struct {
	// Percent of the requests in flight, 0 to 100.
	Percent float64
	// MinConcurrency is the retries in flight allowed however few
	// requests are in flight.
	MinConcurrency int64
}

// Envoy's defaults for a retry_budget that leaves a field unset.
const (
	DefaultRetryBudgetPercent        = 20
	DefaultRetryBudgetMinConcurrency = 3
)

// limit is the retries allowed in flight while inflight requests are.
func (b *RetryBudget) limit(inflight int64) int64 {
	return max(int64(b.Percent*float64(inflight)/100), b.MinConcurrency)
}

// AcquireRetry takes a slot for a retry in flight; false when the cluster's
// retry limit or budget is reached, so a failing upstream is not hit twice
// as hard.
func (c *Cluster) AcquireRetry() bool {
	limit := c.MaxRetries
	if c.RetryBudget != nil {
		limit = c.RetryBudget.limit(c.inflight.Load())
	}
	if c.retries.Add(1) > limit {
		c.retries.Add(-1)
		return false
	}
	return true
}

// ReleaseRetry gives back what AcquireRetry took.
func (c *Cluster) ReleaseRetry() { c.retries.Add(-1) }

// Workload is what the config says of e's workload, for the labels of
// Istio's metrics; UnknownWorkload when it says nothing.
func (c *Cluster) Workload(e *Endpoint) *observability.Workload {
	if w := c.workloads[e]; w != nil {
		return w
	}
	return observability.UnknownWorkload
}

// Workloads calls fn for each endpoint whose workload the config names.
func (c *Cluster) Workloads(fn func(e *Endpoint, w *observability.Workload)) {
	for e, w := range c.workloads {
		fn(e, w)
	}
}

// Pick chooses an endpoint; nil when the cluster has none.
func (c *Cluster) Pick(hash uint64, exclude *Endpoint) *Endpoint {
	if len(c.Endpoints) == 0 {
		return nil
	}
	return c.Balancer.Pick(c.Endpoints, hash, exclude)
}

// Gauge is what Cluster.Active needs of a metric (a prometheus.Gauge).
type Gauge interface {
	Inc()
	Dec()
}

// Acquire takes a slot for a request in flight; false when the cluster's
// request limit is reached.
func (c *Cluster) Acquire() bool {
	if c.inflight.Add(1) > c.MaxRequests {
		c.inflight.Add(-1)
		return false
	}
	if c.Active != nil {
		c.Active.Inc()
	}
	return true
}

// Release gives back what Acquire took.
func (c *Cluster) Release() {
	c.inflight.Add(-1)
	if c.Active != nil {
		c.Active.Dec()
	}
}

// InFlight reports the requests in flight to the cluster.
func (c *Cluster) InFlight() int64 { return c.inflight.Load() }
