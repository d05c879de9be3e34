package redis

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// Pub/sub through the proxy.
//
// A client's first (P|S)SUBSCRIBE opens a dedicated connection (a
// subscription) to the server its first channel's route picks. Every frame
// the server sends on it goes to the client with codec.Upstream.Push, in the
// server's order, by one goroutine per subscription (the pump).
//
// Push writes at once, outside the order of answers, so ordering rests on
// three rules:
//
//  1. The subscribing command's own answer slot gets an empty answer whose
//     Written opens the pump. The proxy queues answers in request order, so
//     by then every earlier answer has been written; nothing is pushed before.
//  2. In RESP2 subscribe mode every command goes on the subscription and its
//     answer slot is filled with "no answer" at once: the server answers it
//     (or refuses it with its own error) in the stream. No slot ever waits
//     behind a push.
//  3. The command that ends the subscription (the last UNSUBSCRIBE, QUIT,
//     RESET) keeps its slot open until the stream has ended (the proxy sends
//     QUIT after it and waits for the +OK): answers to the commands that
//     follow it, routed as usual, wait behind that slot.
//
// When the client goes away the proxy calls the codec's Close, which ends the
// subscription. As a second guard, a subscription also notices when a push
// is not written (the proxy calls no Written for a closed connection), on
// every frame and every probeInterval when idle, and then closes.

// probeInterval is how often an idle subscription checks that its client is
// still connected.
var probeInterval = 5 * time.Second

// pubsubBacklog bounds the frames waiting between the server and the client;
// past it the subscription stops reading and the server buffers (and applies
// its client-output-buffer-limit for pubsub).
const pubsubBacklog = 1024

// writeMark records that the proxy queued a message for the client: a
// message the handler must know was written has Written set to the mark's
// wrote (codec.Message.Written).
type writeMark struct {
	written atomic.Bool
	ch      chan struct{} // closed at the first write, when not nil
	once    sync.Once
}

func (w *writeMark) wrote() {
	w.written.Store(true)
	if w.ch != nil {
		w.once.Do(func() { close(w.ch) })
	}
}

// subscription is a client's dedicated connection for pub/sub.
type subscription struct {
	up     codec.Upstream
	resp3  atomic.Bool         // the client speaks RESP3: arrays go out as pushes
	frames chan *codec.Message // server to pump; closed when the stream ends
	stop   chan struct{}       // closed when the pump is done
	opened writeMark           // the subscribing command's answer was written
	probe  writeMark           // the last push was written
	probed func()              // probe.wrote, made once
	dead   atomic.Bool         // the stream ended: the session forgets it
	quit   *codec.Message      // the QUIT that ends the stream
	first  *codec.Message      // the subscribing command
	firstR reply               // its answer slot
	target target              // where the connection goes
	stopMu sync.Once           // closes stop

	mu       sync.Mutex
	conn     codec.DedicatedConn
	queue    []*codec.Message // sent before the connection is up
	quitSent bool
	ended    bool // the stream's end was signalled
	endErr   error
	finished bool     // the pump is done
	leave    *leaving // the command that ends the subscription
}

// leaving is the answer slot of the command that ends a subscription, held
// until the stream has ended.
type leaving struct {
	done   reply
	answer *codec.Message // nil: the server's frames were the answer
}

// openSubscription dials on its own goroutine and sends first; done is
// first's answer slot.
func openSubscription(up codec.Upstream, t target, resp3 bool, first *codec.Message, done reply) *subscription {
	ps := &subscription{up: up, frames: make(chan *codec.Message, pubsubBacklog), stop: make(chan struct{}),
		quit: newRequest([]byte("QUIT")), first: first, firstR: done, target: t}
	ps.opened.ch = make(chan struct{})
	ps.probed = ps.probe.wrote
	ps.resp3.Store(resp3)
	ps.queue = []*codec.Message{first}
	go ps.dial()
	go ps.pump()
	return ps
}

func (ps *subscription) dial() {
	addr, err := ps.target.addr()
	var conn codec.DedicatedConn
	if err == nil {
		conn, err = ps.up.Dedicated(ps.target.cluster, addr, ps.recv)
	}
	ps.mu.Lock()
	if err != nil {
		ps.endLocked(err)
		ps.mu.Unlock()
		fail := errorAnswer(ps.first, codec.StatusNoUpstream, "rosetta: subscription upstream: "+err.Error())
		fail.Written = ps.opened.wrote // the pump still opens, to end
		ps.firstR(fail)
		return
	}
	if ps.finished { // the client left while we dialled
		ps.mu.Unlock()
		conn.Close()
		ps.firstR(nil)
		return
	}
	ps.conn = conn
	for _, m := range ps.queue {
		if err := conn.Send(m); err != nil {
			conn.Close() // the reader ends the stream
			break
		}
	}
	ps.queue = nil
	ps.mu.Unlock()
	ps.firstR(&codec.Message{Kind: codec.KindResponse, Attrs: codec.None, Written: ps.opened.wrote})
}

