package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Outlier is when an endpoint is ejected: after Consecutive failures in a
// row (connect failures and resets always count; error answers count when
// CountErrors is set), for Base doubled with each ejection in a row, at most
// Max. Without a DestinationRule's outlierDetection the proxy ejects on the
// first connect failure or reset, for 1 s doubling up to 30 s.
type Outlier struct {
	Consecutive int
	CountErrors bool
	Base, Max   time.Duration
}

// DefaultOutlier is the ejection policy of a cluster without one.
var DefaultOutlier = Outlier{Consecutive: 1, Base: time.Second, Max: 30 * time.Second}

// Endpoint is one upstream address. Endpoints outlive config updates, so their
// connections and health survive a route or endpoint change.
type Endpoint struct {
	Addr string

	// active counts requests in flight, for the least-request balancer.
	active atomic.Int64

	mu           sync.Mutex
	outlier      Outlier
	inARow       int // failures since the last success
	ejections    int // ejections in a row, for the backoff
	ejectedUntil time.Time
	pools        map[string]*Pool
}

func newEndpoint(addr string) *Endpoint {
	return &Endpoint{Addr: addr, pools: map[string]*Pool{}, outlier: DefaultOutlier}
}

// setOutlier sets the ejection policy; endpoints shared by clusters take the
// last one built.
func (e *Endpoint) setOutlier(o Outlier) {
	e.mu.Lock()
	e.outlier = o
	e.mu.Unlock()
}

// Answered records an answer from the endpoint: an error answer counts
// toward ejection when the outlier policy counts errors; any other answer
// clears the run of failures.
func (e *Endpoint) Answered(isError bool) {
	e.mu.Lock()
	countErrors := e.outlier.CountErrors
	e.mu.Unlock()
	if isError && countErrors {
		e.fail()
		return
	}
	if !isError {
		e.mu.Lock()
		e.inARow = 0
		e.mu.Unlock()
	}
}

// Healthy reports whether the endpoint is not ejected.
func (e *Endpoint) Healthy(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !now.Before(e.ejectedUntil)
}

// fail records a failure and ejects the endpoint once the outlier policy's
// run of failures is reached, for a time that doubles with each ejection in
// a row.
func (e *Endpoint) fail() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inARow++
	if e.inARow < max(e.outlier.Consecutive, 1) {
		return
	}
	e.inARow = 0
	d := e.outlier.Base << min(e.ejections, 5)
	e.ejections++
	e.ejectedUntil = time.Now().Add(min(d, e.outlier.Max))
}

func (e *Endpoint) succeed() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inARow, e.ejections = 0, 0
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
