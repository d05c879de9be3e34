package upstream

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

// Pool holds the connections to one endpoint for one protocol.
type Pool struct {
	ep    *Endpoint
	proto codec.Protocol
	opts  codec.Options

	// conns is read by every request and changes when a connection opens
	// or closes: a change replaces the slice under mu, and a read takes no
	// lock.
	mu    sync.Mutex
	conns atomic.Pointer[[]*Conn]
}

func (p *Pool) list() []*Conn {
	if l := p.conns.Load(); l != nil {
		return *l
	}
	return nil
}

// Send sends msg over the first connection below perConnTarget requests in
// flight (opening one when none is, within the cluster's limit, else the
// least busy), and returns the connection and the ID the request carries
// there. Filling connections in order, rather than spreading requests over
// all of them, keeps many requests in each write: a pool that grew in a
// burst does not thin out every later write over its connections.
//
// When b is an event loop's round, only connections that loop reads count,
// and a connection opened for the request is read by that loop, as Envoy
// gives each worker its own pools: answers then come back on the thread
// that writes them to the clients, with no hand-over between threads. At
// the cluster's limit, any connection will do.
func (p *Pool) Send(cl *Cluster, msg *codec.Message, r Request, b *netloop.Round) (*Conn, uint64, error) {
	var home *netloop.Round
	if b.Loop() {
		home = b
	}
	c, err := p.pick(cl, home)
	if err != nil {
		return nil, 0, err
	}
	id, err := c.Send(msg, r, b)
	return c, id, err
}

// pick finds a connection for a request from home's loop (nil: from no
// loop, which any connection suits).
func (p *Pool) pick(cl *Cluster, home *netloop.Round) (*Conn, error) {
	if c := firstBelowTarget(p.list(), home); c != nil {
		return c, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ep.removed.Load() { // checked under mu: Endpoint.drain sees every connection made before
		return nil, errRemoved
	}
	conns := p.list()
	if c := firstBelowTarget(conns, home); c != nil {
		return c, nil
	}
	if len(conns) >= cl.MaxConnections && len(conns) > 0 {
		return leastBusy(conns), nil
	}
	c, err := newConn(p)
	if err != nil {
		return nil, err
	}
	c.maxPending = cl.MaxPending
	c.home = home
	grown := append(slices.Clip(conns), c)
	p.conns.Store(&grown)
	go c.dial(cl.ConnectTimeout)
	return c, nil
}

// firstBelowTarget is the first connection read by home's loop (any, for a
// nil home) with fewer than perConnTarget requests in flight.
func firstBelowTarget(conns []*Conn, home *netloop.Round) *Conn {
	for _, c := range conns {
		if (home == nil || c.home == home) && c.active.Load() < perConnTarget {
			return c
		}
	}
	return nil
}

func leastBusy(conns []*Conn) *Conn {
	best := conns[0]
	for _, c := range conns[1:] {
		if c.active.Load() < best.active.Load() {
			best = c
		}
	}
	return best
}

func (p *Pool) remove(c *Conn) {
	p.mu.Lock()
	conns := p.list()
	if i := slices.Index(conns, c); i >= 0 {
		left := slices.Delete(slices.Clone(conns), i, i+1)
		p.conns.Store(&left)
	}
	p.mu.Unlock()
	if p.ep.removed.Load() {
		p.ep.releaseIfIdle()
	}
}

// closeAll closes every connection.
func (p *Pool) closeAll() {
	for _, c := range p.list() {
		c.Close()
	}
}

// drain drains every connection (Conn.drain). The endpoint is marked
// removed first, so pick makes no connection this does not see.
func (p *Pool) drain() {
	p.mu.Lock()
	conns := p.list()
	p.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
}

// closeWith closes every connection, failing what is in flight with err.
func (p *Pool) closeWith(err error) {
	for _, c := range p.list() {
		c.close(err)
	}
}

// Conns reports how many connections the pool holds.
func (p *Pool) Conns() int {
	return len(p.list())
}
