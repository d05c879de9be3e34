// Package netloop reads many connections on a few event loops, the way
// twemproxy does: a loop learns from epoll which sockets have input, reads
// each of them once, hands their frames to the connections' handlers, and
// only then flushes what the handlers queued (the loop's Round). So requests from many clients bound for one upstream connection
// leave in one write, and a connection waiting for input costs neither a
// goroutine wake-up nor a read that finds nothing. A loop waits through Go's
// poller (its epoll descriptor is itself pollable), so it holds no thread
// while idle. Sockets are edge-triggered, as twemproxy's are; a read that
// fills its buffer is followed by another in the next round, since epoll
// will not report what is left. Before a loop waits, a writer to an
// in-order server that still owes answers may stay held until they come
// (Round.FlushIdle), so the server reads those requests with the next
// ones; such a wait lasts at most holdFor, and only the loop that reads the
// server's connection holds for it, since no other is woken by the answers.
//
// A handler sees one goroutine at a time per connection, as it would with a
// reader goroutine of the connection's own, and must not block: dials and
// blocking commands belong on goroutines of their own, and a write that
// would wait for a slow peer goes on in the background (see wire.Writer).
//
// A connection with no socket whose bytes another reader has (an HBONE
// stream's, on its HTTP/2 connection's frame reader) is fed by that reader
// instead (Feed), with the same frame splitting, limits and rounds. Loops
// are Linux's; elsewhere, with ROSETTA_EVENT_LOOPS=off, and for
// connections that are no sockets, Serve reads on a goroutine per
// connection. Serve is the one way the proxy and the upstream pools read a
// connection, whichever of the three reads it.
package netloop

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// Handler handles what is read from one connection.
type Handler interface {
	// Frame handles one whole frame, or the error that ended reading
	// (frame nil); r is the reading goroutine's round. False stops
	// reading.
	Frame(frame []byte, err error, r *Round) bool
	// Stopped runs once, on the reading goroutine, after reading has
	// stopped.
	Stopped()
}

// Round is what one reading goroutine (an event loop, a connection's own
// reader, the frame reader that feeds HBONE streams) has read since it
// last waited for input. The writes its handlers make wait in it (Hold)
// until it is flushed, before the goroutine waits again: a reader that
// holds a pipeline of frames, or the requests of many clients bound for
// one upstream connection, writes each connection once, not once per
// frame. It also carries the time the round's input was read (Now).
type Round struct {
	b wire.Batch
}

// Hold makes w's writes wait for the round's flush, when the round is
// open (its goroutine is working through input); w's lock is held. A nil
// round holds nothing: a write from a callback that runs late goes out at
// once.
func (r *Round) Hold(w *wire.Writer) {
	if r != nil {
		w.HoldLocked(&r.b)
	}
}

// Stamp records the clock's time as when the round's input was read, for a
// goroutine that reads for many connections (HBONE's frame reader) and
// calls it after each read of its socket: the handlers of the frames in
// that input then read no clock. Flush forgets it.
func (r *Round) Stamp() { r.b.SetNow(time.Now()) }

// Now is when the round's input was read, or the clock's time.
func (r *Round) Now() time.Time {
	if r == nil {
		return time.Now()
	}
	return r.b.Now()
}

// Loop reports whether r is an event loop's round: an upstream connection
// a request from that loop opens is best read by the same loop (ServeOn).
func (r *Round) Loop() bool { return r != nil && r.b.Loop() }

// Flush writes what the round's handlers queued, and closes the round
// until its goroutine opens it for the next frame.
func (r *Round) Flush() { r.b.Flush() }

// Open lets writes join the round. Only the round's goroutine calls it,
// before it hands a frame to a handler; netloop's readers do so
// themselves, so a handler never needs to.
func (r *Round) Open() { r.b.Open() }

// FlushIdle is Flush for a goroutine about to wait for input, except that
// writers to in-order servers still owed answers, whose connections this
// round's goroutine reads (Reads), stay held: see wire.Batch.FlushIdle. It
// returns how many stay held.
func (r *Round) FlushIdle() int { return r.b.FlushIdle() }

// Reads records that the round's goroutine reads w's connection, so that
// the answers w's requests await wake it, for a reader that is not one of
// netloop's (tests); Serve records its own.
func (r *Round) Reads(w *wire.Writer) { w.ReadBy(wire.Reading{Round: &r.b}) }

// Limits bound the reading of one connection, on a loop or a goroutine.
type Limits struct {
	// Idle, when positive, is how long a connection may go without input
	// before its handler gets an os.ErrDeadlineExceeded.
	Idle time.Duration
	// Frame, when positive, is how long a frame may take to arrive whole
	// once its first bytes have: a peer that sends a frame slowly, or part
	// of one and then nothing, holds the proxy's memory no longer. Past it
	// the handler gets ErrFrameTimeout and reading stops.
	Frame time.Duration
	// Buffer bounds the bytes held for a frame not yet whole.
	Buffer wire.Limits
}

