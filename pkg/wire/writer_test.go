package wire

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rosetta-mesh/rosetta/internal/testutil"
)

// queue appends s to w's queue while b holds its writes.
func queue(w *Writer, b *Batch, s string) {
	w.Lock()
	w.AppendLocked([]byte(s))
	w.HoldLocked(b)
	w.Unlock()
}

// arrives reports whether want reaches c within d.
func arrives(c net.Conn, want string, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	got := make([]byte, len(want))
	_, err := io.ReadFull(c, got)
	return err == nil && string(got) == want
}

func TestFlushEagerKeepsLazyWritersHeld(t *testing.T) {
	eagerConn, eagerPeer := testutil.TCPPair(t)
	lazyConn, lazyPeer := testutil.TCPPair(t)
	eager := NewWriter(eagerConn, Options{Timeout: time.Second, Max: 1 << 20})
	lazy := NewWriter(lazyConn, Options{Timeout: time.Second, Max: 1 << 20, Server: true})
	var b Batch
	b.Open()
	queue(eager, &b, "answer")
	queue(lazy, &b, "request")
	b.FlushEager()
	if !arrives(eagerPeer, "answer", 5*time.Second) {
		t.Fatal("FlushEager did not write the eager writer's queue")
	}
	if arrives(lazyPeer, "r", 100*time.Millisecond) {
		t.Fatal("FlushEager wrote a lazy writer's queue")
	}
	if n := b.TakeAnswered(); n != 1 {
		t.Fatalf("TakeAnswered after FlushEager = %d, want the 1 eager writer", n)
	}
	if b.HoldsInOrder() {
		t.Fatal("HoldsInOrder with only a writer to a server that answers by id")
	}
	queue(lazy, &b, "s") // the lazy writer is still held: more joins its write
	b.Flush()
	if !arrives(lazyPeer, "requests", 5*time.Second) {
		t.Fatal("Flush did not write the lazy writer's queue")
	}
	if n := b.TakeAnswered(); n != 0 {
		t.Fatalf("TakeAnswered after flushing a lazy writer = %d, want 0", n)
	}
}

// TestFlushIdleKeepsWritersAwaitingAnswers: before its owner waits, a batch
// writes everything but the queue of a lazy writer whose earlier requests
// still await answers that its owner reads, and refuses late holds; the
// next flush writes it.
func TestFlushIdleKeepsWritersAwaitingAnswers(t *testing.T) {
	eagerConn, eagerPeer := testutil.TCPPair(t)
	idleConn, idlePeer := testutil.TCPPair(t)
	busyConn, busyPeer := testutil.TCPPair(t)
	eager := NewWriter(eagerConn, Options{Timeout: time.Second, Max: 1 << 20})
	awaiting := func(due bool) Options {
		return Options{Timeout: time.Second, Max: 1 << 20, Server: true, Awaiting: func() bool { return due }}
	}
	idle := NewWriter(idleConn, awaiting(false))
	busy := NewWriter(busyConn, awaiting(true))
	elsewhereConn, elsewherePeer := testutil.TCPPair(t)
	elsewhere := NewWriter(elsewhereConn, awaiting(true))
	var b, other Batch
	for w, reader := range map[*Writer]*Batch{idle: &b, busy: &b, elsewhere: &other} {
		w.ReadBy(Reading{Round: reader})
	}
	b.Open()
	queue(eager, &b, "answer")
	queue(idle, &b, "request")
	queue(busy, &b, "next")
	queue(elsewhere, &b, "read by another loop")
	if held := b.FlushIdle(); held != 1 {
		t.Fatalf("FlushIdle kept %d writers held, want 1", held)
	}
	if !arrives(eagerPeer, "answer", 5*time.Second) || !arrives(idlePeer, "request", 5*time.Second) {
		t.Fatal("FlushIdle did not write the writers with nothing awaited")
	}
	// Its answers would wake the other batch's owner, not this one.
	if !arrives(elsewherePeer, "read by another loop", 5*time.Second) {
		t.Fatal("FlushIdle kept a writer whose answers another loop reads")
	}
	if arrives(busyPeer, "n", 100*time.Millisecond) {
		t.Fatal("FlushIdle wrote a writer still awaiting answers")
	}
	queue(eager, &b, "late") // the batch is closed: written at once
	if !arrives(eagerPeer, "late", 5*time.Second) {
		t.Fatal("a hold offered after FlushIdle was not refused")
	}
	b.Flush()
	if !arrives(busyPeer, "next", 5*time.Second) {
		t.Fatal("Flush did not write the writer FlushIdle kept")
	}
}

func TestCloseTellsTheReaderOnce(t *testing.T) {
	c, _ := testutil.TCPPair(t)
	w := NewWriter(c, Options{Timeout: time.Second, Max: 1 << 20})
	calls := 0
	if !w.ReadBy(Reading{Closed: func() { calls++ }}) {
		t.Fatal("ReadBy reported an open writer closed")
	}
	w.Close()
	w.Close()
	if calls != 1 {
		t.Fatalf("Reading.Closed ran %d times, want 1", calls)
	}
	if w.ReadBy(Reading{Closed: func() { calls++ }}) || calls != 1 {
		t.Fatalf("ReadBy on a closed writer reported it open or ran Closed (%d calls)", calls)
	}
}

