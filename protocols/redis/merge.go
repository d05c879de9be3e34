package redis

import (
	"strconv"
	"sync"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// gather collects the answers of one client request sent as several parts
// (a split MGET, a FLUSHALL sent to every server) and answers the client
// once all are in. It holds at most limit bytes of answers: past that the
// client gets an error at once and answers still to come are dropped, so a
// request cannot make the proxy buffer the sum of many servers' largest
// answers (each one is already held to max_frame_bytes).
type gather struct {
	name  string
	limit int
	merge func(parts []*codec.Message) *codec.Message
	done  reply

	mu     sync.Mutex
	parts  []*codec.Message
	left   int
	held   int
	failed bool
}

func newGather(name string, parts, limit int, merge func([]*codec.Message) *codec.Message, done reply) *gather {
	return &gather{name: name, limit: limit, merge: merge, done: done, parts: make([]*codec.Message, parts), left: parts}
}

// add records part i's answer; the last one merges them all.
func (g *gather) add(i int, resp *codec.Message) {
	g.mu.Lock()
	if g.failed {
		g.mu.Unlock()
		return
	}
	g.held += len(resp.Raw)
	if g.held > g.limit {
		g.failed, g.parts = true, nil
		g.mu.Unlock()
		g.done(answer(appendError(nil, "ERR rosetta: the answers to "+g.name+" come to more than "+
			strconv.Itoa(g.limit)+" bytes (max_merged_bytes)")))
		return
	}
	g.parts[i] = resp
	g.left--
	last := g.left == 0
	g.mu.Unlock()
	if last {
		g.done(g.merge(g.parts))
	}
}

// part is the Replier of part i.
func (g *gather) part(i int) codec.Replier {
	return codec.ReplyFunc(func(m *codec.Message) { g.add(i, m) })
}

// firstError is the first part's error answer, nil when all succeeded.
func firstError(parts []*codec.Message) *codec.Message {
	for _, p := range parts {
		if p.Status != codec.StatusOK {
			return p
		}
	}
	return nil
}

// badAnswer is the error for a server answer of the wrong shape.
func badAnswer(name, why string) *codec.Message {
	return answer(appendError(nil, "ERR rosetta: a server answered "+name+" with "+why))
}

// elements walks the elements of an array answer as raw bytes, parsing none
// of them, so merging costs no memory per element.
type elements struct {
	s    scanner
	pos  int
	left int
}

func arrayElements(raw []byte) (*elements, bool) {
	if len(raw) == 0 || raw[0] != typeArray {
		return nil, false
	}
	n, p, err := header(raw, 0)
	if err != nil || n < 0 {
		return nil, false
	}
	return &elements{s: scanner{buf: raw, maxFrame: len(raw)}, pos: p, left: int(n)}, true
}

// next returns the next element's bytes; false past the last or on bytes
// that are not one (the frame was accepted whole, so only a bug gives that).
func (e *elements) next() ([]byte, bool) {
	if e.left == 0 {
		return nil, false
	}
	r, err := e.s.value(e.pos, 1)
	if err != nil || r.need > 0 {
		return nil, false
	}
	v := e.s.buf[e.pos:r.end]
	e.pos, e.left = r.end, e.left-1
	return v, true
}

// integer reads an integer answer.
func integer(raw []byte) (int64, bool) {
	if len(raw) < 4 || raw[0] != typeInteger {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw[1:len(raw)-2]), 10, 64)
	return n, err == nil
}

// sumCounts adds the parts' integer answers (DEL, EXISTS, DBSIZE, ...).
func sumCounts(name string, parts []*codec.Message) *codec.Message {
	if e := firstError(parts); e != nil {
		return e
	}
	var total int64
	for _, p := range parts {
		n, ok := integer(p.Raw)
		if !ok {
			return badAnswer(name, "something other than an integer")
		}
		total += n
	}
	return answer(appendInt(nil, total))
}

// heldBytes is the size of the parts' answers together: what a merge of
// them may need.
func heldBytes(parts []*codec.Message) int {
	n := 0
	for _, p := range parts {
		n += len(p.Raw)
	}
	return n
}
