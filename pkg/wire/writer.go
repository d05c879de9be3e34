package wire

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"time"
)

// ErrWriteBacklog: more bytes are queued for a peer than the limit allows.
var ErrWriteBacklog = errors.New("wire: too much queued for a peer that does not read")

// Writer combines writes to a connection from many goroutines without a
// goroutine of its own: a caller appends its frame under the lock, and the
// caller that finds no write in progress writes everything queued, including
// what others append meanwhile. One request thus costs no goroutine handoff,
// and a burst shares system calls.
//
// Callers hold the lock (Lock) while they append to Buf, and release it with
// Unlock, which writes when it is their turn.
type Writer struct {
	mu       sync.Mutex
	nc       net.Conn
	timeout  time.Duration
	max      int
	flushing bool
	closed   bool
	held     bool // a Batch holds the writes until it flushes
	spare    []byte
	// Buf is what is queued; append to it only between Lock and Unlock.
	Buf []byte
	// OnError is called once, without the lock, when a write fails or the
	// backlog passes the limit.
	OnError func(error)
	// Yield, when set, lets other writers append before a flush: worth it
	// where many goroutines share the connection (an upstream connection).
	Yield bool
	// OnIdle, when set, is called with the lock held each time the queue has
	// been written out; it may return true to close the connection.
	OnIdle func() bool
}

// NewWriter writes to nc; a single write may block for at most timeout and at
// most max bytes may be queued.
func NewWriter(nc net.Conn, timeout time.Duration, max int) *Writer {
	return &Writer{nc: nc, timeout: timeout, max: max}
}

// Lock takes the queue.
func (w *Writer) Lock() { w.mu.Lock() }

// Closed reports whether the writer is closed; call it with the lock held.
func (w *Writer) Closed() bool { return w.closed }

// Unlock releases the queue and, unless another caller is writing, writes
// everything queued.
func (w *Writer) Unlock() {
	if w.flushing || w.held || w.closed || w.nc == nil {
		w.mu.Unlock()
		return
	}
	if len(w.Buf) > w.max {
		w.fail(ErrWriteBacklog)
		return
	}
	w.flushing = true
	if w.Yield {
		// Let other goroutines that are about to write here append first:
		// one system call then carries all of them.
		w.mu.Unlock()
		runtime.Gosched()
		w.mu.Lock()
	}
	for len(w.Buf) > 0 {
		out := w.Buf
		w.Buf = w.spare[:0]
		w.mu.Unlock()
		err := w.write(out)
		w.mu.Lock()
		w.spare = out[:0]
		if err != nil {
			w.flushing = false
			w.fail(err)
			return
		}
	}
	w.flushing = false
	if w.OnIdle != nil && !w.closed && w.OnIdle() {
		w.closeLocked()
	}
	w.mu.Unlock()
}

func (w *Writer) write(b []byte) error {
	if w.timeout > 0 {
		_ = w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	_, err := w.nc.Write(b)
	return err
}

// fail closes the writer and reports err; the lock is held on entry and
// released on return.
func (w *Writer) fail(err error) {
	first := !w.closed
	w.closeLocked()
	w.mu.Unlock()
	if first && w.OnError != nil {
		w.OnError(err)
	}
}

// SetConn sets the connection once it is dialled; queued bytes go out with
// the next Unlock.
func (w *Writer) SetConn(nc net.Conn) {
	w.mu.Lock()
	w.nc = nc
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
	w.Buf = nil
	if w.nc != nil {
		w.nc.Close()
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
}

// Open lets writers join the batch.
func (b *Batch) Open() {
	b.mu.Lock()
	b.open = true
	b.mu.Unlock()
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

// Flush closes the batch and writes what the held writers queued.
func (b *Batch) Flush() {
	b.mu.Lock()
	b.open = false
	ws := b.ws
	b.ws = nil
	b.mu.Unlock()
	for _, w := range ws {
		w.mu.Lock()
		w.held = false
		w.Unlock()
	}
}
