// Package netloop reads many connections on a few event loops, the way
// twemproxy does: a loop learns from epoll which sockets have input, reads
// each of them once, hands their frames to the connections' handlers, and
// only then flushes what the handlers queued (a wire.Batch shared by the
// round). So requests from many clients bound for one upstream connection
// leave in one write, and a connection waiting for input costs neither a
// goroutine wake-up nor a read that finds nothing. A loop waits through Go's
// poller (its epoll descriptor is itself pollable), so it holds no thread
// while idle. Sockets are edge-triggered, as twemproxy's are; a read that
// fills its buffer is followed by another in the next round, since epoll
// will not report what is left. Before a loop waits, a writer to an
// in-order server that still owes answers may stay held until they come
// (wire.Batch.FlushIdle), so the server reads those requests with the next
// ones; such a wait lasts at most holdFor, and only the loop that reads the
// server's connection holds for it, since no other is woken by the answers.
//
// A handler sees one goroutine at a time per connection, as it would with a
// reader goroutine of the connection's own, and must not block: dials and
// blocking commands belong on goroutines of their own, and a write that
// would wait for a slow peer goes on in the background (see wire.Writer).
//
// Loops are Linux's; elsewhere, and with ROSETTA_EVENT_LOOPS=off, Serve
// declines and callers read on a goroutine per connection.
package netloop

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/rosetta-mesh/rosetta/pkg/codec"
	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// Handler handles what a loop reads from one connection.
type Handler interface {
	// Frame handles one whole frame, or the error that ended reading
	// (frame nil); b is the round's batch. False stops reading.
	Frame(frame []byte, err error, b *wire.Batch) bool
	// Stopped runs once, on the loop, after reading has stopped.
	Stopped()
}

// off turns the loops off, for comparison and for testing the goroutine
// path on Linux.
var off = os.Getenv("ROSETTA_EVENT_LOOPS") == "off"

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
// has its bytes, a socket on an event loop. w is nc's writer: closing it
// tells the reader to stop. Serve reports false when it can do neither (no
// socket, loops off or not started); the caller then reads on a goroutine.
func Serve(nc net.Conn, c codec.Codec, w *wire.Writer, h Handler, lim Limits) bool {
	return ServeOn(nil, nc, c, w, h, lim)
}

// ServeOn is Serve on the loop whose round batch is home, when home is one
// (wire.Batch.Loop), and on the next loop in turn otherwise. An upstream
// connection a loop's requests open is best read by that loop: its answers
// then come back on the thread that writes them to the clients, and a held
// request waits only for answers its own loop reads.
func ServeOn(home *wire.Batch, nc net.Conn, c codec.Codec, w *wire.Writer, h Handler, lim Limits) bool {
	if fd, ok := nc.(Feedable); ok && feed(fd, c, w, h, lim) {
		return true
	}
	return serveOnLoop(home, nc, c, w, h, lim)
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
