// Package upstream holds clusters, their endpoints, load balancing and the
// pooled, multiplexed connections to upstream servers.
package upstream

import (
	"sync/atomic"
	"time"
)

// Default limits, Envoy's circuit-breaker defaults.
const (
	DefaultMaxConnections = 1024
	DefaultMaxRequests    = 1024
	DefaultConnectTimeout = 5 * time.Second
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

	inflight atomic.Int64
}

// Pick chooses an endpoint; nil when the cluster has none.
func (c *Cluster) Pick(hash uint64, exclude *Endpoint) *Endpoint {
	if len(c.Endpoints) == 0 {
		return nil
	}
	return c.Balancer.Pick(c.Endpoints, hash, exclude)
}

// Acquire takes a slot for a request in flight; false when the cluster's
// request limit is reached.
func (c *Cluster) Acquire() bool {
	if c.inflight.Add(1) > c.MaxRequests {
		c.inflight.Add(-1)
		return false
	}
	return true
}

// Release gives back what Acquire took.
func (c *Cluster) Release() { c.inflight.Add(-1) }

// InFlight reports the requests in flight to the cluster.
func (c *Cluster) InFlight() int64 { return c.inflight.Load() }
