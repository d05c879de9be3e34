package upstream

import (
	"fmt"
	"maps"
	"math"
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
	// Interval, when set, is Envoy's sweep interval: an ejection ends at
	// the first sweep after its time is up (so it lasts a whole number of
	// intervals), and each interval an endpoint stays in after an ejection
	// takes one doubling off its next one. Zero: ejections end on time, and
	// the backoff lasts until a connection succeeds.
	Interval time.Duration
	// MaxEjectionPercent caps the share of a cluster's endpoints ejected
	// at once; one endpoint is always ejected when no other is.
	MaxEjectionPercent int
}

// DefaultOutlier is the ejection policy of a cluster without one.
var DefaultOutlier = Outlier{Consecutive: 1, Base: time.Second, Max: 30 * time.Second, MaxEjectionPercent: 100}

// Endpoint is one upstream address. Endpoints outlive config updates, so their
// connections and health survive a route or endpoint change.
type Endpoint struct {
	Addr string
	// tls secures its connections; nil for plaintext. Fixed for its life:
	// the same address with other TLS settings is another Endpoint.
	tls *clientTLS
	// read bounds the reading of its connections.
	read ReadLimits

	// active counts requests in flight, for the least-request balancer.
	active atomic.Int64

	// Every request reads these, so they are atomics: ejectedUntil (Unix
	// nanoseconds, 0 when never ejected since the last success), inARow
	// (failures since the last success) and countErrors (the outlier
	// policy's).
	ejectedUntil atomic.Int64
	inARow       atomic.Int32
	countErrors  atomic.Bool
	// removed is set when a config update drops the endpoint: it takes
	// no new request, and its connections close as they go idle (drain).
	// It is ejected for good then, so a pick that finds a healthy endpoint
	// reads nothing more.
	removed atomic.Bool

	// pools is read by every request and written once per protocol and
	// options: a write replaces the map under mu, and a read takes no lock.
	pools atomic.Pointer[map[string]*Pool]

	// listed is set once a cluster of the config lists the endpoint; one
	// never listed was named by a codec (a Redis Cluster node).
	listed atomic.Bool

	mu        sync.Mutex
	outlier   Outlier
	group     *ejectionGroup // the cluster's endpoints; nil outside a cluster
	ejections int            // ejections in a row, for the backoff
	// dedicated are the open connections one client owns (DialDedicated).
	dedicated map[*Dedicated]struct{}
	// drainTimer closes what is left of a removed endpoint at its drain
	// deadline; released, called once, tells the Manager it may forget
	// the endpoint.
	drainTimer *time.Timer
	released   func()
}

func newEndpoint(addr string) *Endpoint {
	e := &Endpoint{Addr: addr, outlier: DefaultOutlier}
	e.pools.Store(&map[string]*Pool{})
	return e
}

// setOutlier sets the ejection policy and the cluster whose share of
// ejections it counts in; endpoints shared by clusters take the last one
// built.
func (e *Endpoint) setOutlier(o Outlier, g *ejectionGroup) {
	e.mu.Lock()
	e.outlier, e.group = o, g
	e.countErrors.Store(o.CountErrors)
	e.mu.Unlock()
}

// Answered records an answer from the endpoint: an error answer counts
// toward ejection when the outlier policy counts errors; any other answer
// clears the run of failures.
func (e *Endpoint) Answered(isError bool) {
	if isError && e.countErrors.Load() {
		e.fail()
		return
	}
	if !isError && e.inARow.Load() != 0 {
		e.inARow.Store(0)
	}
}

// Healthy reports whether the endpoint is not ejected; it reads the clock
// only for an endpoint ejected once.
func (e *Endpoint) Healthy() bool {
	until := e.ejectedUntil.Load()
	return until == 0 || time.Now().UnixNano() >= until
}

func (e *Endpoint) healthyAt(now time.Time) bool {
	until := e.ejectedUntil.Load()
	return until == 0 || now.UnixNano() >= until
}

