package redis

import (
	"errors"
	"sync"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// pinned is an upstream connection one client owns (codec.DedicatedConn):
// a transaction's or a blocking command's. Opening it dials, so it opens on
// its own goroutine; commands sent meanwhile wait in order.
type pinned struct {
	mu      sync.Mutex
	dest    string
	conn    codec.DedicatedConn
	err     error
	queue   []*codec.Message // waiting for the connection
	waiting []func(*codec.Message)
	closed  bool
}

// openPinned opens a dedicated connection to addr of cluster.
func openPinned(up codec.Upstream, t target) *pinned {
	p := &pinned{dest: t.dest}
	go func() {
		addr, err := t.addr()
		var conn codec.DedicatedConn
		if err == nil {
			conn, err = up.Dedicated(t.cluster, addr, p.recv)
		}
		p.mu.Lock()
		if err == nil && p.closed {
			p.mu.Unlock()
			conn.Close()
			return
		}
		if err == nil {
			p.conn = conn
			for _, m := range p.queue {
				if err = conn.Send(m); err != nil {
					break
				}
			}
			p.queue = nil
		}
		if err != nil {
			after := p.failLocked(err)
			p.mu.Unlock()
			after()
			return
		}
		p.mu.Unlock()
	}()
	return p
}

// send writes req on the connection; cb gets its answer (or an error answer).
func (p *pinned) send(req *codec.Message, cb func(*codec.Message)) {
	p.mu.Lock()
	if p.err != nil || p.closed {
		why := "rosetta: the pinned upstream connection is gone"
		if p.err != nil {
			// The cause, as when the command was waiting: a refused AUTH
			// can end the connection before the first command is sent.
			why = "rosetta: pinned upstream connection: " + p.err.Error()
		}
		p.mu.Unlock()
		cb(errorAnswer(req, codec.StatusUpstreamReset, why))
		return
	}
	p.waiting = append(p.waiting, cb)
	if p.conn == nil {
		p.queue = append(p.queue, req)
		p.mu.Unlock()
		return
	}
	if err := p.conn.Send(req); err != nil {
		after := p.failLocked(err)
		p.mu.Unlock()
		after()
		return
	}
	p.mu.Unlock()
}

// recv pairs the server's answers with the commands in order; the answers to
// the codec's own handshake and out-of-band pushes answer no command.
func (p *pinned) recv(m *codec.Message, err error) {
	p.mu.Lock()
	if err != nil {
		after := p.failLocked(err)
		p.mu.Unlock()
		after()
		return
	}
	if m.Kind != codec.KindResponse || len(p.waiting) == 0 {
		p.mu.Unlock()
		return
	}
	cb := p.waiting[0]
	p.waiting = p.waiting[1:]
	p.mu.Unlock()
	cb(m)
}

// failLocked marks the connection failed, with p.mu held, and returns what
// must run once p.mu is released: the error answers of the waiting commands
// and the close. (Callbacks may take p.mu themselves: closeAfter does.)
func (p *pinned) failLocked(err error) (after func()) {
	if p.err == nil {
		p.err = err
	}
	waiting, conn := p.waiting, p.conn
	p.waiting, p.queue = nil, nil
	return func() {
		for _, cb := range waiting {
			cb(errorAnswer(nil, codec.StatusUpstreamReset, "rosetta: pinned upstream connection: "+err.Error()))
		}
		if conn != nil {
			conn.Close()
		}
	}
}

// close ends the pinned connection; commands still waiting get an error.
func (p *pinned) close(why string) {
	p.mu.Lock()
	after := p.failLocked(errors.New(why))
	p.mu.Unlock()
	after()
}

// closeAfter wraps cb so the connection closes once cb's answer is in.
func (p *pinned) closeAfter(cb func(*codec.Message)) func(*codec.Message) {
	return func(m *codec.Message) {
		cb(m)
		p.mu.Lock()
		conn := p.conn
		p.closed = true
		p.mu.Unlock()
		if conn != nil {
			conn.Close()
		}
	}
}

// target is where a pinned connection goes: a cluster, a destination name
// that the commands of one transaction must share, and the address, found on
// the connection's own goroutine because in cluster mode it may wait for the
// slot map.
type target struct {
	cluster string
	dest    string
	addr    func() (string, error)
}

// pinTarget finds where a command would go, or the error answer.
func (s *session) pinTarget(req *codec.Message, up codec.Upstream) (target, *codec.Message) {
	if s.opt.cluster {
		cluster, _, ok := up.Route(req)
		if !ok {
			return target{}, errorAnswer(req, codec.StatusNoRoute, "rosetta: no route matched the request")
		}
		// The nodes check the slots of a transaction's keys themselves.
		return target{cluster: cluster, dest: cluster, addr: func() (string, error) {
			return clusterOwner(req, up, cluster)
		}}, nil
	}
	// The server the balancer picks for the key: in a pool hashed by key,
	// the one that holds it. Route and cluster come with it, so a weighted
	// route cannot pair one cluster with another's server.
	ch, ok := up.Pick(req)
	if !ok {
		// Only a failure asks why, with a second match.
		cluster, _, routed := up.Route(req)
		if !routed {
			return target{}, errorAnswer(req, codec.StatusNoRoute, "rosetta: no route matched the request")
		}
		return target{}, errorAnswer(req, codec.StatusNoUpstream, "rosetta: no endpoint in cluster "+cluster)
	}
	return target{cluster: ch.Cluster, dest: ch.Route + "\x00" + ch.Cluster + "\x00" + ch.Addr, addr: func() (string, error) { return ch.Addr, nil }}, nil
}

// blocking sends a blocking command on a connection of its own, closed once
// the server answers, so it never holds up other clients' commands.
func (s *session) blocking(req *codec.Message, up codec.Upstream, done reply) {
	t, fail := s.pinTarget(req, up)
	if fail != nil {
		done(fail)
		return
	}
	p := openPinned(up, t)
	s.blocked.add(p)
	p.send(req, p.closeAfter(func(m *codec.Message) {
		s.blocked.remove(p)
		done(m)
	}))
}

// pinnedSet holds the one-shot connections of blocking commands still
// waiting, so Close can end them when the client goes away. Answers arrive
// on other goroutines, hence the lock.
type pinnedSet struct {
	mu  sync.Mutex
	set map[*pinned]struct{}
}

func (ps *pinnedSet) add(p *pinned) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.set == nil {
		ps.set = map[*pinned]struct{}{}
	}
	ps.set[p] = struct{}{}
}

