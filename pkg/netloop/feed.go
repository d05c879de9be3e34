package netloop

import (
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// Feedable is a connection without a socket of its own whose bytes arrive
// on another goroutine that reads them anyway: an HBONE stream's, on its
// HTTP/2 connection's frame reader. Rather than wake a goroutine that
// reads the connection, that goroutine pushes the bytes to the Feed, which
// splits them into frames and hands those to the handler on the spot, as
// an event loop does with what it reads from a socket.
type Feedable interface {
	// Feed makes f take the connection's input from now on, in place of
	// Read; false when it cannot (input already waits to be read), and
	// the connection is then read on a goroutine.
	Feed(f *Feed) bool
}

// Feed reads one fed connection: what Push hands it, split into frames by
// its codec within its Limits, goes to its handler on the pushing
// goroutine. Its idle and frame timers run on timer goroutines; a lock
// keeps the handler to one goroutine at a time.
type Feed struct {
	mu    sync.Mutex
	fr    *wire.Reader
	src   pushed
	h     Handler
	lim   Limits
	timer *time.Timer
	// lastRead is when input last came; begun when the frame not yet
	// whole began, zero when there is none.
	lastRead, begun time.Time
	done            bool
}

// pushed is what a Push hands over, read by the feed's frame reader; empty,
// it has nothing more to read now.
type pushed struct{ p []byte }

func (s *pushed) Read(b []byte) (int, error) {
	if len(s.p) == 0 {
		return 0, errWouldBlock
	}
	n := copy(b, s.p)
	s.p = s.p[n:]
	return n, nil
}

// feed serves nc with a Feed when it takes one.
func feed(nc Feedable, c codec.Codec, w *wire.Writer, h Handler, lim Limits) bool {
	f := &Feed{h: h, lim: lim, lastRead: time.Now()}
	f.fr = wire.NewReader(&f.src, c)
	f.fr.SetLimits(lim.Buffer)
	if lim.Idle > 0 || lim.Frame > 0 {
		// Before the first Push, which may set it sooner.
		f.timer = time.AfterFunc(time.Duration(math.MaxInt64), f.check)
	}
	if !nc.Feed(f) {
		if f.timer != nil {
			f.timer.Stop()
		}
		return false
	}
	if lim.Idle > 0 {
		f.mu.Lock()
		if !f.done && f.begun.IsZero() {
			f.timer.Reset(lim.Idle)
		}
		f.mu.Unlock()
	}
	// Closed is called with w's lock held, perhaps by the handler
	// itself: the feed stops on a goroutine of its own, as a loop stops a
	// closed connection in its next round.
	if !w.ReadBy(wire.Reading{Closed: func() { go f.End(nil, net.ErrClosed) }}) {
		go f.End(nil, net.ErrClosed)
	}
	return true
}

// Push hands the handler the frames that data completes, on the calling
// goroutine, their writes held in r; data is copied, not kept. It reports
// false once reading has stopped, after which input is dropped.
func (f *Feed) Push(r *Round, data []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return false
	}
	now := r.b.Now()
	f.lastRead = now
	f.src.p = data
	for {
		frame, err := f.fr.Next()
		if err == errWouldBlock {
			break
		}
		f.begun = time.Time{}
		if err == nil {
			r.Open()
		}
		if !f.h.Frame(frame, err, r) {
			f.stopLocked()
			return false
		}
	}
	if f.lim.Frame > 0 && f.fr.Buffered() > 0 && f.begun.IsZero() {
		f.begun = now
		f.timer.Reset(f.nextCheckLocked(now))
	}
	return true
}

// End ends reading with err: io.EOF when the peer ended the connection,
// another error when it broke. r is the calling goroutine's round, nil
// for a goroutine without one (End then flushes what the handler wrote).
func (f *Feed) End(r *Round, err error) {
	own := r == nil
	if own {
		r = &Round{}
	}
	f.mu.Lock()
	if !f.done {
		if err == io.EOF && f.fr.Buffered() > 0 {
			err = io.ErrUnexpectedEOF // as a reader's: a frame cut short
		}
		if !f.h.Frame(nil, err, r) {
			f.stopLocked()
		}
	}
	f.mu.Unlock()
	if own {
		r.Flush()
	}
}

// check runs on the timer: a frame begun that did not come whole in time
// ends reading, and input not seen for the idle time is the handler's to
// judge (true keeps reading).
func (f *Feed) check() {
	var r Round
	defer r.Flush()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return
	}
	now := time.Now()
	switch {
	case f.lim.Frame > 0 && !f.begun.IsZero() && now.Sub(f.begun) >= f.lim.Frame:
		f.h.Frame(nil, f.fr.LimitError(ErrFrameTimeout), &r)
		f.stopLocked()
		return
	case f.lim.Idle > 0 && now.Sub(f.lastRead) >= f.lim.Idle:
		if !f.h.Frame(nil, os.ErrDeadlineExceeded, &r) {
			f.stopLocked()
			return
		}
		f.lastRead = now // the handler keeps it: a new idle period
	}
	f.timer.Reset(f.nextCheckLocked(now))
}

// nextCheckLocked is how long until the idle time or the frame's time is
// up.
func (f *Feed) nextCheckLocked(now time.Time) time.Duration {
	wait := time.Duration(math.MaxInt64)
	if f.lim.Idle > 0 {
		wait = f.lim.Idle - now.Sub(f.lastRead)
	}
	if f.lim.Frame > 0 && !f.begun.IsZero() {
		wait = min(wait, f.lim.Frame-now.Sub(f.begun))
	}
	return wait
}

// stopLocked ends reading, once: the handler's Stopped runs, and what the
// reader holds goes back to the budget.
func (f *Feed) stopLocked() {
	if f.done {
		return
	}
	f.done = true
	if f.timer != nil {
		f.timer.Stop()
	}
	f.src.p = nil
	f.fr.Release()
	f.h.Stopped()
}
