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
	"os"

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