// ErrFrameTimeout: a frame begun did not come whole within Limits.Frame.
var ErrFrameTimeout = errors.New("netloop: a frame did not arrive whole in time")

// GoReader reads frames on a goroutine with a connection's Limits, as a
// loop would: before each read it sets nc's deadline to when the idle time
// or the frame's time is up, whichever is sooner.
type GoReader struct {
	fr    *wire.Reader
	nc    net.Conn
	lim   Limits
	begun time.Time
	// Flush, when set, runs before every read that may wait.
	Flush func()
}

// NewGoReader reads nc's frames, split by c, within lim.
func NewGoReader(nc net.Conn, c codec.Codec, lim Limits) *GoReader {
	g := &GoReader{fr: wire.NewReader(nc, c), nc: nc, lim: lim}
	g.fr.SetLimits(lim.Buffer)
	if lim.Idle > 0 || lim.Frame > 0 {
		g.fr.BeforeRead = g.beforeRead
	} else {
		g.fr.BeforeRead = g.flush
	}
	return g
}

// Next is the next frame; a deadline that passed with a frame begun is
// ErrFrameTimeout, one without is the idle timeout (a net.Error).
func (g *GoReader) Next() ([]byte, error) {
	f, err := g.fr.Next()
	if err == nil {
		g.begun = time.Time{}
		return f, nil
	}
	if g.lim.Frame > 0 && !g.begun.IsZero() && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, g.fr.LimitError(ErrFrameTimeout)
	}
	return nil, err
}

// Release returns what the reader holds to the budget, once reading ends.
func (g *GoReader) Release() { g.fr.Release() }

func (g *GoReader) flush() {
	if g.Flush != nil {
		g.Flush()
	}
}

func (g *GoReader) beforeRead() {
	g.flush()
	now := time.Now()
	if g.fr.Buffered() == 0 {
		g.begun = time.Time{}
	} else if g.begun.IsZero() {
		g.begun = now
	}
	var d time.Time
	if g.lim.Idle > 0 {
		d = now.Add(g.lim.Idle)
	}
	if g.lim.Frame > 0 && !g.begun.IsZero() {
		if f := g.begun.Add(g.lim.Frame); d.IsZero() || f.Before(d) {
			d = f
		}
	}
	_ = g.nc.SetReadDeadline(d)
}

// Serve reads nc's frames, split by c, and hands each to h: a connection
// that is fed (a Feedable, such as an HBONE stream) by the goroutine that
// has its bytes, a socket on an event loop, anything else (and every
// connection with the loops off) on a goroutine of its own. w is nc's
// writer: closing it tells the reader to stop. Serve reports whether a
// goroutine that reads other connections too (a loop or a feeder) reads
// nc.
func Serve(nc net.Conn, c codec.Codec, w *wire.Writer, h Handler, lim Limits) bool {
	return ServeOn(nil, nc, c, w, h, lim)
}

// ServeOn is Serve on the loop whose round is home, when home is one
// (Round.Loop), and on the next loop in turn otherwise. An upstream
// connection a loop's requests open is best read by that loop: its answers
// then come back on the thread that writes them to the clients, and a held
// request waits only for answers its own loop reads.
func ServeOn(home *Round, nc net.Conn, c codec.Codec, w *wire.Writer, h Handler, lim Limits) bool {
	if fd, ok := nc.(Feedable); ok && feed(fd, c, w, h, lim) {
		return true
	}
	if serveOnLoop(home, nc, c, w, h, lim) {
		return true
	}
	go read(nc, c, h, lim)
	return false
}

// read reads nc on a goroutine of its own.
func read(nc net.Conn, c codec.Codec, h Handler, lim Limits) {
	defer h.Stopped()
	fr := NewGoReader(nc, c, lim)
	defer fr.Release()
	var r Round
	fr.Flush = r.Flush
	defer r.Flush()
	for {
		frame, err := fr.Next()
		if err == nil {
			r.Open()
		}
		if !h.Frame(frame, err, &r) {
			return
		}
	}
}

// errWouldBlock: nothing more to read now, from a socket a loop reads or
// from what a feed was handed. It is a temporary net.Error, which
// crypto/tls hands back without failing the connection (tlsSocket).
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "netloop: nothing to read" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

var _ net.Error = wouldBlock{}

// Reasons LimitReason gives, for metrics.
const (
	ReasonBuffer = "buffer_limit"
	ReasonBudget = "buffer_budget"
	ReasonFrame  = "frame_timeout"
	ReasonIdle   = "idle_timeout"
	// ReasonBacklog: more answers queued for a peer than it reads.
	ReasonBacklog = "write_backlog"
)

// LimitReason names the limit err reports reading past, "" when it is no
// limit's.
func LimitReason(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, wire.ErrOverBudget):
		return ReasonBudget
	case errors.Is(err, wire.ErrConnLimit):
		return ReasonBuffer
	case errors.Is(err, wire.ErrWriteBacklog):
		return ReasonBacklog
	case errors.Is(err, ErrFrameTimeout):
		return ReasonFrame
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonIdle
	}
	return ""
}
