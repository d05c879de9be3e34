package upstream

import "github.com/rosetta-mesh/rosetta/internal/queue"

// inflight pairs responses with the requests waiting for them on one
// connection. Callers hold the connection's lock.
type inflight interface {
	// nextID returns the ID a request goes upstream with.
	nextID(orig uint64) uint64
	add(id uint64, r Request)
	// take returns the request a response with id answers; last says the
	// request is finished and is forgotten.
	take(id uint64, last bool) Request
	cancel(id uint64) bool
	drain() []Request
}

// maxID keeps rewritten IDs positive in every protocol's id field (Thrift's
// seqid and tRPC's request id are 32-bit signed or unsigned).
const maxID = 1<<31 - 1

// byID pairs by request ID; IDs are rewritten to be unique on the connection.
type byID struct {
	m    map[uint64]Request
	next uint64
}

func (b *byID) nextID(uint64) uint64 {
	for {
		b.next++
		if b.next > maxID {
			b.next = 1
		}
		if _, busy := b.m[b.next]; !busy {
			return b.next
		}
	}
}

func (b *byID) add(id uint64, r Request) { b.m[id] = r }

func (b *byID) take(id uint64, last bool) Request {
	r := b.m[id]
	if last {
		delete(b.m, id)
	}
	return r
}

func (b *byID) cancel(id uint64) bool {
	_, ok := b.m[id]
	delete(b.m, id)
	return ok
}

func (b *byID) drain() []Request {
	out := make([]Request, 0, len(b.m))
	for id, r := range b.m {
		out = append(out, r)
		delete(b.m, id)
	}
	return out
}

// fifo pairs responses in the order the requests went out. A cancelled
// request keeps its place (its response still arrives) but is answered to no
// one.
type fifo struct {
	q    queue.Queue[fifoEntry]
	next uint64
}

type fifoEntry struct {
	id uint64
	r  Request
}

func (f *fifo) nextID(uint64) uint64 { f.next++; return f.next }

func (f *fifo) add(id uint64, r Request) { f.q.Push(fifoEntry{id, r}) }

func (f *fifo) take(uint64, bool) Request {
	if f.q.Len() == 0 {
		return nil
	}
	return f.q.Pop().r
}

func (f *fifo) cancel(id uint64) bool {
	for i := range f.q.Len() {
		if e := f.q.At(i); e.id == id && e.r != nil {
			e.r = nil
			return true
		}
	}
	return false
}

func (f *fifo) drain() []Request {
	var out []Request
	for f.q.Len() > 0 {
		if e := f.q.Pop(); e.r != nil {
			out = append(out, e.r)
		}
	}
	return out
}
