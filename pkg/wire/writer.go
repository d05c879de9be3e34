package wire

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/sysio"
	"github.com/rosetta-mesh/rosetta/pkg/codec"
)

// ErrWriteBacklog: more bytes are queued for a peer than the limit allows.
var ErrWriteBacklog = errors.New("wire: too much queued for a peer that does not read")

// errWouldBlock: the peer's receive window is full.
var errWouldBlock = errors.New("wire: write would block")

// Writer combines writes to a connection from many goroutines without a
// goroutine of its own: a caller queues its frame under the lock, and the
// caller that finds no write in progress writes everything queued, including
// what others queue meanwhile. One request thus costs no goroutine handoff,
// and a burst shares system calls.
//
// Callers hold the lock (Lock) while they queue (AppendLocked,
// EncodeLocked), and release it with Unlock, which writes when it is their
// turn. On a socket the first attempt does not wait: when the peer's window
// is full the rest of the flush goes on in a goroutine of its own, so a
// caller (an event loop above all) never waits for a slow peer, and the
// common write needs no deadline.
type Writer struct {
	mu       sync.Mutex
	nc       net.Conn
	rc       syscall.RawConn // nc's, when it is a socket
	opt      Options
	flushing bool
	closed   bool
	held     bool // a Batch holds the writes until it flushes
	buf      []byte
	spare    []byte
	try      tryState
	tryFn    func(fd uintptr) bool
	// yield lets other writers queue before a flush (Options.Server,
	// unless an event loop reads the connection).
	yield bool
	// wouldWait tells whether writing n bytes now would hold up the
	// caller although the peer's window is not known to be full (see
	// Reading.WouldWait).
	wouldWait func(n int) bool
	// closedHook is Reading.Closed.
	closedHook func()
	// reader is the batch of the event loop that reads this connection,
	// when one does: only that loop is woken by the answers
	// Options.Awaiting waits for.
	reader *Batch
}

// Options say how a Writer behaves; they are fixed when it is made.
type Options struct {
	// Timeout bounds how long one write may wait for the peer.
	Timeout time.Duration
	// Max bounds the bytes queued for the peer: past it the writer fails
	// with ErrWriteBacklog.
	Max int
	// Failed, when set, is called once, without the lock, when a write
	// fails or the backlog passes Max; the connection is closed by then.
	Failed func(error)
	// Idle, when set, is asked with the lock held each time the queue has
	// been written out; true closes the connection (a caller's connection
	// that drains closes once its last answer is out).
	Idle func() bool
	// Server marks a connection to a server that many callers share.
	// Writers let each other queue before a flush (unless an event loop
	// reads the connection: the loop writes once per round already), and
	// a Batch keeps it held across FlushEager, so each write carries more
	// requests.
	Server bool
	// Awaiting, on a Server writer to a server that answers in order, is
	// asked with the lock held whether answers are still due to requests
	// already written; Batch.FlushIdle then keeps what was queued since.
	// A request sent before those answers are out would only wait in the
	// server's socket; held, it goes with the requests that follow, and
	// the server reads them all at once.
	Awaiting func() bool
}

// NewWriter writes to nc, which may be nil until SetConn.
func NewWriter(nc net.Conn, o Options) *Writer {
	w := &Writer{opt: o, yield: o.Server}
	w.setConn(nc)
	return w
}

// Reading is what the reader of a writer's connection tells the writer
// (Writer.ReadBy).
type Reading struct {
	// Round, when set, is the batch of the event loop that reads the
	// connection: answers to a Server writer's requests wake that loop,
	// so only its FlushIdle keeps the writer held for them.
	Round *Batch
	// Closed is called once, with the lock held, when the connection is
	// closed for any reason; it must not use the writer. It tells the
	// reader to stop.
	Closed func()
	// WouldWait, when set, replaces the connection's own: it tells whether
	// writing n bytes now would hold up the caller although the peer's
	// window is not known to be full. A TLS connection encrypts on the
	// writing goroutine, so a large write, or any while the peer is still
	// taking an earlier one, goes on in a goroutine of its own.
	WouldWait func(n int) bool
}

