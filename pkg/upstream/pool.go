package upstream

import (
	"sync"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// perConnTarget is how many requests in flight a connection carries before
// the pool opens another one (within the cluster's connection limit).
const perConnTarget = 128

// Pool holds the connections to one endpoint for one protocol.
type Pool struct {
	ep    *Endpoint
	proto codec.Protocol
	opts  codec.Options

	mu    sync.Mutex
	conns []*Conn
}

// Send sends msg over the first connection below perConnTarget requests in
// flight (opening one when none is, within the cluster's limit, else the
// least busy), and returns the connection and the ID the request carries
// there. Filling connections in order, rather than spreading requests over
// all of them, keeps many requests in each write: a pool that grew in a
// burst does not thin out every later write over its connections.
//
// When b is an event loop's batch, only connections that loop reads count,
// and a connection opened for the request is read by that loop, as Envoy
// gives each worker its own pools: answers then come back on the thread
// that writes them to the clients, with no hand-over between threads. At
// the cluster's limit, any connection will do.
func (p *Pool) Send(cl *Cluster, msg *codec.Message, r Request, b *wire.Batch) (*Conn, uint64, error) {
	var home *wire.Batch
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
func (p *Pool) pick(cl *Cluster, home *wire.Batch) (*Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := firstBelowTarget(p.conns, home); c != nil {
		return c, nil
	}
	if len(p.conns) >= cl.MaxConnections && len(p.conns) > 0 {
		return leastBusy(p.conns), nil
	}
	c, err := newConn(p)
	if err != nil {
		return nil, err
	}
	c.maxPending = cl.MaxPending
	c.home = home
	p.conns = append(p.conns, c)
	go c.dial(cl.ConnectTimeout)
	return c, nil
}

// firstBelowTarget is the first connection read by home's loop (any, for a
// nil home) with fewer than perConnTarget requests in flight.
func firstBelowTarget(conns []*Conn, home *wire.Batch) *Conn {
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
	defer p.mu.Unlock()
	for i, x := range p.conns {
		if x == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			return
		}
	}
}

// closeAll closes every connection.
func (p *Pool) closeAll() {
	p.mu.Lock()
	conns := append([]*Conn(nil), p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Conns reports how many connections the pool holds.
func (p *Pool) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}