func TestBatchNowIsTheRoundsTimeUntilFlush(t *testing.T) {
	var b Batch
	round := time.Now().Add(-time.Hour) // far enough from the clock to tell apart
	b.SetNow(round)
	if got := b.Now(); !got.Equal(round) || got.Sub(round) != 0 {
		t.Fatalf("Now = %v, want the round's %v", got, round)
	}
	b.Flush()
	if got := b.Now(); got.Sub(round) < 59*time.Minute {
		t.Fatalf("after Flush Now = %v, want the clock", got)
	}
	var nilBatch *Batch
	if got := nilBatch.Now(); time.Since(got) > time.Minute {
		t.Fatalf("a nil batch's Now = %v, want the clock", got)
	}
}

// TestFlushesReuseTheirSlices: once warm, holding and flushing writers
// allocates nothing.
func TestFlushesReuseTheirSlices(t *testing.T) {
	a, _ := testutil.TCPPair(t)
	c, _ := testutil.TCPPair(t)
	lazy, eager := NewWriter(a, Options{Timeout: time.Second, Max: 1 << 20, Server: true}), NewWriter(c, Options{Timeout: time.Second, Max: 1 << 20})
	var b Batch
	round := func() {
		b.Open()
		for _, w := range []*Writer{lazy, eager} {
			w.Lock()
			w.HoldLocked(&b)
			w.Unlock()
		}
		b.FlushEager()
		b.Flush()
	}
	round()
	if n := testing.AllocsPerRun(100, round); n != 0 {
		t.Fatalf("a round allocates %v times, want 0", n)
	}
}

// TestSocketWriteAllocatesNothing: the write a flush makes on a socket costs
// no allocation (the function RawConn runs is made once per writer).
func TestSocketWriteAllocatesNothing(t *testing.T) {
	a, peer := testutil.TCPPair(t)
	go func() { _, _ = io.Copy(io.Discard, peer) }()
	w := NewWriter(a, Options{Timeout: time.Second, Max: 1 << 20})
	write := func() {
		w.Lock()
		w.AppendLocked([]byte("+OK\r\n"))
		w.Unlock()
	}
	write()
	if n := testing.AllocsPerRun(100, write); n != 0 {
		t.Fatalf("a write allocates %v times, want 0", n)
	}
}

// TestBatchReopensAfterFlush: Open skips its lock while the batch is open,
// so a Flush must leave it to be opened again.
func TestBatchReopensAfterFlush(t *testing.T) {
	a, _ := testutil.TCPPair(t)
	w := NewWriter(a, Options{Timeout: time.Second, Max: 1 << 20})
	var b Batch
	heldBy := func() bool {
		w.Lock()
		defer w.Unlock()
		w.HoldLocked(&b)
		return w.held
	}
	for round := range 2 {
		b.Open()
		b.Open()
		if !heldBy() {
			t.Fatalf("round %d: an open batch did not hold the writer", round)
		}
		b.Flush()
		if heldBy() {
			t.Fatalf("round %d: a flushed batch held the writer", round)
		}
	}
}

func TestWouldWaitMovesTheWriteOffTheCaller(t *testing.T) {
	// A pipe's write waits for its reader: a flush the writer did itself
	// would not return before the peer reads.
	conn, peer := net.Pipe()
	defer conn.Close()
	defer peer.Close()
	w := NewWriter(conn, Options{Timeout: 5 * time.Second, Max: 1 << 20})
	var asked []int
	w.ReadBy(Reading{WouldWait: func(n int) bool { asked = append(asked, n); return true }})
	w.Lock()
	w.AppendLocked([]byte("large answer"))
	done := make(chan struct{})
	go func() { w.Unlock(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Unlock waited for the peer although WouldWait said the write would")
	}
	if len(asked) != 1 || asked[0] != len("large answer") {
		t.Fatalf("WouldWait asked about %v, want the one queued write of %d bytes", asked, len("large answer"))
	}
	if !arrives(peer, "large answer", 5*time.Second) {
		t.Fatal("the write handed off was never written")
	}
}

// stalled is a connection whose peer never reads, with a small window.
func stalled(t *testing.T) net.Conn {
	t.Helper()
	conn, peer := testutil.TCPPair(t)
	_ = peer // never read
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 10)
	}
	return conn
}

func TestWriterBoundsTheQueueWhileAWriteWaits(t *testing.T) {
	failed := make(chan error, 1)
	w := NewWriter(stalled(t), Options{Timeout: 5 * time.Second, Max: 1 << 20, Failed: func(err error) { failed <- err }})
	big := make([]byte, 64<<10)
	for i := 0; i < 100; i++ {
		w.Lock()
		if w.Closed() {
			w.Unlock()
			break
		}
		w.AppendLocked(big)
		w.Unlock()
	}
	select {
	case err := <-failed:
		if !errors.Is(err, ErrWriteBacklog) {
			t.Fatalf("the writer failed with %v, want ErrWriteBacklog", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("6 MiB queued for a peer that does not read, past a 1 MiB limit, and the writer went on")
	}
}