// ReadBy records who reads w's connection, once reading starts. It
// reports false when w is closed already: r.Closed will not run, and the
// reader stops at once.
func (w *Writer) ReadBy(r Reading) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closedHook, w.reader = r.Closed, r.Round
	if r.WouldWait != nil {
		w.wouldWait = r.WouldWait
	}
	if r.Round != nil {
		w.yield = false
	}
	return !w.closed
}

// ToServer reports whether w writes to a server (Options.Server).
func (w *Writer) ToServer() bool { return w.opt.Server }

func (w *Writer) setConn(nc net.Conn) {
	w.nc = nc
	if sc, ok := nc.(syscall.Conn); ok {
		w.rc, _ = sc.SyscallConn()
		w.tryFn = w.writeFD
	}
	// An HBONE stream: a write that would wait for the caller goes on a
	// goroutine of its own, as one to a full socket does.
	if ww, ok := nc.(interface{ WouldWait(int) bool }); ok && w.wouldWait == nil {
		w.wouldWait = ww.WouldWait
	}
}

// AppendLocked queues b; the lock is held.
func (w *Writer) AppendLocked(b []byte) { w.buf = append(w.buf, b...) }

// EncodeLocked queues m as c encodes it; the lock is held. On an error
// nothing is queued.
func (w *Writer) EncodeLocked(c codec.Codec, m *codec.Message) error {
	out, err := c.Encode(w.buf, m)
	if err != nil {
		return err
	}
	w.buf = out
	return nil
}

// QueuedLocked is how many bytes wait to be written; the lock is held.
func (w *Writer) QueuedLocked() int { return len(w.buf) }

// Lock takes the queue.
func (w *Writer) Lock() { w.mu.Lock() }

// Closed reports whether the writer is closed; call it with the lock held.
func (w *Writer) Closed() bool { return w.closed }

// Unlock releases the queue and, unless another caller is writing, writes
// everything queued.
func (w *Writer) Unlock() {
	if w.closed || w.nc == nil {
		w.mu.Unlock()
		return
	}
	// Checked while a write is under way too: that is when a peer that
	// does not read makes the queue grow.
	if len(w.buf) > w.opt.Max {
		w.fail(ErrWriteBacklog)
		return
	}
	if w.flushing || w.held {
		w.mu.Unlock()
		return
	}
	w.flushing = true
	if w.yield {
		// Let other goroutines that are about to write here append first:
		// one system call then carries all of them.
		w.mu.Unlock()
		runtime.Gosched()
		w.mu.Lock()
	}
	w.drain(false)
}

// drain writes everything queued; the lock is held on entry and released on
// return. Unless blocking, a write that would wait for the peer is finished
// by a goroutine of its own, which keeps the queue meanwhile.
func (w *Writer) drain(blocking bool) {
	for len(w.buf) > 0 {
		out := w.buf
		w.buf = w.spare[:0]
		w.mu.Unlock()
		if !blocking && w.wouldWait != nil && w.wouldWait(len(out)) {
			go w.finish(out, 0)
			return
		}
		n, err := w.write(out, blocking)
		if err == errWouldBlock {
			go w.finish(out, n)
			return
		}
		if !w.wrote(out, err) {
			return
		}
	}
	w.flushing = false
	if w.opt.Idle != nil && !w.closed && w.opt.Idle() {
		w.closeLocked()
	}
	w.mu.Unlock()
}

// finish writes out[n:], waiting for the peer, then the rest of the queue.
func (w *Writer) finish(out []byte, n int) {
	_, err := w.write(out[n:], true)
	if w.wrote(out, err) {
		w.drain(true)
	}
}

// wrote retakes the lock after out went out (or failed with err) and keeps
// out's memory for the next queue. On an error it fails the writer, which
// releases the lock, and reports false.
func (w *Writer) wrote(out []byte, err error) bool {
	w.mu.Lock()
	w.spare = out[:0]
	if err != nil {
		w.flushing = false
		w.fail(err)
		return false
	}
	return true
}

