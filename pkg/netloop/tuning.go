package netloop

import (
	"os"
	"sync/atomic"
	"time"
)

// The loops' tuning, in one place. Each value is a row of
// docs/benchmarks.md#tuning-constants, named as here, which gives the
// measurement that chose it (or says that none did).

// Options turn the loops and gathering on or off for the process; set
// them with Configure before the first connection is served.
type Options struct {
	// EventLoops: read sockets on epoll event loops (Linux); off, every
	// connection has a reader goroutine of its own, for comparison and
	// for testing that path on Linux. Environment: ROSETTA_EVENT_LOOPS=off.
	EventLoops bool
	// Gather: a loop out of input that holds requests for a server that
	// answers in order (Redis) polls briefly for the requests its clients
	// owe, and writes them all at once (gather_linux.go). Off for a proxy
	// whose CPU time is metered, since a container's CPU quota counts the
	// polling. Environment: ROSETTA_GATHER=off.
	Gather bool
}

// DefaultOptions are the options the environment gives: both on unless
// ROSETTA_EVENT_LOOPS=off or ROSETTA_GATHER=off.
func DefaultOptions() Options {
	return Options{
		EventLoops: os.Getenv("ROSETTA_EVENT_LOOPS") != "off",
		Gather:     os.Getenv("ROSETTA_GATHER") != "off",
	}
}

// off and gatherOff are the options in force; atomic, since loops already
// running read them when a test configures again.
var off, gatherOff atomic.Bool

func init() { Configure(DefaultOptions()) }

// Configure sets the options; call it before the first Serve.
func Configure(o Options) {
	off.Store(!o.EventLoops)
	gatherOff.Store(!o.Gather)
}

const (
	// maxRounds bounds the rounds a loop reads before it writes what they
	// queued for Server writers (upstream connections) while input keeps
	// coming; other writers (clients) are written after every round.
	maxRounds = 8
	// holdFor bounds how long a loop with nothing to read keeps writes held
	// for answers that are due (Round.FlushIdle): a blocked command or a
	// subscription may owe answers for ever.
	holdFor = time.Millisecond

	// gatherClients is how many answered clients must owe a request before
	// a loop gathers; fewer clients wait on each answer, and a hold would
	// only slow them.
	gatherClients = 16
	// gatherGap ends gathering once no request has come for this long: a
	// client that thinks before its next request costs the others at most
	// this.
	gatherGap = 40 * time.Microsecond
	// gatherRounds is maxRounds while a loop gathers.
	gatherRounds = 32
	// preemptSample is how often a loop asks the kernel whether its thread
	// was preempted (it gathers only on a CPU of its own).
	preemptSample = time.Millisecond

	// tlsChunk is how much a loop reads from a TLS socket at once: a record
	// at most, with its header and tag.
	tlsChunk = 16<<10 + 512
	// tlsLoopWrite is the most a loop encrypts in one write: a larger
	// answer is encrypted and written by a goroutine, so one connection's
	// answer never holds up the loop's others.
	tlsLoopWrite = 256 << 10
	// A TLS socket's writes that must wait for the peer go on in the
	// background with wire.Writer's bounds: at most tlsWriteBacklog bytes
	// wait, and one write waits at most tlsWriteTimeout.
	tlsWriteBacklog = 64 << 20
	tlsWriteTimeout = 10 * time.Second
)