// send writes req on the subscription; false when the stream has ended.
func (ps *subscription) send(req *codec.Message) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.ended || ps.finished {
		return false
	}
	ps.sendLocked(req)
	return true
}

func (ps *subscription) sendLocked(req *codec.Message) {
	if ps.conn == nil {
		ps.queue = append(ps.queue, req)
		return
	}
	if err := ps.conn.Send(req); err != nil {
		ps.conn.Close() // the reader ends the stream
	}
}

// leaveWith ends the subscription: QUIT goes after what was sent, and done
// gets answer once the stream has ended and every frame was pushed.
func (ps *subscription) leaveWith(done reply, answer *codec.Message) {
	ps.mu.Lock()
	if ps.finished {
		ps.mu.Unlock()
		done(answer)
		return
	}
	ps.leave = &leaving{done: done, answer: answer}
	if !ps.ended {
		ps.quitSent = true
		ps.sendLocked(ps.quit)
	}
	ps.mu.Unlock()
}

// recv runs on the connection's reader goroutine: frames go to the pump in
// order; the +OK to the proxy's QUIT, or an error, ends the stream.
func (ps *subscription) recv(m *codec.Message, err error) {
	ps.mu.Lock()
	if ps.ended {
		ps.mu.Unlock()
		return
	}
	if err == nil {
		if _, ok := m.Private.(handshakeAnswer); ok {
			ps.mu.Unlock()
			return
		}
		if !ps.quitSent || string(m.Raw) != "+OK\r\n" {
			ps.mu.Unlock()
			select {
			case ps.frames <- m:
			case <-ps.stop:
			}
			return
		}
	}
	ps.endLocked(err)
	ps.mu.Unlock()
}

// endLocked signals the end of the stream (err nil: the QUIT's answer).
func (ps *subscription) endLocked(err error) {
	ps.ended, ps.endErr = true, err
	ps.dead.Store(true)
	close(ps.frames)
}

// pump pushes the server's frames to the client once the subscribing
// command's answer is written, and checks the client is still there.
func (ps *subscription) pump() {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	opened := ps.opened.ch
	for {
		var frames chan *codec.Message
		if opened == nil {
			frames = ps.frames
		}
		select {
		case <-opened:
			opened = nil
		case m, ok := <-frames:
			if !ok {
				ps.finish()
				return
			}
			if !ps.push(m) {
				ps.abandon()
				return
			}
		case <-tick.C:
			if !ps.push(&codec.Message{Kind: codec.KindOneway, Attrs: codec.None}) {
				ps.abandon()
				return
			}
		}
	}
}

// push writes m to the client; false when the client's connection is gone.
// Push queues m at once or never (codec.Upstream.Push), so Written has run
// by the time it returns when m was written.
func (ps *subscription) push(m *codec.Message) bool {
	if ps.resp3.Load() && len(m.Raw) > 0 && m.Raw[0] == typeArray {
		m.Raw[0] = typePush // the frame is the message's own
	}
	ps.probe.written.Store(false)
	m.Written = ps.probed
	ps.up.Push(m)
	return ps.probe.written.Load()
}

// finish runs when the stream ended and every frame was pushed.
func (ps *subscription) finish() {
	ps.mu.Lock()
	ps.finished = true
	l, err, quit, conn := ps.leave, ps.endErr, ps.quitSent, ps.conn
	ps.mu.Unlock()
	ps.stopMu.Do(func() { close(ps.stop) })
	if conn != nil {
		conn.Close()
	}
	if err != nil && !quit && !ps.resp3.Load() {
		// A RESP2 subscriber waits for nothing but pushes: tell it. A
		// RESP3 one would take an error for the answer to its next
		// command, so it is told nothing.
		ps.push(errorAnswer(nil, codec.StatusUpstreamReset, "rosetta: the subscription's upstream connection closed: "+err.Error()))
	}
	if l != nil {
		l.done(l.answer)
	}
}

// abandon closes the subscription of a client that went away.
func (ps *subscription) abandon() {
	ps.mu.Lock()
	ps.finished = true
	l, conn := ps.leave, ps.conn
	ps.mu.Unlock()
	ps.dead.Store(true)
	ps.stopMu.Do(func() { close(ps.stop) })
	if conn != nil {
		conn.Close()
	}
	if l != nil {
		l.done(nil)
	}
}