// fail records a failure and ejects the endpoint once the outlier policy's
// run of failures is reached, for a time that doubles with each ejection in
// a row, unless the cluster has its share of endpoints ejected already.
func (e *Endpoint) fail() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed.Load() {
		return // ejected for good
	}
	if e.inARow.Add(1) < int32(max(e.outlier.Consecutive, 1)) {
		return
	}
	// The run is spent even when the cap refuses the ejection, as in
	// Envoy: a new run of failures is needed to try again.
	e.inARow.Store(0)
	now := time.Now()
	o := e.outlier
	steps := max(e.ejections-healthyIntervals(e.ejectedUntil.Load(), now, o.Interval), 0)
	d := min(o.Base<<min(steps, 5), o.Max)
	if e.group.eject(e, ejectionEnd(now, d, o.Interval).UnixNano(), now) {
		e.ejections = steps + 1
	}
}

func (e *Endpoint) succeed() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed.Load() {
		return // ejected for good
	}
	e.inARow.Store(0)
	e.ejections = 0
	e.ejectedUntil.Store(0)
}

// Pool returns the endpoint's connection pool for a protocol and its options.
func (e *Endpoint) Pool(p codec.Protocol, opts codec.Options, key string) *Pool {
	if pl := (*e.pools.Load())[key]; pl != nil {
		return pl
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := *e.pools.Load()
	if pl := old[key]; pl != nil {
		return pl
	}
	pl := &Pool{ep: e, proto: p, opts: opts}
	m := make(map[string]*Pool, len(old)+1)
	maps.Copy(m, old)
	m[key] = pl
	e.pools.Store(&m)
	return pl
}

// Active reports the requests in flight to the endpoint.
func (e *Endpoint) Active() int64 { return e.active.Load() }

// Begin and End count a request in flight, for the least-request balancer.
func (e *Endpoint) Begin() { e.active.Add(1) }

// End ends what Begin counted.
func (e *Endpoint) End() { e.active.Add(-1) }

// Removed reports whether a config update removed the endpoint: it takes no
// new request, and its connections drain.
func (e *Endpoint) Removed() bool { return e.removed.Load() }

// closeAll closes every connection, failing what is in flight.
func (e *Endpoint) closeAll() {
	e.closeWith(fmt.Errorf("%w: closed by the proxy", ErrReset), true)
}

// closeWith closes the pooled connections, failing what is in flight with
// err, and the dedicated ones too when dedicated is set.
func (e *Endpoint) closeWith(err error, dedicated bool) {
	for _, p := range *e.pools.Load() {
		p.closeWith(err)
	}
	if !dedicated {
		return
	}
	for _, d := range e.dedicatedConns() {
		d.Close()
	}
}

func (e *Endpoint) dedicatedConns() []*Dedicated {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Dedicated, 0, len(e.dedicated))
	for d := range e.dedicated {
		out = append(out, d)
	}
	return out
}

// drain stops the endpoint taking new requests and closes each pooled
// connection once nothing is in flight on it. What is still open after
// within (pooled connections with requests in flight, and dedicated ones,
// whose client owns a transaction, a blocking command or a subscription)
// closes then, its requests failing with ErrReset. The dedicated
// connections of an endpoint no config listed (a Redis Cluster node) are
// left to their clients: no config removed it, and a new one to the same
// address is another endpoint. released runs once, when nothing is left
// open.
func (e *Endpoint) drain(within time.Duration, released func()) {
	e.mu.Lock()
	e.removed.Store(true) // under mu: Pool, DialDedicated, fail and succeed check it under their locks
	e.ejectedUntil.Store(math.MaxInt64)
	e.released = released
	e.drainTimer = time.AfterFunc(within, func() {
		e.closeWith(fmt.Errorf("%w: the endpoint was removed from the config and its drain time (%s) is over", ErrReset, within), e.listed.Load())
		e.releaseIfIdle()
	})
	pools := *e.pools.Load()
	e.mu.Unlock()
	for _, p := range pools {
		p.drain()
	}
	e.releaseIfIdle()
}

// releaseIfIdle releases a removed endpoint once it has no connection left.
func (e *Endpoint) releaseIfIdle() {
	for _, p := range *e.pools.Load() {
		if p.Conns() > 0 {
			return
		}
	}
	e.mu.Lock()
	busy := len(e.dedicated) > 0
	e.mu.Unlock()
	if !busy {
		e.release()
	}
}

// release stops the drain timer and tells the Manager, once.
func (e *Endpoint) release() {
	e.mu.Lock()
	done := e.released
	e.released = nil
	if e.drainTimer != nil {
		e.drainTimer.Stop()
	}
	e.mu.Unlock()
	if done != nil {
		done()
	}
}
