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
func (p *Pool) Send(cl *Cluster, msg *codec.Message, r Request, b *wire.Batch) (*Conn, uint64, error) {
	c, err := p.pick(cl)
	if err != nil {
		return nil, 0, err
	}
	id, err := c.Send(msg, r, b)
	return c, id, err
}

func (p *Pool) pick(cl *Cluster) (*Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *Conn
	for _, c := range p.conns {
		n := c.active.Load()
		if n < perConnTarget {
			return c, nil
		}
		if best == nil || n < best.active.Load() {
			best = c
		}
	}
	if best != nil && len(p.conns) >= cl.MaxConnections {
		return best, nil
	}
	c, err := newConn(p)
	if err != nil {
		return nil, err
	}
	c.maxPending = cl.MaxPending
	p.conns = append(p.conns, c)
	go c.dial(cl.ConnectTimeout)
	return c, nil
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