func (ps *pinnedSet) remove(p *pinned) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.set, p)
}

// closeAll ends every connection still waiting.
func (ps *pinnedSet) closeAll(why string) {
	ps.mu.Lock()
	set := ps.set
	ps.set = nil
	ps.mu.Unlock()
	for p := range set {
		p.close(why)
	}
}

// transaction handles WATCH, MULTI, EXEC, DISCARD, UNWATCH and every command
// sent while a transaction is open. The connection is pinned to the
// destination of the transaction's first key; a key that belongs elsewhere
// aborts the transaction, as Redis Cluster does with CROSSSLOT.
func (s *session) transaction(req *codec.Message, cm *command, up codec.Upstream, done reply) {
	switch cm.name {
	case "MULTI":
		if s.multi {
			done(answer(appendError(nil, "ERR MULTI calls can not be nested")))
			return
		}
		s.multi = true
		if s.tx == nil { // pinned with the first command
			done(answer([]byte("+OK\r\n")))
			return
		}
		s.tx.send(req, done)
		return
	case "EXEC", "DISCARD":
		s.finish(req, cm, done)
		return
	case "UNWATCH":
		if !s.multi {
			if s.tx == nil {
				done(answer([]byte("+OK\r\n")))
				return
			}
			tx := s.tx
			s.tx = nil
			tx.send(req, tx.closeAfter(done))
			return
		}
	}
	if s.txAborted {
		done(answer(appendError(nil, "ERR rosetta: command not queued, the transaction is aborted")))
		return
	}
	if cm.spec != nil && cm.spec.flags&flagWhole != 0 {
		if !s.multi { // between WATCH and MULTI: an ordinary command
			s.wholeServer(req, cm, up, done)
			return
		}
		// Queued, it would run on the transaction's server only.
		if !s.oneServerNow(up) {
			s.txAborted = true
			done(answer(appendError(nil, "CROSSSLOT rosetta: "+cm.name+" inside a transaction needs routes that reach one server")))
			return
		}
	}
	if s.tx != nil && cm.firstKey() == 0 {
		s.tx.send(req, done) // a command without keys runs where the transaction does
		return
	}
	t, fail := s.pinTarget(req, up)
	if fail != nil {
		s.abortIfMulti()
		done(fail)
		return
	}
	if s.tx == nil {
		s.tx = openPinned(up, t)
		if s.multi {
			s.tx.send(newRequest([]byte("MULTI")), func(*codec.Message) {})
		}
	}
	if t.dest != s.tx.dest {
		if s.multi {
			s.txAborted = true
			done(answer(appendError(nil, "CROSSSLOT rosetta: keys of one transaction must go to one destination")))
			return
		}
		s.send(req, up, codec.ReplyFunc(done)) // between WATCH and MULTI: an ordinary command
		return
	}
	s.tx.send(req, done)
}

func (s *session) abortIfMulti() {
	if s.multi {
		s.txAborted = true
	}
}

// finish ends a transaction with EXEC or DISCARD.
func (s *session) finish(req *codec.Message, cm *command, done reply) {
	if !s.multi {
		done(answer(appendError(nil, "ERR "+cm.name+" without MULTI")))
		return
	}
	tx, aborted := s.tx, s.txAborted
	s.tx, s.multi, s.txAborted = nil, false, false
	switch {
	case aborted:
		if tx != nil {
			tx.send(newRequest([]byte("DISCARD")), tx.closeAfter(func(*codec.Message) {}))
		}
		if cm.name == "EXEC" {
			done(answer(appendError(nil, "EXECABORT Transaction discarded because of previous errors.")))
		} else {
			done(answer([]byte("+OK\r\n")))
		}
	case tx == nil && cm.name == "EXEC":
		done(answer(appendHeader(nil, typeArray, 0)))
	case tx == nil:
		done(answer([]byte("+OK\r\n")))
	default:
		tx.send(req, tx.closeAfter(done))
	}
}
