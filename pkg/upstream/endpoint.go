package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Ejection backoff after a failed connect or a reset with requests in flight.
const (
	baseEjection = time.Second
	maxEjection  = 30 * time.Second
)

// Endpoint is one upstream address. Endpoints outlive config updates, so their
// connections and health survive a route or endpoint change.
type Endpoint struct {
	Addr string

	// active counts requests in flight, for the least-request balancer.
	active atomic.Int64

	mu           sync.Mutex
	failures     int
	ejectedUntil time.Time
	pools        map[string]*Pool
}

func newEndpoint(addr string) *Endpoint {
	return &Endpoint{Addr: addr, pools: map[string]*Pool{}}
}

// Healthy reports whether the endpoint is not ejected.
func (e *Endpoint) Healthy(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !now.Before(e.ejectedUntil)
}

// fail ejects the endpoint for a time that doubles with each failure in a row.
func (e *Endpoint) fail() {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := baseEjection << min(e.failures, 5)
	e.failures++
	e.ejectedUntil = time.Now().Add(min(d, maxEjection))
}

func (e *Endpoint) succeed() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failures = 0
	e.ejectedUntil = time.Time{}
}

// Pool returns the endpoint's connection pool for a protocol and its options.
func (e *Endpoint) Pool(p codec.Protocol, opts codec.Options, key string) *Pool {
	e.mu.Lock()
	defer e.mu.Unlock()
	pl := e.pools[key]
	if pl == nil {
		pl = &Pool{ep: e, proto: p, opts: opts}
		e.pools[key] = pl
	}
	return pl
}

// Active reports the requests in flight to the endpoint.
func (e *Endpoint) Active() int64 { return e.active.Load() }

// Begin and End count a request in flight, for the least-request balancer.
func (e *Endpoint) Begin() { e.active.Add(1) }

// End ends what Begin counted.
func (e *Endpoint) End() { e.active.Add(-1) }

func (e *Endpoint) closeAll() {
	e.mu.Lock()
	pools := make([]*Pool, 0, len(e.pools))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	e.mu.Unlock()
	for _, p := range pools {
		p.closeAll()
	}
}

func (e *Endpoint) closeIdle(cutoff time.Time) {
	e.mu.Lock()
	pools := make([]*Pool, 0, len(e.pools))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	e.mu.Unlock()
	for _, p := range pools {
		p.closeIdle(cutoff)
	}
}
