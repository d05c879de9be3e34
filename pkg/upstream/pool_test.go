package upstream

import "testing"

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
	p := &Pool{}
	p.conns = conns(perConnTarget, 5, 0)
	if c, err := p.pick(cl); err != nil || c != p.conns[1] {
		t.Fatalf("picked %p (%v), want the second connection %p", c, err, p.conns[1])
	}
	p.conns = conns(perConnTarget+3, perConnTarget+1, perConnTarget+2)
	if c, err := p.pick(cl); err != nil || c != p.conns[1] {
		t.Fatalf("at the limit: picked %p (%v), want the least busy %p", c, err, p.conns[1])
	}
}