// subs is what a client is subscribed to, as the proxy predicts it from the
// commands it forwards: the server's counts arrive too late to route the
// command that follows the last UNSUBSCRIBE.
type subs struct{ channels, patterns, shards map[string]struct{} }

func (m *subs) apply(cm *command) {
	var set *map[string]struct{}
	add := !strings.Contains(cm.name, "UNSUB")
	switch cm.name {
	case "SUBSCRIBE", "UNSUBSCRIBE":
		set = &m.channels
	case "PSUBSCRIBE", "PUNSUBSCRIBE":
		set = &m.patterns
	case "SSUBSCRIBE", "SUNSUBSCRIBE":
		set = &m.shards
	default:
		return
	}
	switch {
	case add:
		if *set == nil {
			*set = map[string]struct{}{}
		}
		for _, a := range cm.args[1:] {
			(*set)[string(a)] = struct{}{}
		}
	case len(cm.args) == 1:
		*set = nil
	default:
		for _, a := range cm.args[1:] {
			delete(*set, string(a))
		}
	}
}

func (m *subs) count() int { return len(m.channels) + len(m.patterns) + len(m.shards) }

// pubsub handles (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE outside RESP2
// subscribe mode: the first subscription opens the connection; with one
// open, they go on it.
func (s *session) pubsub(req *codec.Message, cm *command, up codec.Upstream, done reply) {
	if s.tx != nil || s.multi {
		s.abortIfMulti()
		done(answer(appendError(nil, "ERR rosetta: "+cm.name+" inside a transaction is not supported through the proxy")))
		return
	}
	subscribe := !strings.Contains(cm.name, "UNSUB")
	if subscribe && len(cm.args) < 2 {
		done(answer(wrongArgs(strings.ToLower(cm.name))))
		return
	}
	if s.ps == nil {
		if !subscribe {
			done(answer(s.notSubscribed(cm)))
			return
		}
		t, fail := s.pinTarget(req, up)
		if fail != nil {
			done(fail)
			return
		}
		s.subs.apply(cm)
		s.ps = openSubscription(up, t, s.resp3, req, done)
		return
	}
	s.forward(req, cm, done)
}

// forward sends a command on the open subscription; the server's answer
// comes back as pushes.
func (s *session) forward(req *codec.Message, cm *command, done reply) {
	if !s.ps.send(req) {
		s.dropSubscription()
		done(errorAnswer(req, codec.StatusUpstreamReset, "rosetta: the subscription's upstream connection is gone"))
		return
	}
	s.subs.apply(cm)
	if s.subs.count() == 0 {
		s.leaveSubscription(done, nil)
		return
	}
	done(nil)
}

// subscribed handles every command of a RESP2 client in subscribe mode: the
// server itself refuses the ones subscribe mode does not allow, in order.
func (s *session) subscribed(req *codec.Message, cm *command, done reply) {
	switch cm.name {
	case "QUIT":
		s.leaveSubscription(done, answer([]byte("+OK\r\n")))
	case "RESET":
		s.reset(done)
	default:
		s.forward(req, cm, done)
	}
}

// leaveSubscription ends the open subscription; done gets answer after the
// server's last frame.
func (s *session) leaveSubscription(done reply, answer *codec.Message) {
	ps := s.ps
	s.dropSubscription()
	ps.leaveWith(done, answer)
}

func (s *session) dropSubscription() {
	s.ps = nil
	s.subs = subs{}
}

// notSubscribed is Redis's answer to an UNSUBSCRIBE without subscriptions:
// one confirmation per name (a null name when none is given), count 0.
func (s *session) notSubscribed(cm *command) []byte {
	kind := strings.ToLower(cm.name)
	t := byte(typeArray)
	if s.resp3 {
		t = typePush
	}
	names := cm.args[1:]
	if len(names) == 0 {
		names = [][]byte{nil}
	}
	var out []byte
	for _, n := range names {
		out = appendHeader(out, t, 3)
		out = appendBulkString(out, kind)
		if n == nil {
			out = appendNull(out, s.resp3)
		} else {
			out = appendBulk(out, n)
		}
		out = appendInt(out, 0)
	}
	return out
}

// reset answers RESET: the transaction and the subscription end, and the
// connection is back to RESP2, unauthenticated (when a password is set),
// without a name.
func (s *session) reset(done reply) {
	if tx := s.tx; tx != nil {
		tx.send(newRequest([]byte("DISCARD")), tx.closeAfter(func(*codec.Message) {}))
	}
	s.tx, s.multi, s.txAborted = nil, false, false
	s.resp3, s.authed, s.name = false, s.opt.password == "", nil
	ok := answer([]byte("+RESET\r\n"))
	if s.ps != nil {
		s.leaveSubscription(done, ok)
		return
	}
	done(ok)
}
