//go:build linux

package netloop

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/rosetta-mesh/rosetta/pkg/wire"
)

// Gathering: when a loop runs out of input while it holds requests for a
// server that answers in order (Redis) and many of the clients it has just
// answered have not sent their next request yet, those requests are on
// their way. Each write to such a server costs it a wake-up, a read and a
// write of its own, most of its time per request behind a proxy, so the
// loop keeps polling briefly for them and writes them all at once. It
// polls rather than parks, since a park and the wake-up that ends it cost
// the proxy about what the server saves, and it yields its CPU on every
// poll. It does so only while its thread has not been preempted lately: a
// thread nobody preempts has its CPU to itself, so polling costs nothing
// another process wanted; where the server or a client shares the CPU, the
// loop writes at once. Options.Gather turns it off.
//
// gather is a loop's count of the requests its clients owe, and whether
// its CPU is its own. The loop's alone.
type gather struct {
	// owed counts clients answered that have not sent a request since, as
	// counts: an answer adds one, a request takes one off.
	owed    int
	lastReq time.Time

	sampled time.Time
	tid     int
	nivcsw  int64
	busy    bool // the thread was preempted in the last sample
}

// answered records n clients given answers; with gathering off nothing is
// counted, so the loop never gathers.
func (g *gather) answered(n int) {
	if !gatherOff.Load() {
		g.owed += n
	}
}

// request records a client's request read at now.
func (g *gather) request(now time.Time) {
	g.lastReq = now
	if g.owed > 0 {
		g.owed--
	}
}

// rounds is how many rounds of input the loop reads before it writes what
// it holds for upstream connections.
func (g *gather) rounds() int {
	if g.owed >= gatherClients && !g.busy {
		return gatherRounds
	}
	return maxRounds
}

// wait reports whether a loop out of input, whose batch is b, should poll
// again for the requests its clients owe rather than write the requests b
// holds for an in-order server. Once a wait gives up, the count starts
// again: clients that did not send within gatherGap are idle.
func (g *gather) wait(b *wire.Batch) bool {
	if g.owed < gatherClients {
		return false
	}
	now := time.Now()
	if g.cpuShared(now) || !b.HoldsInOrder() {
		return false
	}
	if now.Sub(g.lastReq) >= gatherGap {
		g.owed = 0
		return false
	}
	// Let a process waiting for this CPU have it: it may be the client
	// whose request the loop waits for.
	_, _, _ = unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	return true
}

// cpuShared reports whether the loop's thread was preempted between the
// last two samples, taken at most every preemptSample. A goroutine may
// change threads; a sample on another thread than the last one only starts
// over.
func (g *gather) cpuShared(now time.Time) bool {
	if now.Sub(g.sampled) < preemptSample {
		return g.busy
	}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		g.busy = true
		return true
	}
	tid := unix.Gettid()
	if tid == g.tid {
		g.busy = ru.Nivcsw > g.nivcsw
	}
	g.sampled, g.tid, g.nivcsw = now, tid, ru.Nivcsw
	return g.busy
}