// write writes b; unless blocking, on a socket it stops when the peer's
// window is full and reports how much went out with errWouldBlock.
func (w *Writer) write(b []byte, blocking bool) (int, error) {
	if !blocking && w.rc != nil {
		return w.tryWrite(b)
	}
	if w.opt.Timeout <= 0 {
		return w.nc.Write(b)
	}
	_ = w.nc.SetWriteDeadline(time.Now().Add(w.opt.Timeout))
	n, err := w.nc.Write(b)
	// A deadline left behind would fail the next non-waiting write once
	// it passed.
	_ = w.nc.SetWriteDeadline(time.Time{})
	return n, err
}

func (w *Writer) tryWrite(b []byte) (int, error) {
	w.try = tryState{b: b}
	cerr := w.rc.Write(w.tryFn)
	n, err := w.try.n, w.try.err
	w.try = tryState{}
	switch {
	case cerr != nil:
		return n, cerr
	case err == syscall.EAGAIN:
		return n, errWouldBlock
	case err != nil:
		return n, err
	}
	return n, nil
}

// tryState is one tryWrite's buffer and outcome. Only the flushing caller
// uses it, and through a function made once per connection: a closure per
// write would cost allocations per write.
type tryState struct {
	b   []byte
	n   int
	err error
}

func (w *Writer) writeFD(fd uintptr) bool {
	t := &w.try
	for t.n < len(t.b) {
		k, err := sysio.Write(int(fd), t.b[t.n:])
		if k > 0 {
			t.n += k
		}
		t.err = err
		if err != nil && err != syscall.EINTR {
			break
		}
	}
	return true // never wait here
}

// fail closes the writer and reports err; the lock is held on entry and
// released on return.
func (w *Writer) fail(err error) {
	first := !w.closed
	w.closeLocked()
	w.mu.Unlock()
	if first && w.opt.Failed != nil {
		w.opt.Failed(err)
	}
}

// SetConn sets the connection once it is dialled; queued bytes go out with
// the next Unlock.
func (w *Writer) SetConn(nc net.Conn) {
	w.mu.Lock()
	w.setConn(nc)
	w.Unlock()
}

// Close closes the connection; what is queued is dropped.
func (w *Writer) Close() {
	w.mu.Lock()
	w.closeLocked()
	w.mu.Unlock()
}

// CloseLocked is Close for a caller that holds the lock.
func (w *Writer) CloseLocked() { w.closeLocked() }

func (w *Writer) closeLocked() {
	if w.closed {
		return
	}
	w.closed = true
	w.buf = nil
	if w.nc != nil {
		w.nc.Close()
	}
	if w.closedHook != nil {
		w.closedHook()
	}
}

// Batch defers the writes of the writers a goroutine touches while it still
// has input to work through: a reader that holds a whole pipeline of frames
// in its buffer writes their answers in one system call per writer, not one
// per frame. The goroutine that owns the batch opens it before it handles a
// frame and flushes it before it blocks; a hold offered while the batch is
// closed (by a callback that runs late, on another goroutine) is refused, so
// no write ever waits on a reader that is blocked.
type Batch struct {
	mu   sync.Mutex
	open bool
	ws   []*Writer
	// opened is open as its owner last set it, read without the lock: the
	// owner alone opens and closes the batch, and opens it once per frame.
	opened bool
	// loop marks an event loop's round batch; set before the loop runs.
	loop bool
	// now is when the owner's current round of input was read, in
	// nanoseconds after epoch, or 0: an event loop reads the clock once
	// per round instead of once per request and answer, as Envoy's
	// dispatchers do. Atomic, because a late callback may ask.
	now atomic.Int64
	// out is the slice a flush works through, kept so that flushes
	// allocate nothing once warm; only the batch's owner flushes.
	out []*Writer
	// answered counts the writers other than Server ones (clients) that
	// flushes have written out since TakeAnswered; only the owner flushes.
	answered int
}

// epoch is what Batch times count from; it carries Go's monotonic clock, so
// durations between them are monotonic too.
var epoch = time.Now()

// SetNow records when the owner's current round of input was read; Flush
// forgets it.
func (b *Batch) SetNow(t time.Time) { b.now.Store(int64(t.Sub(epoch))) }

