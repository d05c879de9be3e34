package redis

import (
	"errors"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// FuzzHandle drives the request handler with a client's commands and
// servers' answers from the fuzzer, in proxy and cluster mode: routing,
// splitting and merging, transactions, blocking commands, subscriptions and
// cluster redirections all read bytes a peer chose. Whatever they are, the
// handler must not panic, and every request must be answered exactly once
// once the servers have nothing more to say. The seeds are the recorded
// go-redis sessions in testdata.
func FuzzHandle(f *testing.F) {
	for _, name := range sessions {
		reqs, answers := capture(f, name)
		for mode := range uint8(16) {
			f.Add(reqs, answers, mode)
		}
	}
	f.Fuzz(func(t *testing.T, reqs, answers []byte, mode uint8) {
		// A handler that deadlocks would hang the fuzzer silently.
		watchdog := time.AfterFunc(20*time.Second, func() {
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
			panic("FuzzHandle: a run hangs")
		})
		defer watchdog.Stop()
		opts := codec.Options{}
		if mode&1 != 0 {
			opts[OptMode] = "cluster"
			if mode&4 != 0 {
				opts[OptReadPolicy] = "prefer_replica"
			}
		}
		if mode&2 != 0 {
			opts[OptPassword] = "pw"
		}
		c := newCodec(t, opts, codec.PeerClient)
		up := newFuzzUpstream(answers)
		h := &handleRun{t: t, c: c, up: up}
		h.feed(reqs, mode&8 != 0)
		h.awaitAnswers()
		c.Close()
		up.drain()
	})
}

// handleRun is one client connection of FuzzHandle.
type handleRun struct {
	t       *testing.T
	c       *redisCodec
	up      *fuzzUpstream
	answers []*atomic.Int32 // how often each request was answered
}

// feed hands every whole request in reqs to Handle, as the proxy does, and
// stops at the first malformed one (the proxy closes the connection there).
// With eager, the servers answer between two requests; else after the last.
func (h *handleRun) feed(reqs []byte, eager bool) {
	for len(reqs) > 0 {
		sp, err := h.c.Split(reqs)
		if err != nil || sp.Len == 0 {
			return
		}
		m, err := h.c.Decode(reqs[:sp.Len])
		reqs = reqs[sp.Len:]
		if err != nil {
			return
		}
		n := &atomic.Int32{}
		i := len(h.answers)
		h.answers = append(h.answers, n)
		h.c.Handle(m, h.up, codec.ReplyFunc(func(*codec.Message) {
			if n.Add(1) > 1 {
				h.t.Errorf("request %d answered twice", i)
			}
		}))
		if eager {
			h.up.drain()
		}
	}
}

// awaitAnswers runs the servers' side until every request has its answer.
// Pinned connections open on goroutines of their own, so it waits for them,
// within a bound far above what the work takes.
func (h *handleRun) awaitAnswers() {
	testutil.Eventually(h.t, 5*time.Second, "every request's answer", func() bool {
		h.up.drain()
		return h.allAnswered()
	})
}

func (h *handleRun) allAnswered() bool {
	for _, n := range h.answers {
		if n.Load() == 0 {
			return false
		}
	}
	return true
}

// fuzzUpstream is codec.Upstream over a list of answers: each request sent
// takes the next one, and once they run out, requests fail and dedicated
// connections end, as when the servers go away. Answers are given later, by
// drain, never inside the call that sends, since a real server's answer
// comes from another goroutine after the send returns.
type fuzzUpstream struct {
	mu      sync.Mutex
	answers []byte
	dec     *redisCodec
	later   []func()
	state   map[clusterStateKey]any // ClusterState's, for one fuzz input
}

type clusterStateKey struct {
	cluster string
	key     any
}

func newFuzzUpstream(answers []byte) *fuzzUpstream {
	dec, _ := New(nil, codec.PeerServer)
	return &fuzzUpstream{answers: answers, dec: dec.(*redisCodec), state: map[clusterStateKey]any{}}
}

var errServerGone = errors.New("fuzz: the server has nothing more to say")

// next is the next answer, or nil once there is none that decodes.
func (u *fuzzUpstream) next() *codec.Message {
	u.mu.Lock()
	defer u.mu.Unlock()
	sp, err := u.dec.Split(u.answers)
	if err != nil || sp.Len == 0 {
		u.answers = nil
		return nil
	}
	m, err := u.dec.Decode(u.answers[:sp.Len])
	u.answers = u.answers[sp.Len:]
	if err != nil {
		u.answers = nil
		return nil
	}
	return m
}

func (u *fuzzUpstream) schedule(fn func()) {
	u.mu.Lock()
	u.later = append(u.later, fn)
	u.mu.Unlock()
}

// drain runs the answers due, and those they cause, until none is left.
func (u *fuzzUpstream) drain() {
	for {
		u.mu.Lock()
		if len(u.later) == 0 {
			u.mu.Unlock()
			return
		}
		fn := u.later[0]
		u.later = u.later[1:]
		u.mu.Unlock()
		fn()
	}
}

func (u *fuzzUpstream) answer(done codec.Done) {
	u.schedule(func() {
		if m := u.next(); m != nil {
			done(m, codec.StatusOK, "")
			return
		}
		done(nil, codec.StatusUpstreamReset, errServerGone.Error())
	})
}

func (u *fuzzUpstream) Forward(_ *codec.Message, done codec.Done) { u.answer(done) }

func (u *fuzzUpstream) SendTo(_, _ string, _ *codec.Message, done codec.Done) { u.answer(done) }

func (u *fuzzUpstream) Route(*codec.Message) (string, string, bool) { return "redis", "all", true }

func (u *fuzzUpstream) Pick(*codec.Message) (codec.Choice, bool) {
	return codec.Choice{Route: "all", Cluster: "redis", Addr: "127.0.0.1:7000"}, true
}

func (u *fuzzUpstream) Endpoints(string) []string {
	return []string{"127.0.0.1:7000", "127.0.0.1:7001"}
}

// ClusterState implements codec.Upstream: state is kept per cluster, as
// the proxy keeps it, for one fuzz input (one upstream), so a slot map
// loaded for one request serves the next, and no run sees another's.
func (u *fuzzUpstream) ClusterState(cluster string, key any, init func() any) any {
	u.mu.Lock()
	defer u.mu.Unlock()
	k := clusterStateKey{cluster, key}
	v, ok := u.state[k]
	if !ok {
		v = init()
		u.state[k] = v
	}
	return v
}

func (u *fuzzUpstream) Push(*codec.Message) {}

func (u *fuzzUpstream) Dedicated(_, _ string, recv func(*codec.Message, error)) (codec.DedicatedConn, error) {
	return &fuzzDedicated{up: u, recv: recv}, nil
}

// fuzzDedicated answers each command with the next answer (and the pushes
// before it); it ends, with
// one last call of recv, when the answers run out or it is closed.
type fuzzDedicated struct {
	up    *fuzzUpstream
	recv  func(*codec.Message, error)
	ended atomic.Bool
}

func (d *fuzzDedicated) Send(*codec.Message) error {
	if d.ended.Load() {
		return errServerGone
	}
	d.up.schedule(func() {
		if d.ended.Load() {
			return
		}
		// Pushes come on top of answers, as a server sends them.
		for m := d.up.next(); m != nil; m = d.up.next() {
			d.recv(m, nil)
			if m.Kind == codec.KindResponse {
				return
			}
		}
		d.end(errServerGone)
	})
	return nil
}

func (d *fuzzDedicated) Close() { d.up.schedule(func() { d.end(errors.New("fuzz: closed")) }) }

func (d *fuzzDedicated) end(err error) {
	if d.ended.CompareAndSwap(false, true) {
		d.recv(nil, err)
	}
}
