package upstream

import (
	"testing"

	"github.com/rosetta-mesh/rosetta/pkg/netloop"
)

func conns(active ...int32) []*Conn {
	var out []*Conn
	for _, n := range active {
		c := &Conn{}
		c.active.Store(n)
		out = append(out, c)
	}
	return out
}

// TestPoolFillsConnectionsInOrder: the first connection below the target
// takes the request, not the least busy one, so writes stay full after a
// burst grew the pool; when all are at the target and the limit is reached,
// the least busy one does.
func TestPoolFillsConnectionsInOrder(t *testing.T) {
	cl := &Cluster{MaxConnections: 3}
	p := &Pool{ep: newEndpoint("127.0.0.1:1")}
	p.set(conns(perConnTarget, 5, 0))
	if c, err := p.pick(cl, nil); err != nil || c != p.list()[1] {
		t.Fatalf("picked %p (%v), want the second connection %p", c, err, p.list()[1])
	}
	p.set(conns(perConnTarget+3, perConnTarget+1, perConnTarget+2))
	if c, err := p.pick(cl, nil); err != nil || c != p.list()[1] {
		t.Fatalf("at the limit: picked %p (%v), want the least busy %p", c, err, p.list()[1])
	}
}

// TestPoolPicksTheLoopsConnections: a request from a loop takes only a
// connection that loop reads, opening one below the limit; at the limit, the
// least busy connection of any loop.
func TestPoolPicksTheLoopsConnections(t *testing.T) {
	var a, b netloop.Round
	cl := &Cluster{MaxConnections: 3}
	p := &Pool{ep: newEndpoint("127.0.0.1:1")}
	p.set(conns(0, 5, perConnTarget+1))
	p.list()[0].home, p.list()[1].home, p.list()[2].home = &a, &b, &b
	if c, err := p.pick(cl, &b); err != nil || c != p.list()[1] {
		t.Fatalf("picked %p (%v), want b's first connection %p", c, err, p.list()[1])
	}
	p.list()[1].active.Store(perConnTarget)
	if c, err := p.pick(cl, &b); err != nil || c != p.list()[0] {
		t.Fatalf("at the limit: picked %p (%v), want the least busy %p", c, err, p.list()[0])
	}
	if c, err := p.pick(cl, nil); err != nil || c != p.list()[0] {
		t.Fatalf("from no loop: picked %p (%v), want the first below the target %p", c, err, p.list()[0])
	}
}

// set replaces the pool's connections, for tests.
func (p *Pool) set(cs []*Conn) { p.conns.Store(&cs) }