// Now is the time of the owner's current round of input when it set one,
// else the clock's. A nil batch reads the clock.
func (b *Batch) Now() time.Time {
	if b != nil {
		if n := b.now.Load(); n != 0 {
			return epoch.Add(time.Duration(n))
		}
	}
	return time.Now()
}

// SetLoop marks b as the round batch of an event loop (see netloop), before
// the loop runs.
func (b *Batch) SetLoop() { b.loop = true }

// Loop reports whether b is an event loop's round batch: an upstream
// connection a request from that loop opens is best read by the same loop
// (upstream.Pool.Send).
func (b *Batch) Loop() bool { return b != nil && b.loop }

// Open lets writers join the batch. Only the batch's owner may call it.
func (b *Batch) Open() {
	if b.opened {
		return
	}
	b.mu.Lock()
	b.open = true
	b.mu.Unlock()
	b.opened = true
}

// HoldLocked makes w's writes wait for b's Flush when b is open; w's lock is
// held. A nil batch holds nothing.
func (w *Writer) HoldLocked(b *Batch) {
	if b == nil || w.held || w.closed {
		return
	}
	b.mu.Lock()
	if b.open {
		w.held = true
		b.ws = append(b.ws, w)
	}
	b.mu.Unlock()
}

// FlushEager writes what the held writers queued, except Server ones, which
// stay held until Flush; the batch stays as it is, open or closed.
func (b *Batch) FlushEager() { b.flush(false, (*Writer).ToServer) }

// release writes what the writers in ws queued while held, then keeps ws
// for the next flush.
func (b *Batch) release(ws []*Writer) {
	for i, w := range ws {
		w.mu.Lock()
		w.held = false
		w.Unlock()
		ws[i] = nil
	}
	b.out = ws[:0]
}

// TakeAnswered returns how many writers other than Server ones (clients, each
// given its answers) the batch's flushes have written out since the last
// call, and starts counting again. Only the batch's owner may call it.
func (b *Batch) TakeAnswered() int {
	n := b.answered
	b.answered = 0
	return n
}

// HoldsInOrder reports whether b holds a writer to a server that answers in
// order (one with Options.Awaiting set), such as Redis.
func (b *Batch) HoldsInOrder() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, w := range b.ws {
		if w.opt.Awaiting != nil {
			return true
		}
	}
	return false
}

// Held reports whether a Batch holds w's writes; the lock is held.
func (w *Writer) Held() bool { return w.held }

// FlushIdle is Flush for an owner about to wait for input, except that Server
// writers still awaiting answers (see Options.Awaiting) that the owner reads
// (see Reading.Round) stay held until the next Flush or FlushIdle: their
// answers will wake the owner. Answers another loop reads would not, so
// those writers go now. It returns how many stay held; the owner must not
// wait unbounded for input while any do, because answers may never come (a
// blocked command, a stuck server).
func (b *Batch) FlushIdle() int { return b.flush(true, b.awaitsAnswers) }

// awaitsAnswers reports whether w stays held by FlushIdle.
func (b *Batch) awaitsAnswers(w *Writer) bool {
	if !w.opt.Server || w.opt.Awaiting == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.closed && w.reader == b && w.opt.Awaiting()
}

// Flush closes the batch and writes what the held writers queued.
func (b *Batch) Flush() { b.flush(true, nil) }

// flush writes what the held writers queued except for those keep (when
// set) says stay held, and returns how many do. closing closes the batch
// first, so that holds offered from then on are refused. The writers are
// asked without b's lock, which HoldLocked takes inside theirs.
func (b *Batch) flush(closing bool, keep func(*Writer) bool) int {
	b.mu.Lock()
	if closing {
		b.now.Store(0)
		b.open = false
		b.opened = false
	}
	ws := b.ws
	b.ws = b.out[:0]
	b.out = nil // a flush from inside release must not share b.ws
	b.mu.Unlock()
	out, kept := ws[:0], 0
	for _, w := range ws {
		if keep == nil || !keep(w) {
			out = append(out, w)
			if !w.opt.Server {
				b.answered++
			}
			continue
		}
		b.mu.Lock()
		b.ws = append(b.ws, w)
		b.mu.Unlock()
		kept++
	}
	clear(ws[len(out):])
	b.release(out)
	return kept
}
